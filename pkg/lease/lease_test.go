package lease

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 1, 2, 50)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 1, 2, 1))),
		dhcpv4.WithLeaseTime(3600),
	}
	m, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func cidr(s string) net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return *n
}

func classless(rs ...dhcpv4.Route) dhcpv4.Modifier {
	var ptrs dhcpv4.Routes
	for i := range rs {
		ptrs = append(ptrs, &rs[i])
	}
	return dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(ptrs...))
}

func TestFromACKRoutes(t *testing.T) {
	gw := net.IPv4(10, 1, 2, 1).To4()
	n := func(s string) *net.IPNet { x := cidr(s); return &x }
	tests := []struct {
		name       string
		mods       []dhcpv4.Modifier
		wantGW     net.IP
		wantRoutes []string
	}{
		{"router only", []dhcpv4.Modifier{dhcpv4.WithRouter(gw)}, gw, []string{"0.0.0.0/0 via 10.1.2.1"}},
		{"no router", nil, nil, nil},
		{"router outside subnet ignored", []dhcpv4.Modifier{dhcpv4.WithRouter(net.IPv4(192, 168, 9, 1))}, nil, nil},
		{"classless replaces router", []dhcpv4.Modifier{
			dhcpv4.WithRouter(net.IPv4(10, 1, 2, 99)),
			classless(dhcpv4.Route{Dest: n("0.0.0.0/0"), Router: gw}, dhcpv4.Route{Dest: n("172.16.0.0/12"), Router: net.IPv4(10, 1, 2, 2)}),
		}, gw, []string{"0.0.0.0/0 via 10.1.2.1", "172.16.0.0/12 via 10.1.2.2"}},
		{"classless on-link route", []dhcpv4.Modifier{
			classless(dhcpv4.Route{Dest: n("192.168.50.0/24"), Router: net.IPv4zero}),
		}, nil, []string{"192.168.50.0/24 on-link"}},
		{"classless bogus gateways dropped", []dhcpv4.Modifier{
			classless(dhcpv4.Route{Dest: n("172.16.0.0/12"), Router: net.IPv4(127, 0, 0, 1)},
				dhcpv4.Route{Dest: n("172.17.0.0/16"), Router: net.IPv4(224, 0, 0, 1)},
				dhcpv4.Route{Dest: n("172.18.0.0/16"), Router: net.IPv4bcast},
				dhcpv4.Route{Dest: n("10.9.0.0/16"), Router: gw}),
		}, nil, []string{"10.9.0.0/16 via 10.1.2.1"}},
		{"ms classless 249", []dhcpv4.Modifier{
			dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(249), []byte{16, 172, 20, 10, 1, 2, 3}),
		}, nil, []string{"172.20.0.0/16 via 10.1.2.3"}},
		{"option 33 beside router", []dhcpv4.Modifier{
			dhcpv4.WithRouter(gw),
			dhcpv4.WithGeneric(dhcpv4.OptionStaticRoutingTable, []byte{172, 16, 0, 0, 10, 1, 2, 4, 192, 168, 7, 9, 10, 1, 2, 5, 0, 0, 0, 0, 10, 1, 2, 6}),
		}, gw, []string{"0.0.0.0/0 via 10.1.2.1", "172.16.0.0/16 via 10.1.2.4", "192.168.7.9/32 via 10.1.2.5"}},
		{"garbage option 121 ignored", []dhcpv4.Modifier{
			dhcpv4.WithRouter(gw),
			dhcpv4.WithGeneric(dhcpv4.OptionClasslessStaticRoute, []byte{40, 1, 2}),
		}, gw, []string{"0.0.0.0/0 via 10.1.2.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := FromACK(ack(t, tc.mods...))
			if err != nil {
				t.Fatal(err)
			}
			if !info.Gateway.Equal(tc.wantGW) {
				t.Errorf("gateway: got %v, want %v", info.Gateway, tc.wantGW)
			}
			var got []string
			for _, r := range info.Routes {
				s := r.Dst.String()
				if r.GW == nil {
					s += " on-link"
				} else {
					s += " via " + r.GW.String()
				}
				got = append(got, s)
			}
			if len(got) != len(tc.wantRoutes) {
				t.Fatalf("routes: got %v, want %v", got, tc.wantRoutes)
			}
			for i := range got {
				if got[i] != tc.wantRoutes[i] {
					t.Errorf("route %d: got %s, want %s", i, got[i], tc.wantRoutes[i])
				}
			}
		})
	}
}

func TestFromACKTimes(t *testing.T) {
	tests := []struct {
		name               string
		mods               []dhcpv4.Modifier
		lease, renew, rebd time.Duration
	}{
		{"defaults from lease", nil, time.Hour, 30 * time.Minute, 3150 * time.Second},
		{"server timers", []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(600 * time.Second)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(1200 * time.Second)),
		}, time.Hour, 600 * time.Second, 1200 * time.Second},
		{"timers out of order", []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(3000 * time.Second)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(100 * time.Second)),
		}, time.Hour, 3000 * time.Second, 3150 * time.Second},
		{"lease time 0", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(0)}, minLeaseTime, minLeaseTime / 2, minLeaseTime * 7 / 8},
		{"infinite", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(0xffffffff)}, Infinite, infiniteRenew, infiniteRenew * 3 / 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := FromACK(ack(t, tc.mods...))
			if err != nil {
				t.Fatal(err)
			}
			if info.LeaseTime != tc.lease || info.RenewTime != tc.renew || info.RebindTime != tc.rebd {
				t.Errorf("got lease %s T1 %s T2 %s, want %s %s %s", info.LeaseTime, info.RenewTime, info.RebindTime, tc.lease, tc.renew, tc.rebd)
			}
		})
	}
}

func TestFromACKRejects(t *testing.T) {
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
	}{
		{"zero address", []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4zero)}},
		{"broadcast address", []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4bcast)}},
		{"multicast address", []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4(224, 0, 0, 5))}},
		{"no server id", []dhcpv4.Modifier{dhcpv4.WithoutOption(dhcpv4.OptionServerIdentifier)}},
		{"mask /0", []dhcpv4.Modifier{dhcpv4.WithNetmask(net.CIDRMask(0, 32))}},
		{"non-contiguous mask", []dhcpv4.Modifier{dhcpv4.WithNetmask(net.IPMask{255, 0, 255, 0})}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := FromACK(ack(t, tc.mods...)); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestFromACKDNS(t *testing.T) {
	info, err := FromACK(ack(t,
		dhcpv4.WithDNS(net.IPv4(10, 1, 2, 1), net.IPv4zero, net.IPv4(10, 1, 2, 53)),
		dhcpv4.WithOption(dhcpv4.OptDomainName("lan.test")),
		dhcpv4.WithDomainSearchList("lan.test", "corp.test"),
		dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{0x05, 0xdc}),
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.DNS) != 2 || info.DNS[0].String() != "10.1.2.1" || info.DNS[1].String() != "10.1.2.53" {
		t.Errorf("DNS: got %v", info.DNS)
	}
	if info.Domain != "lan.test" || len(info.Search) != 2 || info.Search[1] != "corp.test" {
		t.Errorf("domain %q search %v", info.Domain, info.Search)
	}
	if info.MTU != 1500 {
		t.Errorf("MTU: got %d, want 1500", info.MTU)
	}
}

func TestPhases(t *testing.T) {
	info := Info{LeaseTime: 120 * time.Second, RenewTime: 60 * time.Second, RebindTime: 105 * time.Second}
	t0 := time.Unix(1_000_000, 0)
	minRetry := 4 * time.Second
	tests := []struct {
		at        time.Duration
		phase     Phase
		nextAfter time.Duration // next attempt, relative to t0
	}{
		{0, Bound, 60 * time.Second},
		{59 * time.Second, Bound, 60 * time.Second},
		{60 * time.Second, Renewing, 82500 * time.Millisecond}, // half of the 45 s to T2
		{100 * time.Second, Renewing, 104 * time.Second},       // floor of 4 s
		{104 * time.Second, Renewing, 105 * time.Second},       // never past T2
		{105 * time.Second, Rebinding, 112500 * time.Millisecond},
		{119 * time.Second, Rebinding, 120 * time.Second},
		{120 * time.Second, Expired, 124 * time.Second},
	}
	for _, tc := range tests {
		now := t0.Add(tc.at)
		if got := info.PhaseAt(t0, now); got != tc.phase {
			t.Errorf("at %s: phase %s, want %s", tc.at, got, tc.phase)
		}
		if got := info.NextAttempt(t0, now, minRetry).Sub(t0); got != tc.nextAfter {
			t.Errorf("at %s: next attempt at %s, want %s", tc.at, got, tc.nextAfter)
		}
	}
}

func TestModifiersOnDiscover(t *testing.T) {
	s := Spec{Hostname: "web1", ClientID: []byte{1, 2, 3}, VendorClass: "lanwire", SendOptions: map[uint8][]byte{77: []byte("ci")}, RequestOptions: []uint8{42}}
	d, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1}, s.Modifiers()...)
	if err != nil {
		t.Fatal(err)
	}
	if d.HostName() != "web1" {
		t.Errorf("hostname: got %q", d.HostName())
	}
	if got := d.Options.Get(dhcpv4.OptionClientIdentifier); string(got) != string([]byte{1, 2, 3}) {
		t.Errorf("client id: got %v", got)
	}
	if d.ClassIdentifier() != "lanwire" {
		t.Errorf("vendor class: got %q", d.ClassIdentifier())
	}
	if string(d.Options.Get(dhcpv4.GenericOptionCode(77))) != "ci" {
		t.Error("send option 77 missing")
	}
	for _, c := range []dhcpv4.OptionCode{dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionDomainNameServer, dhcpv4.GenericOptionCode(42)} {
		if !d.IsOptionRequested(c) {
			t.Errorf("option %v not requested", c)
		}
	}
}

func TestKeyID(t *testing.T) {
	a := Key{ContainerID: "c1", Network: "lan", IfName: "eth0"}
	b := Key{ContainerID: "c1", Network: "lan", IfName: "eth1"}
	if a.ID() == b.ID() || a.ID() != (Key{ContainerID: "c1", Network: "lan", IfName: "eth0"}).ID() {
		t.Error("key IDs must be stable and distinct")
	}
	if (Key{ContainerID: "c1"}).Validate() == nil {
		t.Error("incomplete key accepted")
	}
}
