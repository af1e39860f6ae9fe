package chains

import (
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func TestRenderFastInstall(t *testing.T) {
	l := Layout{
		Table: "nat", Top: "TOP",
		Hooks: []Hook{{Chain: "PREROUTING", Rule: []string{"-m", "comment", "--comment", "a hook", "-j", "TOP"}}},
		Fixed: []Fixed{{Name: "MASQ", Hook: Hook{Chain: "POSTROUTING", Rule: []string{"-j", "MASQ"}}, Rules: [][]string{{"-j", "MASQUERADE"}}}},
	}
	got := RenderFastInstall(l, "C1", [][]string{{"-d", "10.0.0.1/32", "-j", "C1"}}, [][]string{{"-p", "tcp", "-j", "DNAT", "--to-destination", "10.1.1.1:80"}})
	want := "*nat\n" +
		"-C POSTROUTING -j MASQ\n" +
		"-C MASQ -j MASQUERADE\n" +
		"-C PREROUTING -m comment --comment \"a hook\" -j TOP\n" +
		"-N C1\n" +
		"-A TOP -d 10.0.0.1/32 -j C1\n" +
		"-A C1 -p tcp -j DNAT --to-destination 10.1.1.1:80\n" +
		"COMMIT\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
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

func TestJumpsTo(t *testing.T) {
	jump := func(kind expr.VerdictKind, chain string) *nftables.Rule {
		return &nftables.Rule{Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: kind, Chain: chain}}}
	}
	for _, tc := range []struct {
		r    *nftables.Rule
		want bool
	}{
		{jump(expr.VerdictJump, "LWOE-1"), true},
		{jump(expr.VerdictJump, "LWOE-2"), false},
		{jump(expr.VerdictGoto, "LWOE-1"), false},
		{&nftables.Rule{Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}, false},
	} {
		if got := jumpsTo(tc.r, "LWOE-1"); got != tc.want {
			t.Errorf("%+v: got %v", tc.r.Exprs[len(tc.r.Exprs)-1], got)
		}
	}
}
