package integration

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
)

// guardGround is an offline ground with three containers sending hostile
// frames: "off" (offline-egress), "plain" (hostbridge-dhcp with its
// default spoofCheck) and "free" (spoofCheck off, nothing else: the
// control, whose frames show each check would have something to stop),
// and a bare namespace "watch" on the bridge, the LAN host that sees
// broadcasts.
type guardGround struct {
	*offlineGround
	off, plain, free  peer
	watch             string // netns
	routerMAC, hostBr net.HardwareAddr
	routerLL          net.IP
	inetNS, lanNS     string
}

// peer is an attached container and what its result says.
type peer struct {
	attach
	mac  net.HardwareAddr
	ip4  net.IP
	ip6  net.IP // its SLAAC address
	ll   net.IP // its link-local address
	name string
}

func newGuardGround(t *testing.T) *guardGround {
	t.Helper()
	g := &guardGround{offlineGround: newOfflineGround(t, "2m")}
	l := g.lan
	g.inetNS, g.lanNS = filepath.Join("/var/run/netns", l.InetNS), filepath.Join("/var/run/netns", l.LANNS)
	mk := func(name string, n *network) peer {
		a := attach{ID: name + "-" + l.ID, Netns: container(t, l)}
		res := n.MustAdd(a)
		p := peer{attach: a, name: name}
		p.mac, p.ip4, p.ip6 = macOf(t, res), net.ParseIP(addrOf(t, res, false)), net.ParseIP(addrOf(t, res, true))
		p.ll = linkLocalOf(t, a.Netns)
		return p
	}
	g.off = mk("off", g.network(t, "goff", g.offlineConf()))
	g.plain = mk("plain", g.network(t, "gplain"))
	g.free = mk("free", g.networkWith(t, "gfree", map[string]any{"spoofCheck": false}))
	g.watch = container(t, l)
	host := "lwt" + l.ID + "wa"
	for _, args := range [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", filepath.Base(g.watch)},
		{"link", "set", host, "master", l.Bridge, "up"},
		{"-n", filepath.Base(g.watch), "link", "set", "eth0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	g.routerMAC = mustMAC(t, g.lanNS, "eth0")
	g.routerLL = linkLocalOf(t, g.lanNS)
	g.hostBr = mustMAC(t, "", l.Bridge)
	return g
}

func macOf(t *testing.T, res *current.Result) net.HardwareAddr {
	t.Helper()
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox != "" {
			mac, err := net.ParseMAC(ifc.Mac)
			if err != nil {
				t.Fatal(err)
			}
			return mac
		}
	}
	t.Fatalf("no container interface in %v", res)
	return nil
}

func linkLocalOf(t *testing.T, netns string) net.IP {
	t.Helper()
	var ll net.IP
	waitFor(t, 5*time.Second, "a link-local address in "+netns, func() bool {
		_ = inNetns(netns, func() error {
			ifc, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsLinkLocalUnicast() {
					ll = ipn.IP
				}
			}
			return nil
		})
		return ll != nil
	})
	return ll
}

// attack is one hostile frame: build makes it for a sender with a marker
// in it; where names the namespace and interface that would see it.
type attack struct {
	name  string
	build func(p peer, marker []byte) []byte
	where func(g *guardGround) (netns, ifname string)
}

// check sends the attack from the control, which must get through (or the
// test would prove nothing), then from each of senders, which must not.
func (g *guardGround) check(t *testing.T, a attack, senders ...peer) {
	t.Helper()
	ns, ifname := a.where(g)
	s := sniff(t, ns, ifname)
	marker := func(p peer) []byte {
		return []byte(fmt.Sprintf("LWATTACK-%s-%s-%d", p.name, strings.ReplaceAll(a.name, " ", "_"), time.Now().UnixNano()))
	}
	m := marker(g.free)
	for i := 0; i < 3; i++ { // a lost first frame (neighbour discovery, say) is no proof
		sendFrame(t, g.free.Netns, a.build(g.free, m))
		if s.saw(m, 700*time.Millisecond) {
			break
		}
	}
	if !s.saw(m, 0) {
		t.Fatalf("%s: the control's frame did not arrive either: the test proves nothing", a.name)
	}
	for _, p := range senders {
		m := marker(p)
		for i := 0; i < 3; i++ {
			sendFrame(t, p.Netns, a.build(p, m))
		}
		if s.saw(m, 700*time.Millisecond) {
			t.Errorf("%s: the %s container's frame got through", a.name, p.name)
		}
	}
}

var (
	inetSide   = func(g *guardGround) (string, string) { return g.inetNS, "eth0" }
	routerSide = func(g *guardGround) (string, string) { return g.lanNS, "eth0" }
	lanHost    = func(g *guardGround) (string, string) { return g.watch, "eth0" }
)

// Every escape of "Offline means offline at every layer" fails for an
// offline container, with the same frames getting through from an
// unguarded one.
func TestGuardOfflineEscapes(t *testing.T) {
	t.Parallel()
	g := newGuardGround(t)
	l := g.lan
	inet4, inet6 := net.ParseIP(l.Internet), net.ParseIP(l.Internet6)
	udpTo := func(p peer, dst net.IP, m []byte) []byte {
		if dst.To4() != nil {
			return ether(g.routerMAC, p.mac, 0x0800, ipv4(p.ip4, dst, 17, udp(40000, 7, m)))
		}
		return ether(g.routerMAC, p.mac, 0x86dd, udp6(p.ip6, dst, 40000, 7, m))
	}
	attacks := []attack{
		{"VLAN 0 tagged IPv4 to the internet", func(p peer, m []byte) []byte { return tagged(udpTo(p, inet4, m), 0x8100, 0) }, inetSide},
		{"VLAN 0 tagged IPv6 to the internet", func(p peer, m []byte) []byte { return tagged(udpTo(p, inet6, m), 0x8100, 0) }, inetSide},
		{"VLAN 5 tagged IPv4", func(p peer, m []byte) []byte { return tagged(udpTo(p, inet4, m), 0x8100, 5) }, routerSide},
		{"VLAN 5 tagged IPv6", func(p peer, m []byte) []byte { return tagged(udpTo(p, inet6, m), 0x8100, 5) }, routerSide},
		{"QinQ", func(p peer, m []byte) []byte { return tagged(tagged(udpTo(p, inet4, m), 0x8100, 7), 0x88a8, 5) }, routerSide},
		{"a non-IP EtherType", func(p peer, m []byte) []byte { return ether(broadcast, p.mac, 0x88b5, m) }, routerSide},
		{"PPPoE discovery", func(p peer, m []byte) []byte {
			return ether(broadcast, p.mac, 0x8863, append([]byte{0x11, 0x09, 0, 0, 0, byte(len(m))}, m...))
		}, routerSide},
		{"a DHCP OFFER from its own address", func(p peer, m []byte) []byte {
			return ether(broadcast, p.mac, 0x0800, ipv4(p.ip4, net.IPv4bcast, 17, udp(67, 68, m)))
		}, lanHost},
		{"a DHCP OFFER shaped as a DISCOVER's reply", func(p peer, m []byte) []byte {
			return ether(broadcast, p.mac, 0x0800, ipv4(net.IPv4bcast, net.IPv4zero, 17, udp(67, 68, m)))
		}, lanHost},
		{"a DHCPv6 ADVERTISE", func(p peer, m []byte) []byte {
			all := net.ParseIP("ff02::1")
			return ether(multicastMAC(all), p.mac, 0x86dd, udp6(p.ll, all, 547, 546, m))
		}, lanHost},
		{"a router advertisement", func(p peer, m []byte) []byte {
			all := net.ParseIP("ff02::1")
			body := append([]byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}, m...)
			return ether(multicastMAC(all), p.mac, 0x86dd, icmp6(p.ll, all, 255, 134, body))
		}, lanHost},
		{"a neighbour solicitation routed to the internet", func(p peer, m []byte) []byte {
			body := append(append([]byte{0, 0, 0, 0}, inet6.To16()...), m...)
			return ether(g.routerMAC, p.mac, 0x86dd, icmp6(p.ip6, inet6, 255, 135, body))
		}, inetSide},
		{"a flow it primed itself, then answered", func(p peer, m []byte) []byte {
			// The "request" from the internet, with a spoofed source...
			sendFrame(t, p.Netns, ether(g.hostBr, p.mac, 0x0800, ipv4(inet4, p.ip4, 17, udp(7, 40001, []byte("prime")))))
			// ...and the "reply" to it.
			return ether(g.routerMAC, p.mac, 0x0800, ipv4(p.ip4, inet4, 17, udp(40001, 7, m)))
		}, inetSide},
		{"a spoofed source MAC", func(p peer, m []byte) []byte {
			f := udpTo(p, inet4, m)
			copy(f[6:], net.HardwareAddr{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01})
			return f
		}, inetSide},
		{"a spoofed source IPv4 address", func(p peer, m []byte) []byte {
			return ether(g.routerMAC, p.mac, 0x0800, ipv4(g.plain.ip4, inet4, 17, udp(40000, 7, m)))
		}, inetSide},
		{"a spoofed source IPv6 address", func(p peer, m []byte) []byte {
			return ether(g.routerMAC, p.mac, 0x86dd, udp6(g.plain.ip6, inet6, 40000, 7, m))
		}, inetSide},
		{"an ICMP error about another host's packet", func(p peer, m []byte) []byte {
			quoted := ipv4(g.plain.ip4, inet4, 17, udp(40000, 7, m))
			return ether(g.routerMAC, p.mac, 0x0800, ipv4(p.ip4, inet4, 1, icmpMsg(3, 3, quoted)))
		}, inetSide},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) { g.check(t, a, g.off) })
	}
	// The offline container keeps what it is allowed.
	expect(t, g.off.Netns, true, g.allowedForOffline()...)
}

// No container with spoofCheck (plain) or offline can impersonate the
// router or another container on the LAN: ARP and neighbour advertisements
// for their addresses stay on their port. Their own servers keep working.
func TestGuardImpersonation(t *testing.T) {
	t.Parallel()
	g := newGuardGround(t)
	l := g.lan
	router4, router6 := net.ParseIP(l.Router), net.ParseIP(l.Router6)
	all := net.ParseIP("ff02::1")
	na := func(p peer, target net.IP, m []byte) []byte {
		body := append([]byte{0x20, 0, 0, 0}, target.To16()...) // override
		body = append(append(body, 2, 1), p.mac...)             // target link-layer address: its own
		body = append(body, m...)
		return ether(multicastMAC(all), p.mac, 0x86dd, icmp6(p.ll, all, 255, 136, body))
	}
	attacks := []attack{
		{"gratuitous ARP for the router", func(p peer, m []byte) []byte {
			return append(ether(broadcast, p.mac, 0x0806, arpFrame(1, p.mac, router4, broadcast, router4)), m...)
		}, lanHost},
		{"ARP reply for another container", func(p peer, m []byte) []byte {
			return append(ether(broadcast, p.mac, 0x0806, arpFrame(2, p.mac, g.free.ip4, broadcast, g.free.ip4)), m...)
		}, lanHost},
		{"neighbour advertisement for the router's address", func(p peer, m []byte) []byte { return na(p, router6, m) }, lanHost},
		{"neighbour advertisement for the router's link-local address", func(p peer, m []byte) []byte { return na(p, g.routerLL, m) }, lanHost},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) { g.check(t, a, g.plain, g.off) })
	}

	t.Run("the host's neighbour cache keeps the router", func(t *testing.T) {
		// The host resolves the router, then a plain container claims its
		// address: the host's entry must still hold the router's MAC.
		if out, err := exec.Command("busybox", "ping", "-c", "1", "-W", "1", l.Router).CombinedOutput(); err != nil {
			t.Fatalf("the host does not reach the router: %v %s", err, out)
		}
		time.Sleep(1100 * time.Millisecond) // past the entry's locktime
		for i := 0; i < 3; i++ {
			sendFrame(t, g.plain.Netns, ether(broadcast, g.plain.mac, 0x0806, arpFrame(1, g.plain.mac, router4, broadcast, router4)))
		}
		time.Sleep(300 * time.Millisecond)
		out, _ := exec.Command("ip", "neigh", "show", l.Router, "dev", l.Bridge).Output()
		if !strings.Contains(string(out), g.routerMAC.String()) {
			t.Errorf("the host's entry for the router moved: %s", out)
		}
	})

	t.Run("a plain container keeps the LAN and the internet, and its servers", func(t *testing.T) {
		expect(t, g.plain.Netns, true, tcpProbe(l.Internet+":80"), tcpProbe("["+l.Internet6+"]:80"), tcpProbe(l.Router+":9001"))
		s := sniff(t, g.watch, "eth0")
		m := []byte(fmt.Sprintf("LWSERVER-%d", time.Now().UnixNano()))
		sendFrame(t, g.plain.Netns, ether(broadcast, g.plain.mac, 0x0800, ipv4(g.plain.ip4, net.IPv4bcast, 17, udp(67, 68, m))))
		if !s.saw(m, time.Second) {
			t.Error("a plain container's DHCP OFFER from its own address did not reach the LAN")
		}
		m = []byte(fmt.Sprintf("LWRA-%d", time.Now().UnixNano()))
		body := append([]byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}, m...)
		sendFrame(t, g.plain.Netns, ether(multicastMAC(all), g.plain.mac, 0x86dd, icmp6(g.plain.ll, all, 255, 134, body)))
		if !s.saw(m, time.Second) {
			t.Error("a plain container's router advertisement did not reach the LAN")
		}
	})
}

// icmpMsg is an ICMP message of type and code around body.
func icmpMsg(typ, code byte, body []byte) []byte {
	m := append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, body...)
	s := checksum(m)
	m[2], m[3] = byte(s>>8), byte(s)
	return m
}

// What a container with CAP_NET_ADMIN can do to its own namespace opens no
// way out: a new MAC, another container's address, routes of its own. Each
// step is done by the offline container and by the unguarded control; a
// datagram counter on the fake internet says whose packets arrived.
func TestGuardCapNetAdmin(t *testing.T) {
	t.Parallel()
	g := newGuardGround(t)
	l := g.lan
	arrived := countUDP(t, g.inetNS, ":7007")
	send := func(p peer, src net.IP) bool {
		before := arrived()
		err := inNetns(p.Netns, func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: src}, &net.UDPAddr{IP: net.ParseIP(l.Internet), Port: 7007})
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; i < 3; i++ {
				_, _ = c.Write([]byte("cap_net_admin"))
				time.Sleep(100 * time.Millisecond)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("sending from %s: %v", p.name, err)
		}
		time.Sleep(300 * time.Millisecond)
		return arrived() > before
	}
	run := func(p peer, args ...string) {
		t.Helper()
		if out, err := nsRun(p.Netns, args...); err != nil {
			t.Fatalf("%s: %v: %v %s", p.name, args, err, out)
		}
	}
	type step struct {
		name string
		do   func(p peer) net.IP // returns the source address to send from (nil: the kernel's choice)
		undo func(p peer)
	}
	spoofed := net.ParseIP(g.plain.ip4.String())
	steps := []step{
		{"a new MAC", func(p peer) net.IP { run(p, "ip", "link", "set", "eth0", "address", "02:0a:0b:0c:0d:0e"); return nil },
			func(p peer) { run(p, "ip", "link", "set", "eth0", "address", p.mac.String()) }},
		{"another container's address", func(p peer) net.IP {
			run(p, "ip", "addr", "add", spoofed.String()+"/32", "dev", "eth0")
			return spoofed
		}, func(p peer) { run(p, "ip", "addr", "del", spoofed.String()+"/32", "dev", "eth0") }},
		{"a route of its own to the internet", func(p peer) net.IP {
			run(p, "ip", "route", "add", l.Internet+"/32", "via", l.Router, "dev", "eth0", "metric", "1")
			return nil
		}, func(p peer) {
			run(p, "ip", "route", "del", l.Internet+"/32", "via", l.Router, "dev", "eth0", "metric", "1")
		}},
	}
	if !send(g.free, nil) {
		t.Fatal("the control's datagram did not arrive unchanged: the test proves nothing")
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			src := s.do(g.free)
			ok := send(g.free, src)
			s.undo(g.free)
			if !ok {
				t.Fatalf("the control's datagram did not arrive after %s: the test proves nothing", s.name)
			}
			src = s.do(g.off)
			if send(g.off, src) {
				t.Errorf("the offline container's datagram arrived after %s", s.name)
			}
			s.undo(g.off)
		})
	}
	// Undone, the offline container is back to its allowlist.
	expect(t, g.off.Netns, true, tcpProbe(l.HostAddr+":8000"))
}
