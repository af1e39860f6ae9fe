package guard

import (
	"bytes"
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/google/nftables"

	"github.com/lanwire/lanwire/pkg/egress"
	"github.com/lanwire/lanwire/pkg/nft"
)

// Port is one container's bridge port and what it may send.
type Port struct {
	// IfName is the host end of the container's veth, a port of Bridge.
	IfName string `json:"ifname"`
	Bridge string `json:"bridge"`
	// Network and ContainerID name the owner (in comments, for GC).
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	// MAC and Addrs are the container's: its frames must carry them. The
	// IPv6 link-local address of MAC is always allowed too.
	MAC   string   `json:"mac"`
	Addrs []net.IP `json:"addrs,omitempty"`
	// DHCP are the DHCP servers the port may send unicast to (its lease's).
	DHCP []net.IP `json:"dhcp,omitempty"`
	// Spoof turns the source checks on (hostbridge-dhcp's spoofCheck).
	Spoof bool `json:"spoof,omitempty"`
	// HostBridge says hostbridge-dhcp registered the port (it removes it
	// with the veth); otherwise offline-egress made it alone.
	HostBridge bool `json:"hostbridge,omitempty"`
	// Offline, when set, locks the port down to its allowlist.
	Offline *Policy `json:"offline,omitempty"`
	// Daemon is the lease daemon's socket (for the socket hand-over).
	Daemon string `json:"daemon,omitempty"`
}

// Policy is what an offline container may reach.
type Policy struct {
	Allow []egress.Allow `json:"allow,omitempty"`
	// LogPrefix, when set, logs blocked packets with this prefix.
	LogPrefix string `json:"logPrefix,omitempty"`
	// NoDHCP blocks DHCP and DHCPv6 too (allowDHCP: false).
	NoDHCP bool `json:"noDHCP,omitempty"`
}

// Guarded reports whether the port has any rule to follow.
func (p Port) Guarded() bool { return p.Spoof || p.Offline != nil }

// Comment names the port's owner on its elements and rules.
func (p Port) Comment() string {
	return "lanwire net=" + p.Network + " id=" + p.ContainerID
}

// LinkLocal is the IPv6 link-local address (EUI-64) of a MAC.
func LinkLocal(mac net.HardwareAddr) net.IP {
	if len(mac) != 6 {
		return nil
	}
	ip := make(net.IP, 16)
	ip[0], ip[1] = 0xfe, 0x80
	ip[8], ip[9], ip[10] = mac[0]^0x02, mac[1], mac[2]
	ip[11], ip[12] = 0xff, 0xfe
	ip[13], ip[14], ip[15] = mac[3], mac[4], mac[5]
	return ip
}

// Element is one set element of a port.
type Element struct {
	Set    string
	Key    []byte
	KeyEnd []byte // for interval sets
}

func (e Element) id() string { return e.Set + "/" + string(e.Key) + "/" + string(e.KeyEnd) }

// pad4 pads a concatenation field to its 32-bit register width.
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

// Elements are the set elements that carry port p's rules; none when the
// port is not guarded.
func Elements(p Port) ([]Element, error) {
	if !p.Guarded() {
		return nil, nil
	}
	mac, err := net.ParseMAC(p.MAC)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("port %s: MAC %q is not an Ethernet address", p.IfName, p.MAC)
	}
	port := nft.IfName(p.IfName)
	var out []Element
	add := func(set string, fields ...[]byte) { out = append(out, Element{Set: set, Key: concat(fields...)}) }
	if p.Spoof {
		add(SetSpoof, port)
	}
	if p.Offline != nil {
		add(SetOffline, port)
		if p.Offline.LogPrefix != "" {
			add(SetLogged, port)
		}
		if p.Offline.NoDHCP {
			add(SetNoDHCP, port)
		}
	}
	add(SetHWAddr, port, mac)
	seen := map[string]bool{}
	for _, ip := range append(append([]net.IP{}, p.Addrs...), LinkLocal(mac)) {
		if ip4 := ip.To4(); ip4 != nil {
			if !seen[ip4.String()] {
				add(SetAddr4, port, ip4)
			}
			seen[ip4.String()] = true
		} else if ip16 := ip.To16(); ip16 != nil && !seen[ip16.String()] {
			seen[ip16.String()] = true
			add(SetAddr6, port, ip16)
		}
	}
	if p.Offline != nil {
		for _, s := range p.DHCP {
			if s4 := s.To4(); s4 != nil {
				add(SetDHCP4, port, s4)
			}
		}
		out = append(out, allowElements(port, p.Offline.Allow)...)
	}
	return dedupe(out), nil
}

// allowElements renders an allowlist: one element per destination,
// protocol and port range ("every protocol and port" is the full ranges of
// both), an exact one when the destination is one address (or this host)
// and the range one port, else an interval one.
func allowElements(port []byte, allow []egress.Allow) []Element {
	var out []Element
	type span struct {
		fromP, toP uint8
		from, to   uint16
	}
	spans := func(a egress.Allow) []span {
		if len(a.Ports) == 0 {
			return []span{{0, 255, 0, 65535}}
		}
		var ss []span
		for _, pr := range a.Ports {
			p := uint8(protoTCP)
			if pr.Proto == "udp" {
				p = protoUDP
			}
			ss = append(ss, span{p, p, uint16(pr.From), uint16(pr.To)})
		}
		return ss
	}
	for _, a := range allow {
		for _, s := range spans(a) {
			one := s.fromP == s.toP && s.from == s.to
			if a.Host && one {
				out = append(out, Element{Set: SetAllowHostOne, Key: concat(port, []byte{s.fromP}, u16(s.from))})
				continue
			}
			if a.Host {
				out = append(out, Element{Set: SetAllowHost,
					Key:    concat(port, []byte{s.fromP}, u16(s.from)),
					KeyEnd: concat(port, []byte{s.toP}, u16(s.to))})
				continue
			}
			first, last := bounds(a.Net)
			if one && first.Equal(last) {
				set := SetAllow4One
				if len(first) == 16 {
					set = SetAllow6One
				}
				out = append(out, Element{Set: set, Key: concat(port, first, []byte{s.fromP}, u16(s.from))})
				continue
			}
			set := SetAllow4
			if len(first) == 16 {
				set = SetAllow6
			}
			out = append(out, Element{Set: set,
				Key:    concat(port, first, []byte{s.fromP}, u16(s.from)),
				KeyEnd: concat(port, last, []byte{s.toP}, u16(s.to))})
		}
	}
	return out
}

// bounds returns the first and last address of n, 4 or 16 bytes long.
func bounds(n *net.IPNet) (net.IP, net.IP) {
	ip := n.IP.To4()
	if ip == nil {
		ip = n.IP.To16()
	}
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

func dedupe(es []Element) []Element {
	seen := map[string]bool{}
	out := es[:0]
	for _, e := range es {
		if !seen[e.id()] {
			seen[e.id()] = true
			out = append(out, e)
		}
	}
	return out
}

// diff returns the elements of a not in b.
func diff(a, b []Element) []Element {
	in := map[string]bool{}
	for _, e := range b {
		in[e.id()] = true
	}
	var out []Element
	for _, e := range a {
		if !in[e.id()] {
			out = append(out, e)
		}
	}
	return out
}

// bySet groups elements per set, in PerPortSets order, as google/nftables
// takes them.
func bySet(es []Element, comment string) ([]string, map[string][]nftables.SetElement) {
	m := map[string][]nftables.SetElement{}
	for _, e := range es {
		se := nftables.SetElement{Key: e.Key, Comment: comment}
		if e.KeyEnd != nil {
			se.KeyEnd = e.KeyEnd
		}
		m[e.Set] = append(m[e.Set], se)
	}
	var order []string
	for _, s := range PerPortSets {
		if len(m[s]) > 0 {
			order = append(order, s)
		}
	}
	return order, m
}

// ownsKey reports whether a set element's key is port's.
func ownsKey(key []byte, port string) bool {
	return len(key) >= 16 && bytes.Equal(key[:16], nft.IfName(port))
}

func u32le(v uint32) []byte { return nft.U32LE(v) }

func itoa(i int) string { return strconv.Itoa(i) }

func protoName(p uint8) string {
	switch p {
	case protoICMP:
		return "icmp"
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMPv6:
		return "ipv6-icmp"
	}
	return itoa(int(p))
}

var icmpNames = map[uint8]string{
	3: "destination-unreachable", 4: "source-quench", 5: "redirect", 11: "time-exceeded", 12: "parameter-problem",
	133: "nd-router-solicit", 134: "nd-router-advert", 135: "nd-neighbor-solicit", 136: "nd-neighbor-advert",
	137: "nd-redirect", 138: "router-renumbering", 143: "mld2-listener-report",
}

func icmpName(t uint8) string {
	if n, ok := icmpNames[t]; ok {
		return n
	}
	return itoa(int(t))
}

func etherName(t uint16) string {
	switch t {
	case ethIP:
		return "ip"
	case ethARP:
		return "arp"
	case ethIPv6:
		return "ip6"
	}
	return fmt.Sprintf("0x%04x", t)
}

// sortedSets lists the map's keys in a fixed order.
func sortedSets(m map[string][]Element) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
