package portmap

import (
	"encoding/hex"
	"net"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   []Mapping
		want string // error substring, "" for ok
	}{
		{"ok", []Mapping{{HostPort: 8080, ContainerPort: 80}}, ""},
		{"upper-case proto", []Mapping{{HostPort: 8080, ContainerPort: 80, Protocol: "UDP"}}, ""},
		{"port 0", []Mapping{{HostPort: 0, ContainerPort: 80}}, "hostPort 0"},
		{"port 70000", []Mapping{{HostPort: 70000, ContainerPort: 80}}, "hostPort 70000"},
		{"container port", []Mapping{{HostPort: 80, ContainerPort: -1}}, "containerPort"},
		{"icmp", []Mapping{{HostPort: 80, ContainerPort: 80, Protocol: "icmp"}}, "\"icmp\" is not supported"},
		{"hostIP", []Mapping{{HostPort: 80, ContainerPort: 80, HostIP: "nope"}}, "not an IP"},
		{"duplicate", []Mapping{{HostPort: 80, ContainerPort: 80}, {HostPort: 80, ContainerPort: 81, Protocol: "tcp"}}, "given twice"},
		{"same port other proto", []Mapping{{HostPort: 80, ContainerPort: 80}, {HostPort: 80, ContainerPort: 80, Protocol: "udp"}}, ""},
		{"0.0.0.0 is all", []Mapping{{HostPort: 80, ContainerPort: 80}, {HostPort: 80, ContainerPort: 80, HostIP: "0.0.0.0"}}, "given twice"},
	}
	for _, tc := range tests {
		_, err := Validate(tc.in)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	a := Mapping{HostPort: 80, Protocol: "tcp"}
	b := Mapping{HostPort: 80, Protocol: "tcp", HostIP: "10.0.0.1"}
	c := Mapping{HostPort: 80, Protocol: "tcp", HostIP: "10.0.0.2"}
	d := Mapping{HostPort: 80, Protocol: "udp"}
	if !Overlaps(a, b) || !Overlaps(b, a) || Overlaps(b, c) || Overlaps(a, d) {
		t.Error("overlap rules wrong")
	}
}

func ipnet(s string) net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return net.IPNet{IP: ip, Mask: n.Mask}
}

// render shows elements as "set key [- keyEnd] : val (mapping)" in hex.
func render(es []Element) string {
	var lines []string
	for _, e := range es {
		l := e.Set + " " + hex.EncodeToString(e.Key)
		if e.KeyEnd != nil {
			l += "-" + hex.EncodeToString(e.KeyEnd)
		}
		if e.Val != nil {
			l += " : " + hex.EncodeToString(e.Val)
		}
		if e.Mapping != "" {
			l += " (" + e.Mapping + ")"
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

func TestElementsV4(t *testing.T) {
	ms, _ := Validate([]Mapping{
		{HostPort: 8080, ContainerPort: 80},
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "10.0.0.1"},
		{HostPort: 9000, ContainerPort: 9000, HostIP: "fd00::1"},
	})
	s := Spec{Addr: ipnet("10.1.2.3/24"), Mappings: ms, Localhost: true}
	// proto and ports pad to 4 bytes; values are address . port.
	want := strings.Join([]string{
		"dnatany4 060000001f900000 : 0a01020300500000 (8080/tcp)",
		"dnatlo4 060000001f900000 : 0a01020300500000 (8080/tcp)",
		"dnat4 0a0000011100000014e90000 : 0a01020300350000 (5353/udp@10.0.0.1)",
		"hairpin4 0a0102030a010200-0a0102030a0102ff",
	}, "\n")
	if got := render(s.Elements()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	s.MasqAll, s.Localhost = true, false
	want = strings.Join([]string{
		"dnatany4 060000001f900000 : 0a01020300500000 (8080/tcp)",
		"dnat4 0a0000011100000014e90000 : 0a01020300350000 (5353/udp@10.0.0.1)",
		"masq4 0a010203",
	}, "\n")
	if got := render(s.Elements()); got != want {
		t.Errorf("MasqAll: got:\n%s\nwant:\n%s", got, want)
	}
}

func TestElementsV6(t *testing.T) {
	ms, _ := Validate([]Mapping{{HostPort: 8080, ContainerPort: 80}, {HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "10.0.0.1"}})
	s := Spec{Addr: ipnet("fd00::5/64"), Mappings: ms, MasqAll: true}
	want := strings.Join([]string{
		"dnatany6 060000001f900000 : fd00000000000000000000000000000500500000 (8080/tcp)",
		"masq6 fd000000000000000000000000000005",
	}, "\n")
	if got := render(s.Elements()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if es := (Spec{Addr: ipnet("fd00::5/64"), Mappings: ms[1:]}).Elements(); es != nil {
		t.Errorf("an IPv4-only mapping gave IPv6 entries: %s", render(es))
	}
}

func TestLayoutRules(t *testing.T) {
	var got []string
	for _, c := range Layout().Chains {
		for _, r := range c.Rules {
			got = append(got, c.Name+": "+r.Text())
		}
	}
	want := []string{
		"prerouting: fib daddr type local jump published",
		"output: meta nfproto ipv4 ip daddr 127.0.0.0/8 dnat ip to meta l4proto . th dport map @dnatlo4",
		"output: meta nfproto ipv4 ip daddr 127.0.0.0/8 dnat ip to ip daddr . meta l4proto . th dport map @dnat4",
		"output: fib daddr type local jump published",
		"published: meta nfproto ipv4 ip daddr 127.0.0.0/8 return",
		"published: meta nfproto ipv6 ip6 daddr ::1/128 return",
		"published: meta nfproto ipv6 ip6 saddr fe80::/10 return",
		"published: meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @dnat4",
		"published: meta nfproto ipv4 dnat ip to meta l4proto . th dport map @dnatany4",
		"published: meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6",
		"published: meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @dnatany6",
		"postrouting: ct status dnat meta nfproto ipv4 ip daddr @masq4 masquerade",
		"postrouting: ct status dnat meta nfproto ipv4 ip daddr . ip saddr @hairpin4 masquerade",
		"postrouting: ct status dnat meta nfproto ipv4 ip saddr 127.0.0.0/8 masquerade",
		"postrouting: ct status dnat meta nfproto ipv6 ip6 daddr @masq6 masquerade",
		"postrouting: ct status dnat meta nfproto ipv6 ip6 daddr . ip6 saddr @hairpin6 masquerade",
		"raw: iifname @localnet meta nfproto ipv4 ip daddr 127.0.0.0/8 drop",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
