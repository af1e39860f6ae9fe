// Package guard keeps lanwire's per-port firewall: a bridge-family table
// that decides every frame a container sends at its bridge port, before
// anything else sees it (source MAC, ARP sender, IP source; for offline
// containers also EtherTypes, DHCP and neighbour discovery shapes and the
// allowlist), and an inet table that lets an offline container's other
// packets through only as replies to connections opened to it.
//
// The rules are constant; what differs per port lives in sets keyed on the
// port's name, so adding or removing a container changes set elements
// only, and neither a packet's cost nor an ADD's grows with the number of
// containers. Rules and elements are built by pure functions (this file
// and elements.go) and applied in one nf_tables transaction per change.
package guard

import (
	"net"

	"github.com/google/nftables"

	"github.com/lanwire/lanwire/pkg/nft"
)

// Frozen names: changing them would orphan the tables of running containers.
const (
	// BridgeTable is the bridge-family table of the per-frame guard.
	BridgeTable = "lanwire"
	// EgressTable is the inet table of offline containers' stateful checks.
	EgressTable = "lanwire_egress"
)

// Packet mark bits the bridge table sets on an offline container's IP
// packets for the inet table (reached through br_netfilter) to read; both
// clear them before the packet goes on.
const (
	// MarkCheck: not on the allowlist, passes only as a reply.
	MarkCheck = 0x01000000
	// MarkHost: on a "host" entry, passes when addressed to this host.
	MarkHost = 0x02000000
	// MarkLog: the container asked for its blocked packets to be logged.
	MarkLog = 0x04000000
	// MarkOK: allowed (by the bridge table, or verified by the inet table).
	MarkOK = 0x08000000
	// MarkAll is every bit lanwire uses.
	MarkAll = MarkCheck | MarkHost | MarkLog | MarkOK
)

// Sets of the bridge table, each keyed on the port (its host veth name).
const (
	SetSpoof     = "spoof"     // ports with spoofCheck
	SetOffline   = "offline"   // ports of offline containers
	SetLogged    = "logged"    // offline ports whose blocked packets are logged
	SetNoDHCP    = "nodhcp"    // offline ports that may not use DHCP either
	SetHWAddr    = "hwaddr"    // port . its container's MAC
	SetAddr4     = "addr4"     // port . its IPv4 addresses
	SetAddr6     = "addr6"     // port . its IPv6 addresses (with the link-local)
	SetDHCP4     = "dhcp4"     // port . the DHCP servers it may send unicast to
	SetAllow4    = "allow4"    // port . IPv4 destination . protocol . port (ranges)
	SetAllow6    = "allow6"    // port . IPv6 destination . protocol . port (ranges)
	SetAllowHost = "allowhost" // port . protocol . port this host may be reached on
	// The exact entries (one address, one port) of the allowlist, in hash
	// sets: an element deleted from an interval set makes the kernel
	// rebuild the set's lookup tables (~0.7 ms here against ~0.08 ms).
	SetAllow4One    = "allow4_one"
	SetAllow6One    = "allow6_one"
	SetAllowHostOne = "allowhost_one"
	setL4OK6        = "l4ok6" // next headers an offline container may use
)

// PerPortSets are the sets whose elements belong to one port, in the order
// elements are computed.
var PerPortSets = []string{SetSpoof, SetOffline, SetLogged, SetNoDHCP, SetHWAddr, SetAddr4, SetAddr6, SetDHCP4, SetAllow4, SetAllow6, SetAllowHost, SetAllow4One, SetAllow6One, SetAllowHostOne}

// LogChain holds one logging rule per offline container with logBlocked.
const LogChain = "log"

var (
	ifname = nftables.TypeIFName
	ether  = nftables.TypeEtherAddr
	ipv4   = nftables.TypeIPAddr
	ipv6   = nftables.TypeIP6Addr
	proto  = nftables.TypeInetProto
	svc    = nftables.TypeInetService
)

// Protocol numbers and message types matched below.
const (
	ethIP   = 0x0800
	ethARP  = 0x0806
	ethIPv6 = 0x86dd

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

var (
	all4      = net.IPv4bcast.To4()
	zero4     = net.IPv4zero.To4()
	zero6     = net.IPv6unspecified
	linkLocal = mustCIDR("fe80::/10")
	solicited = mustCIDR("ff02::1:ff00:0/104")
	linkScope = mustCIDR("ff02::/16")
	reserved  = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xf0} // 01:80:c2:00:00:0X
	bpdus     = []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x00}
)

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func hook(h *nftables.ChainHook, prio int32, rules ...nft.Rule) nft.Chain {
	return nft.Chain{Hook: h, Type: nftables.ChainTypeFilter, Priority: prio, Rules: rules}
}

func named(name string, c nft.Chain) nft.Chain { c.Name = name; return c }

func chain(name string, rules ...nft.Rule) nft.Chain { return nft.Chain{Name: name, Rules: rules} }

// Shorthands for the rules below.
var (
	r   = nft.R
	is  = nft.Is
	not = nft.IsNot
	u8  = nft.U8
	u16 = nft.U16
)

func l4(p uint8) nft.Part                        { return is(nft.L4Proto, protoName(p), u8(p)) }
func icmpType(t uint8) nft.Part                  { return is(nft.ICMPType, icmpName(t), u8(t)) }
func sport(p uint16) nft.Part                    { return is(nft.THSport, itoa(int(p)), u16(p)) }
func dport(p uint16) nft.Part                    { return is(nft.THDport, itoa(int(p)), u16(p)) }
func etherType(t uint16) nft.Part                { return is(nft.EtherType, etherName(t), u16(t)) }
func markOK() nft.Part                           { return nft.SetMark(0, MarkOK) }
func in(set string, fs ...nft.Field) nft.Part    { return nft.InSet(set, false, fs...) }
func notIn(set string, fs ...nft.Field) nft.Part { return nft.InSet(set, true, fs...) }

// BridgeSets is the bridge table's name and sets without its chains:
// enough to change elements, and much cheaper to build than Bridge.
func BridgeSets() nft.Table {
	return nft.Table{
		Family: nftables.TableFamilyBridge, Name: BridgeTable,
		Sets: []nft.Set{
			{Name: SetSpoof, Key: []nftables.SetDatatype{ifname}, Comment: "ports whose frames must carry the container's own addresses"},
			{Name: SetOffline, Key: []nftables.SetDatatype{ifname}, Comment: "ports of offline containers"},
			{Name: SetLogged, Key: []nftables.SetDatatype{ifname}, Comment: "offline ports whose blocked packets are logged"},
			{Name: SetNoDHCP, Key: []nftables.SetDatatype{ifname}, Comment: "offline ports without DHCP (allowDHCP: false)"},
			{Name: SetHWAddr, Key: []nftables.SetDatatype{ifname, ether}},
			{Name: SetAddr4, Key: []nftables.SetDatatype{ifname, ipv4}},
			{Name: SetAddr6, Key: []nftables.SetDatatype{ifname, ipv6}},
			{Name: SetDHCP4, Key: []nftables.SetDatatype{ifname, ipv4}, Comment: "DHCP servers a port may send unicast to"},
			{Name: SetAllow4, Key: []nftables.SetDatatype{ifname, ipv4, proto, svc}, Interval: true},
			{Name: SetAllow6, Key: []nftables.SetDatatype{ifname, ipv6, proto, svc}, Interval: true},
			{Name: SetAllowHost, Key: []nftables.SetDatatype{ifname, proto, svc}, Interval: true},
			{Name: SetAllow4One, Key: []nftables.SetDatatype{ifname, ipv4, proto, svc}, Comment: "allowlist entries of one address and port"},
			{Name: SetAllow6One, Key: []nftables.SetDatatype{ifname, ipv6, proto, svc}, Comment: "allowlist entries of one address and port"},
			{Name: SetAllowHostOne, Key: []nftables.SetDatatype{ifname, proto, svc}, Comment: "allowlist entries of one port on this host"},
			{Name: setL4OK6, Key: []nftables.SetDatatype{proto}, Elements: [][]byte{{protoTCP}, {protoUDP}, {protoICMPv6}}},
		},
	}
}

// Bridge is the bridge-family table: every frame a guarded port sends is
// decided here, at priority -300 of prerouting (before br_netfilter hands
// IP packets to the IP hooks, at 0), and frames to reserved group
// addresses, which may skip prerouting, at the input hook.
func Bridge() nft.Table {
	iif := nft.IIFName
	offl, spoof := in(SetOffline, iif), in(SetSpoof, iif)
	resv := nft.Masked(nft.EtherDaddr, reserved, bpdus, false, "& ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00")
	return nft.Table{
		Family: nftables.TableFamilyBridge, Name: BridgeTable,
		Sets: BridgeSets().Sets,
		Chains: []nft.Chain{
			named("prerouting", hook(nftables.ChainHookPrerouting, -300,
				r("offline port", offl, nft.Goto("offline")),
				r("spoof-checked port", spoof, nft.Goto("spoof")),
			)),
			named("input", hook(nftables.ChainHookInput, -300,
				r("offline: no reserved group frames", resv, offl, nft.Drop),
				r("spoof-checked: reserved group frames from its MAC only", resv, spoof, notIn(SetHWAddr, iif, nft.EtherSaddr), nft.Drop),
			)),
			named("forward", hook(nftables.ChainHookForward, -200,
				// br_netfilter ran the inet table by now; a packet it did not
				// verify (br_netfilter off for this bridge, say) goes no further.
				r("offline: unverified", offl, nft.MarkHas(MarkOK, true), nft.Drop),
				r("clear lanwire's mark bits", nft.Masked(nft.MetaMark, u32le(MarkAll), make([]byte, 4), true, "& 0x0f000000 != 0x00000000"), nft.SetMark(MarkAll, 0)),
			)),
			chain("spoof",
				r("no 802.1Q tags", etherType(0x8100), nft.Drop),
				r("no 802.1ad tags", etherType(0x88a8), nft.Drop),
				r("no QinQ tags", etherType(0x9100), nft.Drop),
				r("source MAC is the container's", notIn(SetHWAddr, iif, nft.EtherSaddr), nft.Drop),
				r("ARP checks", etherType(ethARP), nft.Jump("arp")),
				r("IPv4 checks", etherType(ethIP), nft.Jump("ip4")),
				r("IPv6 checks", etherType(ethIPv6), nft.Jump("ip6")),
			),
			chain("arp",
				r("ARP over Ethernet", not(nft.ArpHType, "1", u16(1)), nft.Drop),
				r("ARP for IPv4", not(nft.ArpPType, "ip", u16(ethIP)), nft.Drop),
				r("ARP hardware length", not(nft.ArpHLen, "6", u8(6)), nft.Drop),
				r("ARP protocol length", not(nft.ArpPLen, "4", u8(4)), nft.Drop),
				r("ARP sender MAC is the container's", notIn(SetHWAddr, iif, nft.ArpSHA), nft.Drop),
				r("ARP probe", is(nft.ArpSPA, "0.0.0.0", zero4), nft.Return),
				r("ARP sender address is the container's", notIn(SetAddr4, iif, nft.ArpSPA), nft.Drop),
			),
			chain("ip4",
				r("DHCP client before its lease", is(nft.IPSaddr, "0.0.0.0", zero4), l4(protoUDP), sport(68), dport(67), is(nft.IPDaddr, "255.255.255.255", all4), nft.Return),
				r("IPv4 source is the container's", notIn(SetAddr4, iif, nft.IPSaddr), nft.Drop),
			),
			chain("ip6",
				r("link-scope messages before an address", is(nft.IP6Saddr, "::", zero6), nft.Goto("ip6_unspec")),
				r("IPv6 source is the container's", notIn(SetAddr6, iif, nft.IP6Saddr), nft.Drop),
				r("neighbour advertisements for its own addresses only", l4(protoICMPv6), icmpType(136), notIn(SetAddr6, iif, nft.NDTarget), nft.Drop),
			),
			chain("ip6_unspec",
				r("duplicate address detection", is(nft.IP6NextHdr, "ipv6-icmp", u8(protoICMPv6)), icmpType(135), hopLimit(255), nft.InPrefix(nft.IP6Daddr, solicited, false), markOK(), nft.Accept),
				r("MLDv2 report before an address", is(nft.IP6NextHdr, "hop-by-hop", u8(0)), l4(protoICMPv6), icmpType(143), hopLimit(1), nft.InPrefix(nft.IP6Daddr, linkScope, false), markOK(), nft.Accept),
				r("nothing else from ::", nft.Drop),
			),
			chain("offline",
				r("source MAC is the container's", notIn(SetHWAddr, iif, nft.EtherSaddr), nft.Drop),
				r("log what is blocked", in(SetLogged, iif), nft.SetMark(0, MarkLog)),
				r("ARP", etherType(ethARP), nft.Goto("off_arp")),
				r("IPv4", etherType(ethIP), nft.Goto("off_ip4")),
				r("IPv6", etherType(ethIPv6), nft.Goto("off_ip6")),
				r("only untagged IPv4, IPv6 and ARP", nft.Drop),
			),
			chain("off_arp",
				r("ARP request", is(nft.ArpOp, "request", u16(1)), nft.Goto("off_arp_ok")),
				r("ARP reply", is(nft.ArpOp, "reply", u16(2)), nft.Goto("off_arp_ok")),
				r("no other ARP operation", nft.Drop),
			),
			chain("off_arp_ok",
				r("sender checks", nft.Jump("arp")),
				// The forward hook lets nothing of an offline port through unmarked.
				r("ARP of its own", markOK(), nft.Accept),
			),
			chain("off_ip4",
				r("no fragments", nft.Masked(nft.IPFragOff, u16(0x3fff), u16(0), true, "& 0x3fff != 0"), nft.Drop),
				r("source checks", nft.Jump("ip4")),
				r("never a DHCP server or relay (to 68)", l4(protoUDP), dport(68), nft.Drop),
				r("never a DHCP server or relay (from 67)", l4(protoUDP), sport(67), nft.Drop),
				r("no DHCP at all (allowDHCP: false)", in(SetNoDHCP, iif), l4(protoUDP), dport(67), nft.Drop),
				r("DHCP client, broadcast", l4(protoUDP), sport(68), dport(67), is(nft.IPDaddr, "255.255.255.255", all4), markOK(), nft.Accept),
				r("DHCP client, to its server", l4(protoUDP), sport(68), dport(67), in(SetDHCP4, iif, nft.IPDaddr), markOK(), nft.Accept),
				r("nothing else from 0.0.0.0", is(nft.IPSaddr, "0.0.0.0", zero4), nft.Drop),
				r("no redirects", l4(protoICMP), icmpType(5), nft.Drop),
				r("ICMP errors quote packets sent to it (3)", l4(protoICMP), icmpType(3), notIn(SetAddr4, iif, nft.ICMPInnerDaddr), nft.Drop),
				r("ICMP errors quote packets sent to it (4)", l4(protoICMP), icmpType(4), notIn(SetAddr4, iif, nft.ICMPInnerDaddr), nft.Drop),
				r("ICMP errors quote packets sent to it (11)", l4(protoICMP), icmpType(11), notIn(SetAddr4, iif, nft.ICMPInnerDaddr), nft.Drop),
				r("ICMP errors quote packets sent to it (12)", l4(protoICMP), icmpType(12), notIn(SetAddr4, iif, nft.ICMPInnerDaddr), nft.Drop),
				r("allowlist", in(SetAllow4, iif, nft.IPDaddr, nft.L4Proto, nft.THDport), markOK(), nft.Accept),
				r("allowlist, one address and port", in(SetAllow4One, iif, nft.IPDaddr, nft.L4Proto, nft.THDport), markOK(), nft.Accept),
				r("allowlist: this host", in(SetAllowHost, iif, nft.L4Proto, nft.THDport), nft.SetMark(0, MarkCheck|MarkHost), nft.Accept),
				r("allowlist: this host, one port", in(SetAllowHostOne, iif, nft.L4Proto, nft.THDport), nft.SetMark(0, MarkCheck|MarkHost), nft.Accept),
				r("anything else passes only as a reply", nft.SetMark(0, MarkCheck), nft.Accept),
			),
			chain("off_ip6",
				r("source checks", nft.Jump("ip6")),
				r("MLD (after a hop-by-hop header)", is(nft.IP6NextHdr, "hop-by-hop", u8(0)), nft.Goto("off_mld")),
				r("no extension headers, fragments or other protocols", nft.InSet(setL4OK6, true, nft.IP6NextHdr), nft.Drop),
				r("never a DHCPv6 server or relay (to 546)", l4(protoUDP), dport(546), nft.Drop),
				r("never a DHCPv6 server or relay (from 547)", l4(protoUDP), sport(547), nft.Drop),
				r("no DHCPv6 at all (allowDHCP: false)", in(SetNoDHCP, iif), l4(protoUDP), dport(547), nft.Drop),
				r("DHCPv6 client", l4(protoUDP), sport(546), dport(547), is(nft.IP6Daddr, "ff02::1:2", net.ParseIP("ff02::1:2")), markOK(), nft.Accept),
				r("ICMPv6 checks", l4(protoICMPv6), nft.Jump("off_icmp6")),
				r("allowlist", in(SetAllow6, iif, nft.IP6Daddr, nft.L4Proto, nft.THDport), markOK(), nft.Accept),
				r("allowlist, one address and port", in(SetAllow6One, iif, nft.IP6Daddr, nft.L4Proto, nft.THDport), markOK(), nft.Accept),
				r("allowlist: this host", in(SetAllowHost, iif, nft.L4Proto, nft.THDport), nft.SetMark(0, MarkCheck|MarkHost), nft.Accept),
				r("allowlist: this host, one port", in(SetAllowHostOne, iif, nft.L4Proto, nft.THDport), nft.SetMark(0, MarkCheck|MarkHost), nft.Accept),
				r("anything else passes only as a reply", nft.SetMark(0, MarkCheck), nft.Accept),
			),
			chain("off_icmp6",
				r("router solicitation, to the routers on the link", icmpType(133), hopLimit(255), is(nft.IP6Daddr, "ff02::2", net.ParseIP("ff02::2")), markOK(), nft.Accept),
				r("neighbour solicitation, link-local", icmpType(135), hopLimit(255), nft.InPrefix(nft.IP6Daddr, linkLocal, false), markOK(), nft.Accept),
				r("neighbour solicitation, solicited-node", icmpType(135), hopLimit(255), nft.InPrefix(nft.IP6Daddr, solicited, false), markOK(), nft.Accept),
				r("neighbour advertisement, link-local", icmpType(136), hopLimit(255), nft.InPrefix(nft.IP6Daddr, linkLocal, false), markOK(), nft.Accept),
				r("neighbour advertisement, all nodes", icmpType(136), hopLimit(255), is(nft.IP6Daddr, "ff02::1", net.ParseIP("ff02::1")), markOK(), nft.Accept),
				// An answer to a solicitation from a global address goes to that
				// address; it may carry nothing but its target (its own address,
				// checked in ip6) and its own MAC.
				r("neighbour advertisement to a unicast address, bare", icmpType(136), hopLimit(255), naFlagsOnly(), is(nft.IP6Len, "24", u16(24)), markOK(), nft.Accept),
				r("neighbour advertisement to a unicast address, with its MAC", icmpType(136), hopLimit(255), naFlagsOnly(), is(nft.IP6Len, "32", u16(32)), is(nft.NAOption, "0x0201", u16(0x0201)), in(SetHWAddr, iif, nft.NAOptionMAC), markOK(), nft.Accept),
				r("no other neighbour discovery, router advertisement or redirect", nft.Range(nft.ICMPType, u8(133), u8(137), "133-137"), nft.Drop),
				r("no router renumbering", icmpType(138), nft.Drop),
				r("no MLD without a hop-by-hop header", nft.Range(nft.ICMPType, u8(130), u8(132), "130-132"), nft.Drop),
				r("no MLDv2 without a hop-by-hop header", icmpType(143), nft.Drop),
				r("ICMPv6 errors quote packets sent to it", nft.Range(nft.ICMPType, u8(1), u8(4), "1-4"), notIn(SetAddr6, iif, nft.ICMP6InnerDaddr), nft.Drop),
			),
			chain("off_mld",
				r("MLD report or done, link scope", l4(protoICMPv6), nft.Range(nft.ICMPType, u8(131), u8(132), "131-132"), hopLimit(1), nft.InPrefix(nft.IP6Daddr, linkScope, false), markOK(), nft.Accept),
				r("MLDv2 report, link scope", l4(protoICMPv6), icmpType(143), hopLimit(1), nft.InPrefix(nft.IP6Daddr, linkScope, false), markOK(), nft.Accept),
				r("no other hop-by-hop packets", nft.Drop),
			),
		},
	}
}

// Egress is the inet table of offline containers: their packets the bridge
// table did not allow pass only as replies to connections opened to them
// (or to this host on a "host" entry); priority -175 of prerouting, after
// conntrack (-200), before mangle (-150).
func Egress() nft.Table {
	t := egressRef()
	t.Chains = egressChains()
	return t
}

// egressRef is the egress table's name, without its chains.
func egressRef() nft.Table {
	return nft.Table{Family: nftables.TableFamilyINet, Name: EgressTable}
}

func egressChains() []nft.Chain {
	clearOK := nft.SetMark(MarkAll, MarkOK)
	return []nft.Chain{
		named("prerouting", hook(nftables.ChainHookPrerouting, -175,
			r("nothing to verify", nft.MarkHas(MarkCheck, true), nft.Return),
			r("allowlist: this host", nft.MarkHas(MarkHost, false), nft.FibLocal(), clearOK, nft.Accept),
			r("replies to connections opened to the container", append(nft.CtReply(), clearOK, nft.Accept)...),
			r("log what is blocked", nft.MarkHas(MarkLog, false), nft.Jump(LogChain)),
			r("offline: blocked", nft.Drop),
		)),
		named("input", hook(nftables.ChainHookInput, -300,
			r("clear lanwire's mark bits", nft.Masked(nft.MetaMark, u32le(MarkAll), make([]byte, 4), true, "& 0x0f000000 != 0x00000000"), nft.SetMark(MarkAll, 0)),
		)),
		{Name: LogChain, Dynamic: true},
	}
}

func hopLimit(n uint8) nft.Part { return is(nft.IP6HopLim, itoa(int(n)), u8(n)) }

// naFlagsOnly: the advertisement's 29 reserved bits are zero.
func naFlagsOnly() nft.Part {
	return nft.Masked(nft.NAReserved, []byte{0x1f, 0xff, 0xff, 0xff}, make([]byte, 4), false, "& 0x1fffffff == 0")
}
