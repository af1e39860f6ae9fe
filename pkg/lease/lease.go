// Package lease holds a DHCPv4 lease as lanwire keeps it: what the client asks
// for (Spec), what the server granted (Info), and the RFC 2131 timers.
package lease

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Key names one lease: a container's interface on one CNI network.
type Key struct {
	ContainerID string `json:"containerID"`
	Network     string `json:"network"`
	IfName      string `json:"ifname"`
}

// String renders the key as "containerID/network/ifname".
func (k Key) String() string {
	return k.ContainerID + "/" + k.Network + "/" + k.IfName
}

// ID is a short stable hash of the key, used for file names.
func (k Key) ID() string {
	s := sha256.Sum256([]byte(k.String()))
	return hex.EncodeToString(s[:12])
}

// HostIf is the name of the host end of the key's veth: "lw" and 10 hex
// digits of the key's hash.
func (k Key) HostIf() string { return "lw" + k.ID()[:10] }

// Validate reports whether every part of the key is present.
func (k Key) Validate() error {
	if k.ContainerID == "" || k.Network == "" || k.IfName == "" {
		return fmt.Errorf("lease key %q is incomplete: container ID, network name and ifname are all required", k.String())
	}
	return nil
}

// Spec is what the client needs to obtain and keep a lease.
type Spec struct {
	Netns       string           `json:"netns"`
	IfName      string           `json:"ifname"`
	Bridge      string           `json:"bridge"`
	MAC         string           `json:"mac"`
	ClientID    []byte           `json:"clientID,omitempty"`
	Hostname    string           `json:"hostname,omitempty"`
	VendorClass string           `json:"vendorClass,omitempty"`
	RequestIP   net.IP           `json:"requestIP,omitempty"`
	SendOptions map[uint8][]byte `json:"sendOptions,omitempty"`
	// RequestOptions are option codes added to the parameter request list.
	RequestOptions []uint8 `json:"requestOptions,omitempty"`
	RouteMetric    int     `json:"routeMetric,omitempty"`
	// DHCPv6 asks for an IA_NA lease too (ipv6 "dhcpv6" or "auto").
	DHCPv6 bool `json:"dhcpv6,omitempty"`
	// RequestIP6 is the IPv6 address asked for in the IA_NA.
	RequestIP6 net.IP `json:"requestIP6,omitempty"`
}

// HardwareAddr parses the spec's MAC.
func (s Spec) HardwareAddr() (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s.MAC)
	if err != nil {
		return nil, fmt.Errorf("parsing lease MAC %q: %w", s.MAC, err)
	}
	return mac, nil
}

// Route is one route granted by the server. A nil Gateway means on-link.
type Route struct {
	Dst net.IPNet `json:"dst"`
	GW  net.IP    `json:"gw,omitempty"`
}

// Info is what the server granted, parsed and checked from its ACK.
type Info struct {
	Address    net.IPNet     `json:"address"`
	Gateway    net.IP        `json:"gateway,omitempty"`
	Routes     []Route       `json:"routes,omitempty"`
	DNS        []net.IP      `json:"dns,omitempty"`
	Domain     string        `json:"domain,omitempty"`
	Search     []string      `json:"search,omitempty"`
	MTU        int           `json:"mtu,omitempty"`
	ServerID   net.IP        `json:"serverID"`
	LeaseTime  time.Duration `json:"leaseTime"`
	RenewTime  time.Duration `json:"renewTime"`
	RebindTime time.Duration `json:"rebindTime"`
}

// Infinite is the lease time a server grants with 0xffffffff.
const Infinite = time.Duration(0xffffffff) * time.Second

// minLeaseTime is the shortest lease accepted; shorter grants (a hostile or
// broken server sending 0) are treated as this long so the client never spins.
const minLeaseTime = 30 * time.Second

// infiniteRenew is how often an infinite lease is still confirmed.
const infiniteRenew = 24 * time.Hour

// FromACK parses and checks a server's ACK. Routes follow RFC 3442: option 121
// (or Microsoft's 249) replaces options 3 and 33 when present.
func FromACK(ack *dhcpv4.DHCPv4) (Info, error) {
	var info Info
	if ack == nil {
		return info, errors.New("no ACK")
	}
	ip := ack.YourIPAddr.To4()
	if ip == nil || !usableUnicast(ip) {
		return info, fmt.Errorf("server granted unusable address %v", ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ip.DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 || ones == 0 || ones > 32 {
		return info, fmt.Errorf("server granted invalid subnet mask %v", net.IP(mask))
	}
	info.Address = net.IPNet{IP: ip, Mask: mask}
	info.ServerID = ack.ServerIdentifier().To4()
	if info.ServerID == nil {
		return info, errors.New("ACK has no server identifier (option 54)")
	}

	info.LeaseTime = ack.IPAddressLeaseTime(0)
	if info.LeaseTime < minLeaseTime {
		info.LeaseTime = minLeaseTime
	}
	info.RenewTime = ack.IPAddressRenewalTime(0)
	info.RebindTime = ack.IPAddressRebindingTime(0)
	info.RenewTime, info.RebindTime = timers(info.LeaseTime, info.RenewTime, info.RebindTime)

	subnet := net.IPNet{IP: ip.Mask(mask), Mask: mask}
	info.Routes, info.Gateway = routesFrom(ack, subnet)

	for _, d := range ack.DNS() {
		if d4 := d.To4(); d4 != nil && usableUnicast(d4) {
			info.DNS = append(info.DNS, d4)
		}
	}
	info.Domain = ack.DomainName()
	if labels := ack.DomainSearch(); labels != nil {
		info.Search = append(info.Search, labels.Labels...)
	}
	if v := ack.Options.Get(dhcpv4.OptionInterfaceMTU); len(v) == 2 {
		mtu := int(v[0])<<8 | int(v[1])
		if mtu >= 576 && mtu <= 65535 {
			info.MTU = mtu
		}
	}
	return info, nil
}

// timers returns T1 and T2, using RFC 2131 defaults (0.5 and 0.875 of the
// lease) when the server's values are absent or out of order.
func timers(lease, t1, t2 time.Duration) (time.Duration, time.Duration) {
	if lease >= Infinite {
		return infiniteRenew, infiniteRenew + infiniteRenew/2
	}
	if t1 <= 0 || t1 >= lease {
		t1 = lease / 2
	}
	if t2 <= t1 || t2 >= lease {
		t2 = lease * 7 / 8
		if t2 <= t1 {
			t2 = t1 + (lease-t1)/2
		}
	}
	return t1, t2
}

func routesFrom(ack *dhcpv4.DHCPv4, subnet net.IPNet) ([]Route, net.IP) {
	classless := ack.ClasslessStaticRoute()
	if len(classless) == 0 {
		if v := ack.Options.Get(dhcpv4.GenericOptionCode(249)); len(v) > 0 {
			var r dhcpv4.Routes
			if err := r.FromBytes(v); err == nil {
				classless = r
			}
		}
	}
	var routes []Route
	var gw net.IP
	if len(classless) > 0 {
		for _, r := range classless {
			if r == nil || r.Dest == nil {
				continue
			}
			rt, ok := checkRoute(*r.Dest, r.Router, subnet)
			if !ok {
				continue
			}
			if ones, _ := rt.Dst.Mask.Size(); ones == 0 && gw == nil && rt.GW != nil {
				gw = rt.GW
			}
			routes = append(routes, rt)
		}
		return routes, gw
	}
	for _, r := range ack.Router() {
		r4 := r.To4()
		if r4 == nil || !usableUnicast(r4) || !subnet.Contains(r4) {
			continue
		}
		gw = r4
		routes = append(routes, Route{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: r4})
		break
	}
	// Option 33: pairs of (classful destination, router).
	if v := ack.Options.Get(dhcpv4.OptionStaticRoutingTable); len(v)%8 == 0 {
		for i := 0; i+8 <= len(v); i += 8 {
			dst := net.IP(append([]byte(nil), v[i:i+4]...))
			via := net.IP(append([]byte(nil), v[i+4:i+8]...))
			mask := dst.DefaultMask()
			if dst.Equal(net.IPv4zero) || mask == nil {
				continue // option 33 may not carry a default route
			}
			if dst.Mask(mask).Equal(dst) == false {
				mask = net.CIDRMask(32, 32) // a host route
			}
			if rt, ok := checkRoute(net.IPNet{IP: dst, Mask: mask}, via, subnet); ok {
				routes = append(routes, rt)
			}
		}
	}
	return routes, gw
}

// checkRoute refuses destinations and gateways no sane server sends: a
// loopback, multicast or broadcast gateway, or a destination with host bits.
func checkRoute(dst net.IPNet, via net.IP, subnet net.IPNet) (Route, bool) {
	d4 := dst.IP.To4()
	if d4 == nil {
		return Route{}, false
	}
	ones, bits := dst.Mask.Size()
	if bits != 32 || !d4.Mask(dst.Mask).Equal(d4) {
		return Route{}, false
	}
	if ones > 0 && (d4.IsLoopback() || d4.IsMulticast() || d4.Equal(net.IPv4bcast)) {
		return Route{}, false
	}
	rt := Route{Dst: net.IPNet{IP: d4, Mask: dst.Mask}}
	v4 := via.To4()
	if v4 == nil {
		return Route{}, false
	}
	if !v4.Equal(net.IPv4zero) {
		if !usableUnicast(v4) {
			return Route{}, false
		}
		rt.GW = v4
	}
	return rt, true
}

func usableUnicast(ip net.IP) bool {
	return !ip.IsUnspecified() && !ip.IsLoopback() && !ip.IsMulticast() && !ip.Equal(net.IPv4bcast)
}

// Phase is where a lease stands in the RFC 2131 client state machine.
type Phase string

// The phases a held lease moves through.
const (
	Bound     Phase = "bound"
	Renewing  Phase = "renewing"
	Rebinding Phase = "rebinding"
	Expired   Phase = "expired"
)

// PhaseAt says which phase a lease acquired (or last renewed) at acquired is in at now.
func (i Info) PhaseAt(acquired, now time.Time) Phase {
	switch el := now.Sub(acquired); {
	case el < i.RenewTime:
		return Bound
	case el < i.RebindTime:
		return Renewing
	case el < i.LeaseTime:
		return Rebinding
	default:
		return Expired
	}
}

// NextAttempt says when to act next for a lease in phase p: at T1 and T2
// themselves, and in between retry after half the time left to the next
// boundary (RFC 2131 4.4.5), at least every minRetry and at most every 60 s.
func (i Info) NextAttempt(acquired, now time.Time, minRetry time.Duration) time.Time {
	t1 := acquired.Add(i.RenewTime)
	t2 := acquired.Add(i.RebindTime)
	exp := acquired.Add(i.LeaseTime)
	var boundary time.Time
	switch i.PhaseAt(acquired, now) {
	case Bound:
		return t1
	case Renewing:
		boundary = t2
	case Rebinding:
		boundary = exp
	default:
		return now.Add(minRetry)
	}
	wait := boundary.Sub(now) / 2
	if wait > 60*time.Second {
		wait = 60 * time.Second
	}
	if wait < minRetry {
		wait = minRetry
	}
	if next := now.Add(wait); next.Before(boundary) {
		return next
	}
	return boundary
}
