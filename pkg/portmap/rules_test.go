package portmap

import (
	"net"
	"strings"
	"testing"

	"github.com/lanwire/lanwire/pkg/chains"
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

func TestCommentRoundTrip(t *testing.T) {
	for _, m := range []Mapping{{HostPort: 8080, Protocol: "tcp"}, {HostPort: 53, Protocol: "udp", HostIP: "fd00::1"}} {
		n, id, got, ok := ParseComment(Comment("my net", "c1", m))
		if !ok || n != "my net" || id != "c1" || got.String() != m.String() {
			t.Errorf("round trip of %s: %q %q %s %v", m, n, id, got, ok)
		}
	}
}

func join(rs [][]string) string {
	var lines []string
	for _, r := range rs {
		lines = append(lines, strings.Join(r, " "))
	}
	return strings.Join(lines, "\n")
}

func TestRulesV4(t *testing.T) {
	s := Spec{Network: "lan", ContainerID: "c1", Chain: "LWPM-X", Family: chains.V4,
		Addr:     net.IPNet{IP: net.ParseIP("10.1.2.50").To4(), Mask: net.CIDRMask(24, 32)},
		Mappings: []Mapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 53, ContainerPort: 5353, Protocol: "udp", HostIP: "10.1.2.254"}, {HostPort: 9, ContainerPort: 9, Protocol: "tcp", HostIP: "fd00::1"}},
	}
	wantDispatch := `! -d 127.0.0.0/8 -p tcp --dport 8080 -m comment --comment lanwire portmap-lite net=lan id=c1 map=8080/tcp -j LWPM-X
-d 10.1.2.254/32 -p udp --dport 53 -m comment --comment lanwire portmap-lite net=lan id=c1 map=53/udp@10.1.2.254 -j LWPM-X`
	if got := join(s.Dispatch()); got != wantDispatch {
		t.Errorf("dispatch:\n%s\nwant:\n%s", got, wantDispatch)
	}
	wantRules := `-p tcp --dport 8080 -s 10.1.2.0/24 -j MARK --set-xmark 0x2000/0x2000
-p tcp --dport 8080 -j DNAT --to-destination 10.1.2.50:80
-d 10.1.2.254/32 -p udp --dport 53 -s 10.1.2.0/24 -j MARK --set-xmark 0x2000/0x2000
-d 10.1.2.254/32 -p udp --dport 53 -j DNAT --to-destination 10.1.2.50:5353`
	if got := join(s.Rules()); got != wantRules {
		t.Errorf("rules:\n%s\nwant:\n%s", got, wantRules)
	}
	s.MasqAll, s.Localhost = true, true
	s.Mappings = s.Mappings[:1]
	if got := join(s.Rules()); !strings.HasPrefix(got, "-p tcp --dport 8080 -j MARK") || strings.Contains(got, "127.0.0.0/8") {
		t.Errorf("masquerade-all rules:\n%s", got)
	}
	if got := join(s.Dispatch()); strings.Contains(got, "127.0.0.0/8") {
		t.Errorf("localhost dispatch still excludes loopback: %s", got)
	}
}

func TestRulesV6(t *testing.T) {
	s := Spec{Network: "lan", ContainerID: "c1", Chain: "LWPM-X", Family: chains.V6,
		Addr:     net.IPNet{IP: net.ParseIP("fd00::50"), Mask: net.CIDRMask(64, 128)},
		Mappings: []Mapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 53, ContainerPort: 53, Protocol: "udp", HostIP: "10.1.2.254"}},
	}
	want := `! -d ::1/128 ! -s fe80::/10 -p tcp --dport 8080 -m comment --comment lanwire portmap-lite net=lan id=c1 map=8080/tcp -j LWPM-X`
	if got := join(s.Dispatch()); got != want {
		t.Errorf("dispatch:\n%s\nwant:\n%s", got, want)
	}
	if got := join(s.Rules()); !strings.Contains(got, "--to-destination [fd00::50]:80") || strings.Contains(got, "10.1.2.254") {
		t.Errorf("rules:\n%s", got)
	}
}

func TestLayoutHooks(t *testing.T) {
	l := Layout(chains.V4)
	if got := strings.Join(l.Hooks[0].Rule, " "); got != "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -m comment --comment lanwire portmap-lite -j LANWIRE-HOSTPORTS" {
		t.Errorf("PREROUTING hook: %s", got)
	}
	if got := strings.Join(Layout(chains.V6).Hooks[0].Rule, " "); !strings.Contains(got, "! -d ::1/128") {
		t.Errorf("IPv6 PREROUTING hook: %s", got)
	}
}
