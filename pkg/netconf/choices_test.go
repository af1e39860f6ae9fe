package netconf

import (
	"net"
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/lease"
)

func cidr(s string) net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return net.IPNet{IP: ip, Mask: n.Mask}
}

func TestRouteFor(t *testing.T) {
	info := lease.Info{Address: cidr("10.1.2.3/24")}
	tests := []struct {
		name      string
		r         lease.Route
		wantScope netlink.Scope
		wantFlags int
	}{
		{"default via a gateway on the subnet", lease.Route{Dst: cidr("0.0.0.0/0"), GW: net.ParseIP("10.1.2.1")}, netlink.SCOPE_UNIVERSE, 0},
		{"a gateway outside the subnet (option 121)", lease.Route{Dst: cidr("192.168.9.0/24"), GW: net.ParseIP("172.16.0.1")}, netlink.SCOPE_UNIVERSE, int(netlink.FLAG_ONLINK)},
		{"on-link, no gateway", lease.Route{Dst: cidr("10.9.0.0/16")}, netlink.SCOPE_LINK, 0},
	}
	for _, tc := range tests {
		got := routeFor(7, info, tc.r, 50)
		if got.LinkIndex != 7 || got.Priority != 50 || got.Scope != tc.wantScope || got.Flags != tc.wantFlags || !got.Gw.Equal(tc.r.GW) {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
}

func TestStaleRoutes(t *testing.T) {
	a := lease.Route{Dst: cidr("0.0.0.0/0"), GW: net.ParseIP("10.1.2.1")}
	b := lease.Route{Dst: cidr("192.168.9.0/24"), GW: net.ParseIP("10.1.2.9")}
	bMoved := lease.Route{Dst: cidr("192.168.9.0/24"), GW: net.ParseIP("10.1.2.8")}
	tests := []struct {
		old, new, want []lease.Route
	}{
		{[]lease.Route{a, b}, []lease.Route{a, b}, nil},
		{[]lease.Route{a, b}, []lease.Route{a}, []lease.Route{b}},
		{[]lease.Route{a, b}, []lease.Route{a, bMoved}, []lease.Route{b}},
		{nil, []lease.Route{a}, nil},
	}
	for i, tc := range tests {
		if got := staleRoutes(tc.old, tc.new); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%d: got %v, want %v", i, got, tc.want)
		}
	}
}

func TestIPv6Sysctls(t *testing.T) {
	off := ipv6Sysctls(IPv6Mode{Off: true})
	if last := off[len(off)-1]; last != [2]string{"disable_ipv6", "1"} {
		t.Errorf("off ends with %v, want disable_ipv6 1", last)
	}
	for _, mode := range []IPv6Mode{{}, {Autoconf: true}} {
		vals := map[string]string{}
		got := ipv6Sysctls(mode)
		for _, kv := range got {
			vals[kv[0]] = kv[1]
		}
		want := map[string]string{"accept_ra": "1", "accept_dad": "0", "addr_gen_mode": "0", "use_tempaddr": "0",
			"router_solicitations": "-1", "router_solicitation_interval": "1", "router_solicitation_max_interval": "4", "disable_ipv6": "0"}
		want["autoconf"] = map[bool]string{false: "0", true: "1"}[mode.Autoconf]
		if !reflect.DeepEqual(vals, want) {
			t.Errorf("%+v: got %v, want %v", mode, vals, want)
		}
		if got[len(got)-1] != [2]string{"disable_ipv6", "0"} {
			t.Errorf("%+v: IPv6 is turned on before the rest is set: %v", mode, got)
		}
	}
}
