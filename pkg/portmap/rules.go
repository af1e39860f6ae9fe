// Package portmap is the portmap-lite CNI plugin: it publishes container
// ports on the host with DNAT through maps in lanwire's own nftables table,
// refuses ports already taken, and clears stale UDP conntrack entries.
// The table's rules are constant; each mapping is one map element, so
// neither an ADD nor a packet costs more with more mappings.
package portmap

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/google/nftables"

	"github.com/lanwire/lanwire/pkg/nft"
)

// Table is portmap-lite's inet table (a frozen name).
const Table = "lanwire_portmap"

// Mapping is one entry of the portMappings capability.
type Mapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// String renders a mapping as "8080/tcp" or "8080/tcp@10.0.0.1".
func (m Mapping) String() string {
	s := fmt.Sprintf("%d/%s", m.HostPort, m.Protocol)
	if m.HostIP != "" {
		s += "@" + m.HostIP
	}
	return s
}

// ip returns the parsed host IP, nil for "all addresses".
func (m Mapping) ip() net.IP {
	if m.HostIP == "" {
		return nil
	}
	return net.ParseIP(m.HostIP)
}

// applies reports whether the mapping is published over IPv6 (v6) or IPv4
// (a mapping without hostIP is published over both).
func (m Mapping) applies(v6 bool) bool {
	ip := m.ip()
	return ip == nil || (ip.To4() == nil) == v6
}

// Validate checks mappings and fills defaults: protocol tcp, lower case,
// hostIP 0.0.0.0 and :: meaning all addresses. Duplicates are refused.
func Validate(ms []Mapping) ([]Mapping, error) {
	seen := map[string]bool{}
	out := make([]Mapping, 0, len(ms))
	for i, m := range ms {
		m.Protocol = strings.ToLower(m.Protocol)
		if m.Protocol == "" {
			m.Protocol = "tcp"
		}
		if m.Protocol != "tcp" && m.Protocol != "udp" {
			return nil, fmt.Errorf("portMappings[%d]: protocol %q is not supported: use \"tcp\" or \"udp\"", i, m.Protocol)
		}
		if m.HostPort < 1 || m.HostPort > 65535 {
			return nil, fmt.Errorf("portMappings[%d]: hostPort %d out of range 1-65535", i, m.HostPort)
		}
		if m.ContainerPort < 1 || m.ContainerPort > 65535 {
			return nil, fmt.Errorf("portMappings[%d]: containerPort %d out of range 1-65535", i, m.ContainerPort)
		}
		if m.HostIP != "" {
			ip := net.ParseIP(m.HostIP)
			if ip == nil {
				return nil, fmt.Errorf("portMappings[%d]: hostIP %q is not an IP address", i, m.HostIP)
			}
			if ip.IsUnspecified() {
				m.HostIP = ""
			} else if ip4 := ip.To4(); ip4 != nil {
				m.HostIP = ip4.String()
			} else {
				m.HostIP = ip.String()
			}
		}
		key := m.String()
		if seen[key] {
			return nil, fmt.Errorf("portMappings[%d]: %s is given twice", i, key)
		}
		seen[key] = true
		out = append(out, m)
	}
	return out, nil
}

// Overlaps reports whether two mappings claim the same host port.
func Overlaps(a, b Mapping) bool {
	if a.HostPort != b.HostPort || a.Protocol != b.Protocol {
		return false
	}
	return a.HostIP == "" || b.HostIP == "" || a.HostIP == b.HostIP
}

// Maps and sets of the table.
const (
	mapDNAT4    = "dnat4"    // hostIP . proto . port : container address . port
	mapDNATAny4 = "dnatany4" // proto . port : container address . port (every local address but loopback)
	mapDNATLo4  = "dnatlo4"  // proto . port : ... (127.0.0.0/8, "localhost": true)
	mapDNAT6    = "dnat6"
	mapDNATAny6 = "dnatany6"
	setMasq4    = "masq4"    // containers whose published connections are all masqueraded
	setMasq6    = "masq6"    //
	setHairpin4 = "hairpin4" // container . its subnet: clients there are masqueraded
	setHairpin6 = "hairpin6" //
	setLocalnet = "localnet" // interfaces with route_localnet on: no 127/8 from outside
)

var (
	ipv4   = nftables.TypeIPAddr
	ipv6   = nftables.TypeIP6Addr
	proto  = nftables.TypeInetProto
	svc    = nftables.TypeInetService
	ifname = nftables.TypeIFName

	loopback4 = &net.IPNet{IP: net.IP{127, 0, 0, 0}, Mask: net.CIDRMask(8, 32)}
	loopback6 = &net.IPNet{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)}
	linkLoc6  = &net.IPNet{IP: net.ParseIP("fe80::"), Mask: net.CIDRMask(10, 128)}
)

func v4() nft.Part { return nft.Is(nft.NFProto, "ipv4", nft.U8(2)) }
func v6() nft.Part { return nft.Is(nft.NFProto, "ipv6", nft.U8(10)) }

// Layout is the table: DNAT of traffic addressed to this host (from
// outside: never to loopback, never from IPv6 link-local sources; from the
// host itself: loopback too when a container asked for it), masquerading
// where the reply would otherwise bypass this host, and the guard of
// interfaces whose route_localnet is on.
func Layout() nft.Table {
	r := nft.R
	hook := func(name string, h *nftables.ChainHook, typ nftables.ChainType, prio int32, rules ...nft.Rule) nft.Chain {
		return nft.Chain{Name: name, Hook: h, Type: typ, Priority: prio, Rules: rules}
	}
	dnat := func(v6, byIP bool, set string) nft.Part {
		if byIP {
			daddr := nft.IPDaddr
			if v6 {
				daddr = nft.IP6Daddr
			}
			return nft.DNATMap(v6, set, daddr, nft.L4Proto, nft.THDport)
		}
		return nft.DNATMap(v6, set, nft.L4Proto, nft.THDport)
	}
	ctDNAT := nft.CtDNAT()
	return nft.Table{
		Family: nftables.TableFamilyINet, Name: Table,
		Sets: []nft.Set{
			{Name: mapDNAT4, Key: []nftables.SetDatatype{ipv4, proto, svc}, Data: []nftables.SetDatatype{ipv4, svc}},
			{Name: mapDNATAny4, Key: []nftables.SetDatatype{proto, svc}, Data: []nftables.SetDatatype{ipv4, svc}},
			{Name: mapDNATLo4, Key: []nftables.SetDatatype{proto, svc}, Data: []nftables.SetDatatype{ipv4, svc}},
			{Name: mapDNAT6, Key: []nftables.SetDatatype{ipv6, proto, svc}, Data: []nftables.SetDatatype{ipv6, svc}},
			{Name: mapDNATAny6, Key: []nftables.SetDatatype{proto, svc}, Data: []nftables.SetDatatype{ipv6, svc}},
			{Name: setMasq4, Key: []nftables.SetDatatype{ipv4}},
			{Name: setMasq6, Key: []nftables.SetDatatype{ipv6}},
			{Name: setHairpin4, Key: []nftables.SetDatatype{ipv4, ipv4}, Interval: true},
			{Name: setHairpin6, Key: []nftables.SetDatatype{ipv6, ipv6}, Interval: true},
			{Name: setLocalnet, Key: []nftables.SetDatatype{ifname}},
		},
		Chains: []nft.Chain{
			hook("prerouting", nftables.ChainHookPrerouting, nftables.ChainTypeNAT, -100,
				r("addressed to this host", nft.FibLocal(), nft.Jump("published")),
			),
			hook("output", nftables.ChainHookOutput, nftables.ChainTypeNAT, -100,
				r("from this host to 127.0.0.0/8, localhost mappings", v4(), nft.InPrefix(nft.IPDaddr, loopback4, false), dnat(false, false, mapDNATLo4)),
				r("from this host to 127.0.0.0/8, bound to a loopback address", v4(), nft.InPrefix(nft.IPDaddr, loopback4, false), dnat(false, true, mapDNAT4)),
				r("from this host to its other addresses", nft.FibLocal(), nft.Jump("published")),
			),
			{Name: "published", Rules: []nft.Rule{
				r("never to 127.0.0.0/8 (but from this host, above)", v4(), nft.InPrefix(nft.IPDaddr, loopback4, false), nft.Return),
				r("never to ::1", v6(), nft.InPrefix(nft.IP6Daddr, loopback6, false), nft.Return),
				r("never from IPv6 link-local sources", v6(), nft.InPrefix(nft.IP6Saddr, linkLoc6, false), nft.Return),
				r("IPv4, bound to one address", v4(), dnat(false, true, mapDNAT4)),
				r("IPv4, every address", v4(), dnat(false, false, mapDNATAny4)),
				r("IPv6, bound to one address", v6(), dnat(true, true, mapDNAT6)),
				r("IPv6, every address", v6(), dnat(true, false, mapDNATAny6)),
			}},
			hook("postrouting", nftables.ChainHookPostrouting, nftables.ChainTypeNAT, 100,
				r("containers whose replies bypass this host", ctDNAT, v4(), nft.InSet(setMasq4, false, nft.IPDaddr), nft.Masquerade()),
				r("clients on the container's own subnet (IPv4)", ctDNAT, v4(), nft.InSet(setHairpin4, false, nft.IPDaddr, nft.IPSaddr), nft.Masquerade()),
				r("clients on 127.0.0.0/8", ctDNAT, v4(), nft.InPrefix(nft.IPSaddr, loopback4, false), nft.Masquerade()),
				r("containers whose replies bypass this host (IPv6)", ctDNAT, v6(), nft.InSet(setMasq6, false, nft.IP6Daddr), nft.Masquerade()),
				r("clients on the container's own subnet (IPv6)", ctDNAT, v6(), nft.InSet(setHairpin6, false, nft.IP6Daddr, nft.IP6Saddr), nft.Masquerade()),
			),
			hook("raw", nftables.ChainHookPrerouting, nftables.ChainTypeFilter, -300,
				r("no 127.0.0.0/8 from outside where route_localnet is on", nft.InSet(setLocalnet, false, nft.IIFName), v4(), nft.InPrefix(nft.IPDaddr, loopback4, false), nft.Drop),
			),
		},
	}
}

// Spec is everything one container's entries depend on, for one family.
type Spec struct {
	Addr      net.IPNet // the container's address (and subnet) in this family
	Mappings  []Mapping
	Localhost bool // 127.0.0.1 reaches the mappings (IPv4 only)
	// MasqAll masquerades every published connection: needed when the
	// container's gateway is not this host (a container on the LAN, as with
	// hostbridge-dhcp), or replies would bypass the host's NAT.
	MasqAll bool
}

func (s Spec) v6() bool { return s.Addr.IP.To4() == nil }

// Element is one set or map element of a container.
type Element struct {
	Set    string
	Key    []byte
	KeyEnd []byte
	Val    []byte
	// Mapping names the mapping an element publishes ("" for the others).
	Mapping string
}

func pad4(b []byte) []byte {
	if n := len(b) % 4; n != 0 {
		return append(b, make([]byte, 4-n)...)
	}
	return b
}

func concat(fields ...[]byte) []byte {
	var out []byte
	for _, f := range fields {
		out = append(out, pad4(append([]byte{}, f...))...)
	}
	return out
}

func protoNum(p string) byte {
	if p == "udp" {
		return 17
	}
	return 6
}

func port16(p int) []byte { return nft.U16(uint16(p)) }

// addr is ip in its family's length.
func addr(ip net.IP) []byte {
	if ip4 := ip.To4(); ip4 != nil {
		return ip4
	}
	return ip.To16()
}

// Elements are the container's entries for its spec.
func (s Spec) Elements() []Element {
	var out []Element
	v6 := s.v6()
	for _, m := range s.Mappings {
		if !m.applies(v6) {
			continue
		}
		val := concat(addr(s.Addr.IP), port16(m.ContainerPort))
		key := concat([]byte{protoNum(m.Protocol)}, port16(m.HostPort))
		switch {
		case m.ip() != nil && v6:
			out = append(out, Element{Set: mapDNAT6, Key: concat(addr(m.ip()), []byte{protoNum(m.Protocol)}, port16(m.HostPort)), Val: val, Mapping: m.String()})
		case m.ip() != nil:
			out = append(out, Element{Set: mapDNAT4, Key: concat(addr(m.ip()), []byte{protoNum(m.Protocol)}, port16(m.HostPort)), Val: val, Mapping: m.String()})
		case v6:
			out = append(out, Element{Set: mapDNATAny6, Key: key, Val: val, Mapping: m.String()})
		default:
			out = append(out, Element{Set: mapDNATAny4, Key: key, Val: val, Mapping: m.String()})
			if s.Localhost {
				out = append(out, Element{Set: mapDNATLo4, Key: key, Val: val, Mapping: m.String()})
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	switch {
	case s.MasqAll && v6:
		out = append(out, Element{Set: setMasq6, Key: addr(s.Addr.IP)})
	case s.MasqAll:
		out = append(out, Element{Set: setMasq4, Key: addr(s.Addr.IP)})
	default:
		first, last := bounds(s.Addr)
		set := setHairpin4
		if v6 {
			set = setHairpin6
		}
		out = append(out, Element{Set: set, Key: concat(addr(s.Addr.IP), first), KeyEnd: concat(addr(s.Addr.IP), last)})
	}
	return out
}

// bounds returns the first and last address of n's subnet.
func bounds(n net.IPNet) (net.IP, net.IP) {
	ip := addr(n.IP)
	mask := n.Mask
	if len(mask) != len(ip) {
		ones, _ := n.Mask.Size()
		mask = net.CIDRMask(ones, 8*len(ip))
	}
	first, last := make(net.IP, len(ip)), make(net.IP, len(ip))
	for i := range ip {
		first[i] = ip[i] & mask[i]
		last[i] = ip[i] | ^mask[i]
	}
	return first, last
}

// Comment names the owner of an element, and the mapping it publishes.
func Comment(network, containerID, mapping string) string {
	c := "lanwire portmap-lite net=" + network + " id=" + containerID
	if mapping != "" {
		c += " map=" + mapping
	}
	return c
}

func itoa(i int) string { return strconv.Itoa(i) }
