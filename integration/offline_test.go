package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/egress"
	"github.com/lanwire/lanwire/pkg/portmap"
)

// offlineGround is a LAN with services to reach: the fake internet (TCP 80,
// UDP 7, ICMP; IPv4 and IPv6), the LAN router (TCP 9000 and 9001, DNS),
// and a "mirror" on the host (TCP 8000 and 8001 on the bridge addresses).
type offlineGround struct {
	lan    *testlan.LAN
	d      *daemonProc
	hostLL string // the bridge's IPv6 link-local address
}

func newOfflineGround(t *testing.T, lease string) *offlineGround {
	t.Helper()
	return newOfflineGroundWith(t, testlan.Options{HostIP: true, LeaseTime: lease})
}

// newOfflineGroundWith builds the ground on a LAN made with opts (HostIP is
// always set).
func newOfflineGroundWith(t *testing.T, opts testlan.Options) *offlineGround {
	t.Helper()
	opts.HostIP = true
	l := newLAN(t, opts)
	g := &offlineGround{lan: l, d: startDaemon(t)}
	inet := filepath.Join("/var/run/netns", l.InetNS)
	lanNS := filepath.Join("/var/run/netns", l.LANNS)
	serveTCP(t, inet, ":80", "internet")
	serveUDP(t, inet, ":7")
	serveTCP(t, lanNS, ":9000", "router 9000")
	serveTCP(t, lanNS, ":9001", "router 9001")
	for _, a := range []string{l.HostAddr, "[" + l.HostAddr6 + "]"} {
		serveTCP(t, "", a+":8000", "mirror")
		serveTCP(t, "", a+":8001", "host 8001")
	}
	ifc, err := net.InterfaceByName(l.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsLinkLocalUnicast() {
			g.hostLL = ipn.IP.String()
		}
	}
	if g.hostLL == "" {
		t.Fatal("bridge has no IPv6 link-local address")
	}
	serveTCP(t, "", "["+g.hostLL+"%"+l.Bridge+"]:8001", "host link-local 8001")
	return g
}

// offlineConf is the offline-egress entry used by most tests: the mirror on
// the host and the router's port 9000, over IPv4 and IPv6. The router's
// addresses also make each LAN's rules, in both families, its own:
// containers with the same rules share one chain of them, and a test that
// tampers with its shared chain must not touch a parallel test's.
func (g *offlineGround) offlineConf() map[string]any {
	return map[string]any{
		"type": "offline-egress", "logBlocked": true,
		"allow": []map[string]any{
			{"to": "host", "ports": []string{"8000/tcp"}},
			{"to": g.lan.Router + "/32", "ports": []string{"9000/tcp"}},
			{"to": g.lan.Router6 + "/128", "ports": []string{"9000/tcp"}},
		},
	}
}

// network returns a conflist of hostbridge-dhcp, then more plugins.
func (g *offlineGround) network(t *testing.T, name string, more ...map[string]any) *network {
	hb := map[string]any{"type": "hostbridge-dhcp", "bridge": g.lan.Bridge, "daemonSocket": g.d.Socket, "autoStartDaemon": false}
	return newNetworkList(t, name+g.lan.ID, append([]map[string]any{hb}, more...))
}

// withIPv6 turns IPv6 back on on a container's eth0 (hostbridge-dhcp's
// "ipv6": "off" turned it off) and gives it an address in the LAN's ULA
// prefix and a default route through the router, as a container with
// CAP_NET_ADMIN could: offline-egress must hold all the same.
func (g *offlineGround) withIPv6(t *testing.T, netns string, host int) {
	t.Helper()
	prefix := strings.TrimSuffix(g.lan.Subnet6, "::/64")
	for _, args := range [][]string{
		{"sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6"},
		{"ip", "-6", "addr", "add", fmt.Sprintf("%s::%x/64", prefix, host), "dev", "eth0", "nodad"},
		{"ip", "-6", "route", "add", "default", "via", g.lan.Router6},
	} {
		if out, err := nsRun(netns, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	waitFor(t, 5*time.Second, "the container's IPv6 link-local address to leave DAD", func() bool {
		out, err := nsRun(netns, "ip", "-6", "addr", "show", "dev", "eth0", "tentative")
		return err == nil && strings.TrimSpace(out) == ""
	})
}

func (g *offlineGround) blockedForOffline() []probe {
	l := g.lan
	return []probe{
		tcpProbe(l.Internet + ":80"), udpProbe(l.Internet + ":7"), pingProbe(l.Internet),
		tcpProbe("[" + l.Internet6 + "]:80"), udpProbe("[" + l.Internet6 + "]:7"), pingProbe(l.Internet6),
		tcpProbe(l.Router + ":9001"), pingProbe(l.Router), pingProbe(l.Router6),
		tcpProbe(l.HostAddr + ":8001"), tcpProbe("[" + l.HostAddr6 + "]:8001"),
		linkLocalProbe(g.hostLL, "8001"),
		dnsProbe(l.Router),
	}
}

func (g *offlineGround) allowedForOffline() []probe {
	l := g.lan
	return []probe{tcpProbe(l.HostAddr + ":8000"), tcpProbe("[" + l.HostAddr6 + "]:8000"), tcpProbe(l.Router + ":9000")}
}

// linkLocalProbe connects to a link-local address through the container's
// eth0. The zone is given as eth0's index in the container: Go would look a
// zone name up among the host's interfaces.
func linkLocalProbe(ip, port string) probe {
	return probe{"tcp [" + ip + "%eth0]:" + port, func(n string) error {
		out, err := nsRun(n, "cat", "/sys/class/net/eth0/ifindex")
		if err != nil {
			return fmt.Errorf("eth0's index: %v", err)
		}
		return probeTCP(n, "["+ip+"%"+strings.TrimSpace(out)+"]:"+port)
	}}
}

// dnsProbe asks the router's dnsmasq for a name with busybox nslookup.
func dnsProbe(server string) probe {
	return probe{"dns " + server, func(n string) error {
		// busybox nslookup also asks for AAAA and exits 1 when there is
		// none: an answer is a "Name:" line.
		out, err := exec.Command("ip", "netns", "exec", filepath.Base(n), "timeout", "3", "busybox", "nslookup", "-type=a", "mirror.lan.test", server).CombinedOutput()
		if !strings.Contains(string(out), "Name:") {
			return fmt.Errorf("no answer (%v): %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}}
}

// Items 1, 2, 4, 5 and 8 of the offline-egress issue, on the bridged path.
func TestOfflineEgress(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	plainNet := g.network(t, "plain")
	offNet := g.network(t, "off", g.offlineConf())

	plain := attach{ID: "plain-" + g.lan.ID, Netns: container(t, g.lan)}
	plainRes := plainNet.MustAdd(plain)
	g.withIPv6(t, plain.Netns, 0x50)
	off := attach{ID: "off-" + g.lan.ID, Netns: container(t, g.lan)}
	offNet.MustAdd(off)
	g.withIPv6(t, off.Netns, 0x51)

	// A service in the plain container: another container on the bridge.
	serveTCP(t, plain.Netns, ":7070", "plain container")
	neighbour := tcpProbe(plainRes.IPs[0].Address.IP.String() + ":7070")
	t.Run("offline container cannot reach another container", func(t *testing.T) {
		expect(t, off.Netns, false, neighbour)
		expect(t, plain.Netns, true, neighbour)
	})
	t.Run("plain container reaches everything", func(t *testing.T) {
		expect(t, plain.Netns, true, g.blockedForOffline()...)
		expect(t, plain.Netns, true, g.allowedForOffline()...)
	})
	t.Run("offline container is blocked", func(t *testing.T) {
		expect(t, off.Netns, false, g.blockedForOffline()...)
	})
	t.Run("offline container reaches its allowlist", func(t *testing.T) {
		expect(t, off.Netns, true, g.allowedForOffline()...)
	})
	t.Run("blocked attempts are logged", func(t *testing.T) {
		_ = probeTCP(off.Netns, g.lan.Internet+":80")
		prefix := egress.LogPrefix(off.ID)
		waitFor(t, 3*time.Second, "the kernel log entry", func() bool {
			out, _ := exec.Command("dmesg").Output()
			return strings.Contains(string(out), strings.TrimSpace(prefix))
		})
	})
	t.Run("CAP_NET_ADMIN inside opens no way out", func(t *testing.T) {
		for _, args := range [][]string{
			{"iptables", "-F"}, {"iptables", "-P", "OUTPUT", "ACCEPT"},
			{"ip", "route", "add", "198.51.100.0/24", "via", g.lan.Router, "metric", "1"},
			{"ip", "addr", "add", plainRes.IPs[0].Address.IP.String() + "/32", "dev", "eth0"},
		} {
			if out, err := nsRun(off.Netns, args...); err != nil {
				t.Fatalf("%v: %v %s", args, err, out)
			}
		}
		expect(t, off.Netns, false, tcpProbe(g.lan.Internet+":80"), pingProbe(g.lan.Internet))
		// Spoofing the plain container's address does not borrow its freedom.
		spoofed := probe{"tcp from spoofed " + plainRes.IPs[0].Address.IP.String(), func(n string) error {
			return inNetns(n, func() error {
				d := net.Dialer{Timeout: probeTimeout, LocalAddr: &net.TCPAddr{IP: plainRes.IPs[0].Address.IP}}
				c, err := d.Dial("tcp", g.lan.Internet+":80")
				if err == nil {
					c.Close()
				}
				return err
			})
		}}
		expect(t, off.Netns, false, spoofed)
		_, _ = nsRun(off.Netns, "ip", "addr", "del", plainRes.IPs[0].Address.IP.String()+"/32", "dev", "eth0")
	})
	t.Run("another container's DEL changes nothing", func(t *testing.T) {
		other := attach{ID: "off2-" + g.lan.ID, Netns: container(t, g.lan)}
		offNet.MustAdd(other)
		if err := offNet.Del(other); err != nil {
			t.Fatal(err)
		}
		expect(t, off.Netns, false, tcpProbe(g.lan.Internet+":80"))
		expect(t, off.Netns, true, tcpProbe(g.lan.HostAddr+":8000"))
		expect(t, plain.Netns, true, tcpProbe(g.lan.Internet+":80"))
	})
	t.Run("CHECK, DEL and GC", func(t *testing.T) {
		if err := offNet.Check(off); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
		chain := egress.ChainName(offNet.Name, off.ID)
		rules4, rules6 := sharedOf(t, "iptables", chain), sharedOf(t, "ip6tables", chain)
		if out, err := exec.Command("iptables", "-t", "mangle", "-D", rules4, "-j", "DROP").CombinedOutput(); err != nil {
			t.Fatalf("removing a rule by hand: %v %s", err, out)
		}
		err := offNet.Check(off)
		if err == nil || !strings.Contains(err.Error(), "DROP") {
			t.Errorf("CHECK after a rule was removed: %v", err)
		}
		keep := attach{ID: "gc-keep-" + g.lan.ID, Netns: container(t, g.lan)}
		drop := attach{ID: "gc-drop-" + g.lan.ID, Netns: container(t, g.lan)}
		offNet.MustAdd(keep)
		offNet.MustAdd(drop)
		// A shared chain no container goes to, as a process killed
		// between transactions would leave: GC takes it away.
		orphan := "LWOS-ORPHAN-" + strings.ToUpper(g.lan.ID)
		t.Cleanup(func() {
			for _, tool := range []string{"iptables", "ip6tables"} {
				_ = exec.Command(tool, "-t", "mangle", "-F", orphan).Run()
				_ = exec.Command(tool, "-t", "mangle", "-X", orphan).Run()
			}
		})
		for _, tool := range []string{"iptables", "ip6tables"} {
			for _, args := range [][]string{{"-N", orphan}, {"-A", orphan, "-j", "DROP"}} {
				if out, err := exec.Command(tool, append([]string{"-t", "mangle"}, args...)...).CombinedOutput(); err != nil {
					t.Fatalf("%s %v: %v %s", tool, args, err, out)
				}
			}
		}
		err = offNet.cni.GCNetworkList(t.Context(), offNet.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
			{ContainerID: off.ID, IfName: "eth0"}, {ContainerID: keep.ID, IfName: "eth0"}}})
		if err != nil {
			t.Fatalf("GC: %v", err)
		}
		if chainExists(egress.ChainName(offNet.Name, drop.ID)) {
			t.Error("GC left the chain of a container not in the valid list")
		}
		if !chainExists(egress.ChainName(offNet.Name, keep.ID)) || !chainExists(chain) || !chainExists(rules4) || !chainExists(rules6) {
			t.Error("GC removed the chain of a valid container or the rules it goes to")
		}
		if chainExists(orphan) {
			t.Errorf("GC left %s, a shared chain no container uses", orphan)
		}
		for _, a := range []attach{off, off, keep} {
			if err := offNet.Del(a); err != nil {
				t.Errorf("DEL %s: %v", a.ID, err)
			}
		}
		for _, c := range []string{chain, egress.ChainName(offNet.Name, keep.ID), rules4, rules6} {
			if chainExists(c) {
				t.Errorf("chain %s left after DEL", c)
			}
		}
	})
}

// sharedOf returns the chain that chain's goto leads to (tool is iptables
// or ip6tables): where a container's offline-egress rules are.
func sharedOf(t *testing.T, tool, chain string) string {
	t.Helper()
	out, err := exec.Command(tool, "-t", "mangle", "-S", chain).CombinedOutput()
	if err != nil {
		t.Fatalf("%s -S %s: %v %s", tool, chain, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if _, target, ok := strings.Cut(line, " -g "); ok {
			return strings.TrimSpace(target)
		}
	}
	t.Fatalf("%s chain %s holds no goto:\n%s", tool, chain, out)
	return ""
}

// Containers with the same allowlist on one LAN share one chain of rules,
// each family's; their own chains hold a goto to it. Each stays filtered,
// a DEL leaves the other filtered, CHECK sees a rule removed from the
// shared chain, and the last DEL takes the shared chain away.
func TestOfflineSharedChain(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	conf := g.offlineConf()
	conf["logBlocked"] = false
	offNet := g.network(t, "share", conf)
	a := attach{ID: "share-a-" + g.lan.ID, Netns: container(t, g.lan)}
	b := attach{ID: "share-b-" + g.lan.ID, Netns: container(t, g.lan)}
	offNet.MustAdd(a)
	offNet.MustAdd(b)
	var shared []string
	for _, tool := range []string{"iptables", "ip6tables"} {
		sa, sb := sharedOf(t, tool, egress.ChainName(offNet.Name, a.ID)), sharedOf(t, tool, egress.ChainName(offNet.Name, b.ID))
		if sa != sb {
			t.Fatalf("%s: the two containers' chains go to %s and %s, want one shared chain", tool, sa, sb)
		}
		shared = append(shared, sa)
	}
	internet, mirror := tcpProbe(g.lan.Internet+":80"), tcpProbe(g.lan.HostAddr+":8000")
	for _, c := range []attach{a, b} {
		expect(t, c.Netns, false, internet)
		expect(t, c.Netns, true, mirror)
		if err := offNet.Check(c); err != nil {
			t.Errorf("CHECK %s: %v", c.ID, err)
		}
	}
	if err := offNet.Del(a); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	expect(t, b.Netns, false, internet)
	expect(t, b.Netns, true, mirror)
	for _, c := range shared {
		if !chainExists(c) {
			t.Errorf("the shared chain %s went with the first DEL", c)
		}
	}
	if err := offNet.Check(b); err != nil {
		t.Errorf("CHECK after the other's DEL: %v", err)
	}
	if out, err := exec.Command("ip6tables", "-t", "mangle", "-D", shared[1], "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("removing a rule by hand: %v %s", err, out)
	}
	if err := offNet.Check(b); err == nil || !strings.Contains(err.Error(), "DROP") {
		t.Errorf("CHECK after a shared rule was removed: %v", err)
	}
	if err := offNet.Del(b); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	for _, c := range append(shared, egress.ChainName(offNet.Name, a.ID), egress.ChainName(offNet.Name, b.ID)) {
		if chainExists(c) {
			t.Errorf("chain %s left after the last DEL", c)
		}
	}
}

func chainExists(chain string) bool {
	for _, tool := range []string{"iptables", "ip6tables"} {
		if exec.Command(tool, "-t", "mangle", "-S", chain).Run() == nil {
			return true
		}
	}
	return false
}

// The lease keeps renewing while the container is offline.
func TestOfflineLeaseRenews(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for T1 of a 2-minute lease; skipped with -short")
	}
	t.Parallel()
	g := newOfflineGround(t, "2m")
	n := g.network(t, "off", g.offlineConf())
	a := attach{ID: "renew-off", Netns: container(t, g.lan)}
	added := time.Now()
	ip := n.MustAdd(a).IPs[0].Address.IP.String()
	waitFor(t, 80*time.Second, "a renewal through the offline firewall", func() bool {
		for _, l := range g.d.Leases() {
			if l.Key.ContainerID == a.ID && l.Acquired.After(added.Add(50*time.Second)) {
				return true
			}
		}
		return false
	})
	if acks := dhcpLines(g.lan, "DHCPACK", ip); len(acks) < 2 {
		t.Errorf("dnsmasq logged no renewal ACK for %s", ip)
	}
	expect(t, a.Netns, false, tcpProbe(g.lan.Internet+":80"))
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
}

// Enforcement needs no global switch: a second bridge with two namespaces
// still passes traffic after an offline ADD.
func TestOfflineOtherBridgeUnaffected(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	n := g.network(t, "off", g.offlineConf())
	a := attach{ID: "otherbr", Netns: container(t, g.lan)}
	before := sysctls(t)
	n.MustAdd(a)
	if after := sysctls(t); after != before {
		t.Errorf("global bridge netfilter switches changed: %s -> %s", before, after)
	}
	br := "lwt" + g.lan.ID + "b2"
	ns1, ns2 := "lwt"+g.lan.ID+"-x1", "lwt"+g.lan.ID+"-x2"
	cleanup := func() {
		_ = exec.Command("ip", "link", "del", br).Run()
		_ = exec.Command("ip", "netns", "del", ns1).Run()
		_ = exec.Command("ip", "netns", "del", ns2).Run()
	}
	t.Cleanup(cleanup)
	steps := [][]string{{"ip", "link", "add", br, "type", "bridge"}, {"ip", "link", "set", br, "up"}}
	for i, nsn := range []string{ns1, ns2} {
		host := fmt.Sprintf("lwt%sv%d", g.lan.ID, i)
		steps = append(steps,
			[]string{"ip", "netns", "add", nsn},
			[]string{"ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", nsn},
			[]string{"ip", "link", "set", host, "master", br, "up"},
			[]string{"ip", "-n", nsn, "addr", "add", fmt.Sprintf("192.168.251.%d/24", i+1), "dev", "eth0"},
			[]string{"ip", "-n", nsn, "link", "set", "eth0", "up"})
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", s, err, out)
		}
	}
	if err := probePing(filepath.Join("/var/run/netns", ns1), "192.168.251.2"); err != nil {
		t.Errorf("namespaces on another bridge cannot ping each other after an offline ADD: %v", err)
	}
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
}

func sysctls(t *testing.T) string {
	var vals []string
	for _, s := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
		b, _ := os.ReadFile("/proc/sys/net/bridge/" + s)
		vals = append(vals, s+"="+strings.TrimSpace(string(b)))
	}
	return strings.Join(vals, " ")
}

// A port published with portmap-lite still answers LAN clients while the
// container's own egress stays blocked.
func TestOfflinePublishedPort(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	n := g.network(t, "offpm", g.offlineConf(),
		map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}})
	a := attach{ID: "offpm", Netns: container(t, g.lan),
		Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": 18580, "containerPort": 80, "protocol": "tcp"}}}}
	serveTCP(t, a.Netns, ":80", "offline web")
	n.MustAdd(a)
	lanNS := filepath.Join("/var/run/netns", g.lan.LANNS)
	expect(t, lanNS, true, tcpProbe(g.lan.HostAddr+":18580"))
	expect(t, a.Netns, false, tcpProbe(g.lan.Internet+":80"), tcpProbe(g.lan.Router+":9001"))
	if err := n.Check(a); err != nil {
		t.Errorf("CHECK of the whole chain: %v", err)
	}
}

// runtimeNetwork writes, for a container runtime to read from netDir, the
// offline chain of this ground (hostbridge-dhcp, offline-egress allowing the
// host's 8000/tcp, portmap-lite) as network prefix+LAN ID.
func (g *offlineGround) runtimeNetwork(t *testing.T, prefix string) (netDir, name string) {
	t.Helper()
	netDir = t.TempDir()
	name = prefix + g.lan.ID
	conflist := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[
 {"type":"hostbridge-dhcp","bridge":%q,"daemonSocket":%q,"autoStartDaemon":false},
 {"type":"offline-egress","allow":[{"to":"host","ports":["8000/tcp"]}]},
 {"type":"portmap-lite","capabilities":{"portMappings":true}}]}`, name, g.lan.Bridge, g.d.Socket)
	if err := os.WriteFile(filepath.Join(netDir, name+".conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	return netDir, name
}

// A flow the container opened before offline-egress's ADD does not survive
// it, although its conntrack entry is still there: a UDP stream to the
// internet from a fixed source port, answered before ADD, gets no answer
// after. (A plain network first; then offline-egress is run on the same
// container with that network's result as prevResult, as a runtime chaining
// it would.)
func TestOfflineCutsEarlierFlow(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	l := g.lan
	// Another offline container on the bridge: the host tracks the
	// bridge's flows from then on, as it does on any host with a stateful
	// firewall.
	other := g.network(t, "other", g.offlineConf())
	other.MustAdd(attach{ID: "early-other", Netns: container(t, l)})
	plain := g.network(t, "early")
	a := attach{ID: "early-flow", Netns: container(t, l)}
	res := plain.MustAdd(a)
	ip := res.IPs[0].Address.IP.String()
	dst := &net.UDPAddr{IP: net.ParseIP(l.Internet), Port: 7}
	var conn *net.UDPConn
	if err := inNetns(a.Netns, func() (err error) { conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 40123}); return }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func() error {
		if _, err := conn.WriteToUDP([]byte("ping"), dst); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 16)
		_, _, err := conn.ReadFromUDP(buf)
		return err
	}
	for i := 0; i < 2; i++ {
		if err := echo(); err != nil {
			t.Fatalf("the UDP stream does not work before offline-egress: %v", err)
		}
	}
	tracked := func() bool {
		out, _ := exec.Command("conntrack", "-L", "-p", "udp", "-s", ip, "--sport", "40123").CombinedOutput()
		return strings.Contains(string(out), "dport=7")
	}
	if !tracked() {
		t.Fatal("no conntrack entry for the stream: the test would prove nothing")
	}

	conf := g.offlineConf()
	conf["cniVersion"], conf["name"] = "1.1.0", plain.Name
	raw, _ := json.Marshal(res)
	var prev map[string]any
	_ = json.Unmarshal(raw, &prev)
	conf["prevResult"] = prev
	if out, err := runPlugin(t, "offline-egress", "ADD", a.ID, a.Netns, conf); err != nil {
		t.Fatalf("offline-egress ADD: %v %s", err, out)
	}
	t.Cleanup(func() { _, _ = runPlugin(t, "offline-egress", "DEL", a.ID, a.Netns, conf) })
	if !tracked() {
		t.Log("the conntrack entry expired meanwhile")
	}
	if err := echo(); err == nil {
		t.Error("the stream opened before ADD still reaches the internet")
	}
	if err := probeUDP(a.Netns, dst.String()); err == nil {
		t.Error("a new UDP flow reaches the internet")
	}
	if _, err := runPlugin(t, "offline-egress", "DEL", a.ID, a.Netns, conf); err != nil {
		t.Error(err)
	}
}

// TestHooksRemovedByHand: with the jumps into lanwire's chains (and the
// masquerade rule) removed by hand while containers are attached, the next
// ADD puts them back, and the containers are filtered again. Not parallel:
// the hooks are shared by every test's containers.
func TestHooksRemovedByHand(t *testing.T) {
	g := newOfflineGround(t, "2m")
	l := g.lan
	n := g.network(t, "hooks", g.offlineConf(), map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}})
	first := attach{ID: "hooks-1", Netns: container(t, l), Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": 38101, "containerPort": 80, "protocol": "tcp"}}}}
	n.MustAdd(first)
	inet := net.JoinHostPort(l.Internet, "80")
	if err := probeTCP(first.Netns, inet); err == nil {
		t.Fatal("the offline container reaches the internet before anything was removed")
	}
	hook := func(op string) []string {
		return []string{"-t", "mangle", op, "PREROUTING", "-m", "comment", "--comment", "lanwire offline-egress", "-j", egress.TopChain}
	}
	masq := []string{"-t", "nat", "-S", portmap.MasqChain}
	run := func(args ...string) error { return exec.Command("iptables", args...).Run() }
	if err := run(hook("-D")...); err != nil {
		t.Fatalf("removing the offline-egress hook: %v", err)
	}
	if err := run("-t", "nat", "-F", portmap.MasqChain); err != nil {
		t.Fatalf("flushing %s: %v", portmap.MasqChain, err)
	}
	if err := probeTCP(first.Netns, inet); err != nil {
		t.Fatalf("without its hook offline-egress should filter nothing (the test would prove nothing): %v", err)
	}
	second := attach{ID: "hooks-2", Netns: container(t, l), Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": 38102, "containerPort": 80, "protocol": "tcp"}}}}
	n.MustAdd(second)
	if err := run(hook("-C")...); err != nil {
		t.Error("ADD did not put the offline-egress hook back")
	}
	if out, _ := exec.Command("iptables", masq...).Output(); !strings.Contains(string(out), "MASQUERADE") {
		t.Errorf("ADD did not put the masquerade rule back:\n%s", out)
	}
	for _, a := range []attach{first, second} {
		if err := probeTCP(a.Netns, inet); err == nil {
			t.Errorf("%s reaches the internet after the second ADD", a.ID)
		}
	}
}
