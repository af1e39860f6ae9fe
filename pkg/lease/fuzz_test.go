package lease

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzFromACK: whatever a (hostile) server sends, parsing never panics, and
// an accepted lease has a usable address, sane timers and routes whose
// gateways are unicast.
func FuzzFromACK(f *testing.F) {
	seed, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 1, 2, 50)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 1, 2, 1))),
		dhcpv4.WithRouter(net.IPv4(10, 1, 2, 1)), dhcpv4.WithLeaseTime(120),
		dhcpv4.WithGeneric(dhcpv4.OptionClasslessStaticRoute, []byte{24, 192, 168, 5, 10, 1, 2, 2}))
	f.Add(seed.ToBytes())
	zero, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 1, 2, 51)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 1, 2, 1))), dhcpv4.WithLeaseTime(0),
		dhcpv4.WithGeneric(dhcpv4.OptionClasslessStaticRoute, []byte{40, 1, 2, 3}))
	f.Add(zero.ToBytes())
	f.Add([]byte{2, 1, 6, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		info, err := FromACK(m)
		if err != nil {
			return
		}
		if !usableUnicast(info.Address.IP) || info.LeaseTime < minLeaseTime ||
			!(info.RenewTime > 0 && info.RenewTime < info.RebindTime) {
			t.Fatalf("accepted a bad lease: %+v", info)
		}
		if info.LeaseTime < Infinite && info.RebindTime >= info.LeaseTime {
			t.Fatalf("T2 %s not before the lease end %s", info.RebindTime, info.LeaseTime)
		}
		for _, r := range info.Routes {
			if r.GW != nil && !usableUnicast(r.GW) {
				t.Fatalf("route through %v accepted", r.GW)
			}
		}
		_ = info.NextAttempt(time.Unix(0, 0), time.Unix(100, 0), time.Second)
	})
}
