package egress

import (
	"net"
	"strings"
	"testing"
)

func mustNet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func testSpec() Spec {
	return Spec{
		Chain:   ChainName("lan", "c1"),
		Comment: Comment("lan", "c1"),
		HostIf:  "lw0123456789",
		Bridged: true,
		Subnets: []*net.IPNet{mustNet("10.1.2.0/24")},
		Allow: []Allow{
			{Host: true, Ports: []PortRange{{"tcp", 8000, 8000}}},
			{Net: mustNet("192.168.5.0/24"), Ports: []PortRange{{"tcp", 5000, 5000}, {"udp", 8000, 8100}}},
			{Net: mustNet("fd00:1::/64")},
		},
		DNS:       []net.IP{net.ParseIP("10.1.2.1")},
		AllowDHCP: true,
		LogPrefix: LogPrefix("c1"),
	}
}

func TestRenderInstallV4(t *testing.T) {
	got := RenderInstall(testSpec(), V4, []string{`-A LANWIRE-EGRESS -m physdev --physdev-in lw0123456789 -m comment --comment "old" -j LWOE-X`})
	chain := ChainName("lan", "c1")
	want := `*mangle
:` + chain + ` - [0:0]
-D LANWIRE-EGRESS -m physdev --physdev-in lw0123456789 -m comment --comment "old" -j LWOE-X
-A LANWIRE-EGRESS -m physdev --physdev-in lw0123456789 -m comment --comment "lanwire offline-egress net=lan id=c1" -j ` + chain + `
-A ` + chain + ` -m conntrack --ctstate ESTABLISHED,RELATED --ctdir REPLY -j RETURN
-A ` + chain + ` -d 255.255.255.255/32 -p udp --sport 68 --dport 67 -j RETURN
-A ` + chain + ` -d 10.1.2.0/24 -p udp --sport 68 --dport 67 -j RETURN
-A ` + chain + ` -d 10.1.2.1/32 -p udp --dport 53 -j RETURN
-A ` + chain + ` -d 10.1.2.1/32 -p tcp --dport 53 -j RETURN
-A ` + chain + ` -m addrtype --dst-type LOCAL -p tcp --dport 8000 -j RETURN
-A ` + chain + ` -d 192.168.5.0/24 -p tcp --dport 5000 -j RETURN
-A ` + chain + ` -d 192.168.5.0/24 -p udp --dport 8000:8100 -j RETURN
-A ` + chain + ` -m limit --limit 10/min --limit-burst 5 -j LOG --log-prefix "lanwire-egress c1: "
-A ` + chain + ` -j DROP
COMMIT
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRulesV6(t *testing.T) {
	s := testSpec()
	s.Bridged = false
	s.LogPrefix = ""
	var got []string
	for _, r := range s.Rules(V6) {
		got = append(got, strings.Join(r, " "))
	}
	want := []string{
		"-m conntrack --ctstate ESTABLISHED,RELATED --ctdir REPLY -j RETURN",
		"-d ff02::1:2/128 -p udp --sport 546 --dport 547 -j RETURN",
		"-d fe80::/10 -p udp --sport 546 --dport 547 -j RETURN",
		"-p ipv6-icmp --icmpv6-type router-solicitation -m hl --hl-eq 255 -j RETURN",
		"-p ipv6-icmp --icmpv6-type neighbour-solicitation -m hl --hl-eq 255 -j RETURN",
		"-p ipv6-icmp --icmpv6-type neighbour-advertisement -m hl --hl-eq 255 -j RETURN",
		"-d ff02::16/128 -p ipv6-icmp --icmpv6-type 143 -j RETURN",
		"-m addrtype --dst-type LOCAL -p tcp --dport 8000 -j RETURN",
		"-d fd00:1::/64 -j RETURN",
		"-j DROP",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if m := strings.Join(s.DispatchRule(), " "); !strings.HasPrefix(m, "-i lw0123456789 ") {
		t.Errorf("routed dispatch rule: %s", m)
	}
}

func TestRulesWithoutDHCPConstantCount(t *testing.T) {
	s := testSpec()
	s.AllowDHCP = false
	n := len(s.Rules(V4))
	s.Subnets = append(s.Subnets, mustNet("10.9.0.0/16"))
	if len(s.Rules(V4)) != n {
		t.Error("subnets add rules even with allowDHCP false")
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"5000/tcp", "5000/tcp", false},
		{"53/udp", "53/udp", false},
		{"8000-8100/tcp", "8000-8100/tcp", false},
		{"80", "", true},
		{"80/icmp", "", true},
		{"0/tcp", "", true},
		{"70000/tcp", "", true},
		{"9-1/tcp", "", true},
		{"a/tcp", "", true},
	}
	for _, tc := range tests {
		got, err := ParsePort(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if err == nil && got.String() != tc.want {
			t.Errorf("%q: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestNamesAndComments(t *testing.T) {
	a, b := ChainName("lan", "c1"), ChainName("lan", "c2")
	if a == b || a != ChainName("lan", "c1") || len(a) > 28 || !strings.HasPrefix(a, ChainPrefix) {
		t.Errorf("chain names %s %s", a, b)
	}
	if ChainName("lan", "c1") == ChainName("lan2", "c1") {
		t.Error("chain name ignores the network")
	}
	n, id, ok := ParseComment(Comment("my net", "abc"))
	if !ok || n != "my net" || id != "abc" {
		t.Errorf("comment round trip: %q %q %v", n, id, ok)
	}
	if len(LogPrefix(strings.Repeat("f", 64))) > 29 {
		t.Error("log prefix longer than the kernel's 29 bytes")
	}
}

func TestShared(t *testing.T) {
	other := func(edit func(*Spec)) Spec {
		s := testSpec()
		s.LogPrefix = ""
		edit(&s)
		return s
	}
	base := other(func(*Spec) {})
	for _, tc := range []struct {
		name  string
		s     Spec
		f     Family
		share bool
	}{
		{"another container on the same LAN", other(func(s *Spec) {
			s.Chain, s.Comment, s.HostIf = ChainName("lan", "c2"), Comment("lan", "c2"), "lw9876543210"
		}), V4, true},
		{"another network with the same rules", other(func(s *Spec) { s.Chain = ChainName("lan2", "c1") }), V4, true},
		{"another LAN", other(func(s *Spec) { s.Subnets = []*net.IPNet{mustNet("10.9.9.0/24")} }), V4, false},
		{"another allowlist", other(func(s *Spec) { s.Allow = s.Allow[:1] }), V4, false},
		{"blocked attempts logged with the container's ID", other(func(s *Spec) { s.LogPrefix = LogPrefix("c2") }), V4, false},
		{"the other family", base, V6, false},
	} {
		got := tc.s.Shared(tc.f)
		if same := got.Name == base.Shared(V4).Name; same != tc.share {
			t.Errorf("%s: shares %v, want %v", tc.name, same, tc.share)
		}
		if !strings.HasPrefix(got.Name, SharedPrefix) || len(got.Name) > 28 {
			t.Errorf("%s: name %q", tc.name, got.Name)
		}
		if len(got.Rules) != len(tc.s.Rules(tc.f)) {
			t.Errorf("%s: %d rules, want %d", tc.name, len(got.Rules), len(tc.s.Rules(tc.f)))
		}
	}
}
