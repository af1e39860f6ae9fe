package chains

import (
	"encoding/binary"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestRenderFastInstall(t *testing.T) {
	l := Layout{
		Table: "nat", Top: "TOP",
		Hooks: []Hook{{Chain: "PREROUTING", Rule: []string{"-m", "comment", "--comment", "a hook", "-j", "TOP"}}},
		Fixed: []Fixed{{Name: "MASQ", Hook: Hook{Chain: "POSTROUTING", Rule: []string{"-j", "MASQ"}}, Rules: [][]string{{"-j", "MASQUERADE"}}}},
	}
	dispatch := [][]string{{"-d", "10.0.0.1/32", "-j", "C1"}}
	rules := [][]string{{"-p", "tcp", "-j", "DNAT", "--to-destination", "10.1.1.1:80"}}
	install := "-N C1\n" +
		"-A TOP -d 10.0.0.1/32 -j C1\n" +
		"-A C1 -p tcp -j DNAT --to-destination 10.1.1.1:80\n" +
		"COMMIT\n"
	checks := "-C POSTROUTING -j MASQ\n" +
		"-C MASQ -j MASQUERADE\n" +
		"-C PREROUTING -m comment --comment \"a hook\" -j TOP\n"
	sh := &Shared{Name: "S1", Rules: [][]string{{"-p", "tcp", "-j", "RETURN"}, {"-j", "DROP"}}}
	shared := ":S1 - [0:0]\n-A S1 -p tcp -j RETURN\n-A S1 -j DROP\n" +
		"-N C1\n" +
		"-A TOP -d 10.0.0.1/32 -j C1\n" +
		"-A C1 -g S1\n" +
		"COMMIT\n"
	for _, tc := range []struct {
		checkHooks bool
		rules      [][]string
		sh         *Shared
		want       string
	}{
		{true, rules, nil, "*nat\n" + checks + install},
		{false, rules, nil, "*nat\n" + install},
		{false, sh.goTo(), sh, "*nat\n" + shared},
	} {
		if got := RenderFastInstall(l, "C1", dispatch, tc.rules, tc.checkHooks, tc.sh); got != tc.want {
			t.Errorf("checkHooks %v, shared %v: got\n%s\nwant\n%s", tc.checkHooks, tc.sh != nil, got, tc.want)
		}
	}
}

func TestRenderTopRemoval(t *testing.T) {
	l := Layout{
		Table: "nat", Top: "TOP",
		Hooks: []Hook{{Chain: "PREROUTING", Rule: []string{"-j", "TOP"}}, {Chain: "OUTPUT", Rule: []string{"-j", "TOP"}}},
		Fixed: []Fixed{{Name: "MASQ", Hook: Hook{Chain: "POSTROUTING", Rule: []string{"-j", "MASQ"}}}},
	}
	want := "-D PREROUTING -j TOP\n-D OUTPUT -j TOP\n-X TOP\n-D POSTROUTING -j MASQ\n-F MASQ\n-X MASQ\n"
	if got := renderTopRemoval(l); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// ruleMsg renders a rule as the kernel lists it: its handle and expressions.
func ruleMsg(t *testing.T, handle uint64, exprs ...expr.Any) []byte {
	t.Helper()
	var list []netlink.Attribute
	for _, e := range exprs {
		b, err := expr.Marshal(byte(nftables.TableFamilyIPv4), e)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	nested, err := netlink.MarshalAttributes(list)
	if err != nil {
		t.Fatal(err)
	}
	h := make([]byte, 8)
	binary.BigEndian.PutUint64(h, handle)
	b, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte("mangle\x00")},
		{Type: unix.NFTA_RULE_HANDLE, Data: h},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: nested},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRule(t *testing.T) {
	verdict := func(kind expr.VerdictKind, chain string) []expr.Any {
		return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: kind, Chain: chain}}
	}
	for _, tc := range []struct {
		name  string
		exprs []expr.Any
		want  bool
	}{
		{"jump to it", verdict(expr.VerdictJump, "LWOE-1"), true},
		{"jump elsewhere", verdict(expr.VerdictJump, "LWOE-2"), false},
		{"goto", verdict(expr.VerdictGoto, "LWOE-1"), false},
		{"accept", verdict(expr.VerdictAccept, ""), false},
		{"match then jump", append([]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("LWOE-1\x00")}}, verdict(expr.VerdictJump, "LWOE-1")...), true},
		{"no expressions", nil, false},
	} {
		handle, jumps, err := parseRule(ruleMsg(t, 42, tc.exprs...), "LWOE-1")
		if err != nil || handle != 42 || jumps != tc.want {
			t.Errorf("%s: got handle %d, jumps %v, err %v; want 42, %v", tc.name, handle, jumps, err, tc.want)
		}
	}
}
