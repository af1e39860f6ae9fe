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
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/egress"
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
// always set, and router advertisements, so that containers in "slaac"
// mode get real IPv6 addresses the guard knows).
func newOfflineGroundWith(t *testing.T, opts testlan.Options) *offlineGround {
	t.Helper()
	opts.HostIP, opts.RA = true, true
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
// the host and the router's port 9000, over IPv4 and IPv6.
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

// network returns a conflist of hostbridge-dhcp ("ipv6": "slaac"), then
// more plugins.
func (g *offlineGround) network(t *testing.T, name string, more ...map[string]any) *network {
	return g.networkWith(t, name, nil, more...)
}

// networkWith is network with hb merged into hostbridge-dhcp's entry.
func (g *offlineGround) networkWith(t *testing.T, name string, hb map[string]any, more ...map[string]any) *network {
	conf := map[string]any{"type": "hostbridge-dhcp", "bridge": g.lan.Bridge, "daemonSocket": g.d.Socket,
		"autoStartDaemon": false, "ipv6": "slaac"}
	for k, v := range hb {
		conf[k] = v
	}
	return newNetworkList(t, name+g.lan.ID, append([]map[string]any{conf}, more...))
}

// addr returns a result's address of the family (v6: its global one).
func addrOf(t *testing.T, res *current.Result, v6 bool) string {
	t.Helper()
	for _, ip := range res.IPs {
		if (ip.Address.IP.To4() == nil) == v6 && !ip.Address.IP.IsLinkLocalUnicast() {
			return ip.Address.IP.String()
		}
	}
	t.Fatalf("result has no address (IPv6 %v): %v", v6, res)
	return ""
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

// Items 1, 2, 4, 5 and 8 of the offline-egress issue, on the bridged path,
// over IPv4 and IPv6 (SLAAC addresses from the LAN's router).
func TestOfflineEgress(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	plainNet := g.network(t, "plain")
	offNet := g.network(t, "off", g.offlineConf())

	plain := attach{ID: "plain-" + g.lan.ID, Netns: container(t, g.lan)}
	plainRes := plainNet.MustAdd(plain)
	// A second plain container: the control that reaches the first one's
	// service across the bridge.
	plain2 := attach{ID: "plain2-" + g.lan.ID, Netns: container(t, g.lan)}
	plainNet.MustAdd(plain2)
	off := attach{ID: "off-" + g.lan.ID, Netns: container(t, g.lan)}
	offNet.MustAdd(off)

	serveTCP(t, plain.Netns, ":7070", "plain container")
	neighbour := tcpProbe(net.JoinHostPort(addrOf(t, plainRes, false), "7070"))
	neighbour6 := tcpProbe(net.JoinHostPort(addrOf(t, plainRes, true), "7070"))
	t.Run("offline container cannot reach another container", func(t *testing.T) {
		expect(t, plain2.Netns, true, neighbour, neighbour6)
		expectBlocked(t, off.Netns, neighbour, neighbour6)
	})
	t.Run("plain container reaches everything", func(t *testing.T) {
		expect(t, plain.Netns, true, g.blockedForOffline()...)
		expect(t, plain.Netns, true, g.allowedForOffline()...)
	})
	t.Run("offline container is blocked", func(t *testing.T) {
		expectBlocked(t, off.Netns, g.blockedForOffline()...)
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
	t.Run("another container's DEL changes nothing", func(t *testing.T) {
		other := attach{ID: "off2-" + g.lan.ID, Netns: container(t, g.lan)}
		offNet.MustAdd(other)
		if err := offNet.Del(other); err != nil {
			t.Fatal(err)
		}
		if n := entriesOf(t, offNet.Name, other.ID); n != 0 {
			t.Errorf("DEL left %d entries of the container", n)
		}
		expectBlocked(t, off.Netns, tcpProbe(g.lan.Internet+":80"))
		expect(t, off.Netns, true, tcpProbe(g.lan.HostAddr+":8000"))
		expect(t, plain.Netns, true, tcpProbe(g.lan.Internet+":80"))
	})
	t.Run("CHECK, DEL and GC", func(t *testing.T) {
		if err := offNet.Check(off); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
		keep := attach{ID: "gc-keep-" + g.lan.ID, Netns: container(t, g.lan)}
		drop := attach{ID: "gc-drop-" + g.lan.ID, Netns: container(t, g.lan)}
		offNet.MustAdd(keep)
		offNet.MustAdd(drop)
		err := offNet.cni.GCNetworkList(t.Context(), offNet.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
			{ContainerID: off.ID, IfName: "eth0"}, {ContainerID: keep.ID, IfName: "eth0"}}})
		if err != nil {
			t.Fatalf("GC: %v", err)
		}
		if n := entriesOf(t, offNet.Name, drop.ID); n != 0 {
			t.Errorf("GC left %d entries of a container not in the valid list", n)
		}
		if entriesOf(t, offNet.Name, keep.ID) == 0 || entriesOf(t, offNet.Name, off.ID) == 0 {
			t.Error("GC removed the entries of a valid container")
		}
		if err := offNet.Check(off); err != nil {
			t.Errorf("CHECK after GC: %v", err)
		}
		expectBlocked(t, off.Netns, tcpProbe(g.lan.Internet+":80"))
		expect(t, off.Netns, true, tcpProbe(g.lan.HostAddr+":8000"))
		for _, a := range []attach{keep, drop} {
			if err := offNet.Del(a); err != nil {
				t.Errorf("DEL %s: %v", a.ID, err)
			}
			if n := entriesOf(t, offNet.Name, a.ID); n != 0 {
				t.Errorf("DEL %s left %d entries", a.ID, n)
			}
		}
	})
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
	expectBlocked(t, a.Netns, tcpProbe(g.lan.Internet+":80"))
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
	expectBlocked(t, a.Netns, tcpProbe(g.lan.Internet+":80"), tcpProbe(g.lan.Router+":9001"))
	if err := n.Check(a); err != nil {
		t.Errorf("CHECK of the whole chain: %v", err)
	}
}

// runtimeNetwork writes, for a container runtime to read from netDir, the
// offline chain of this ground (hostbridge-dhcp, offline-egress allowing the
// host's 8000/tcp, portmap-lite) as network prefix+LAN ID, and a plain one
// (hostbridge-dhcp alone) as prefix+"plain"+LAN ID, the control.
func (g *offlineGround) runtimeNetwork(t *testing.T, prefix string) (netDir, name, plain string) {
	t.Helper()
	netDir = t.TempDir()
	name, plain = prefix+g.lan.ID, prefix+"plain"+g.lan.ID
	hb := fmt.Sprintf(`{"type":"hostbridge-dhcp","bridge":%q,"daemonSocket":%q,"autoStartDaemon":false}`, g.lan.Bridge, g.d.Socket)
	for n, conflist := range map[string]string{
		name: fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s,
 {"type":"offline-egress","allow":[{"to":"host","ports":["8000/tcp"]}]},
 {"type":"portmap-lite","capabilities":{"portMappings":true}}]}`, name, hb),
		plain: fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, plain, hb),
	} {
		if err := os.WriteFile(filepath.Join(netDir, n+".conflist"), []byte(conflist), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return netDir, name, plain
}

// runtimeBlocked checks, from inside a runtime's containers, that the
// plain one reaches each target and the offline one does not: its probes
// time out (dropped), never refused.
func runtimeBlocked(t *testing.T, run func(args ...string) (string, error), plainCtr, offCtr string, targets [][2]string) {
	t.Helper()
	for _, hp := range targets {
		if out, err := greets(run, plainCtr, hp[0], hp[1]); err != nil {
			t.Errorf("the plain container (the control) cannot reach %s:%s: %v %s", hp[0], hp[1], err, out)
			continue
		}
		out, err := greets(run, offCtr, hp[0], hp[1])
		switch {
		case err == nil:
			t.Errorf("the offline container reached %s:%s: %s", hp[0], hp[1], out)
		case !dropped(fmt.Errorf("%w: %s", err, out)): // the runtime may say why in out
			t.Errorf("the offline container's probe of %s:%s failed with %v %s, not a drop: it proves nothing", hp[0], hp[1], err, out)
		}
	}
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
		t.Fatal("the conntrack entry expired before the check: the test would prove nothing")
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

// TestFirewallTamper: lanwire's tables changed or removed by hand while
// containers are attached (an administrator, a firewall reload that flushes
// the ruleset). CHECK reports a removed rule; GC puts the rules back and
// removes entries of ports no record knows; after the tables are deleted,
// the next ADD rebuilds them with every container's entries, so the
// containers already there are filtered again and their published ports
// answer. Not parallel: the tables are shared by every test's containers.
func TestFirewallTamper(t *testing.T) {
	g := newOfflineGround(t, "2m")
	l := g.lan
	pm := map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}}
	n := g.network(t, "tamper", g.offlineConf(), pm)
	first := attach{ID: "tamper-1", Netns: container(t, l), Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": 38101, "containerPort": 80, "protocol": "tcp"}}}}
	serveTCP(t, first.Netns, ":80", "first")
	n.MustAdd(first)
	inet := tcpProbe(net.JoinHostPort(l.Internet, "80"))
	lanNS := filepath.Join("/var/run/netns", l.LANNS)
	published := tcpProbe(l.HostAddr + ":38101")
	expectBlocked(t, first.Netns, inet)
	expect(t, lanNS, true, published)

	t.Run("CHECK reports a removed rule, GC puts it back", func(t *testing.T) {
		for _, r := range []struct{ family, table, chain, comment, want string }{
			{"bridge", "lanwire", "off_ip4", "allowlist", "allowlist"},
			{"inet", "lanwire_egress", "prerouting", "offline: blocked", "offline: blocked"},
			{"inet", "lanwire_portmap", "output", "from this host to its other addresses", "output"},
		} {
			deleteRule(t, r.family, r.table, r.chain, r.comment)
			if err := n.Check(first); err == nil || !strings.Contains(err.Error(), r.want) {
				t.Errorf("CHECK with %q removed from %s %s: %v", r.comment, r.table, r.chain, err)
			}
			// Entries of a port no record knows, as a process killed
			// between the kernel's change and its record would leave.
			nftRun(t, "add", "element", "bridge", "lanwire", "offline", `{ "lw0rphan0000" }`)
			if err := n.cni.GCNetworkList(t.Context(), n.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: first.ID, IfName: "eth0"}}}); err != nil {
				t.Fatalf("GC: %v", err)
			}
			if err := n.Check(first); err != nil {
				t.Errorf("CHECK after GC: %v", err)
			}
			if strings.Contains(ruleset(t), "lw0rphan0000") {
				t.Error("GC left the entries of a port no record knows")
			}
		}
		expectBlocked(t, first.Netns, inet)
		expect(t, first.Netns, true, tcpProbe(l.HostAddr+":8000"))
		expect(t, lanNS, true, published)
	})

	t.Run("tables deleted by hand are rebuilt by the next ADD", func(t *testing.T) {
		for _, tb := range []string{"bridge lanwire", "inet lanwire_egress", "inet lanwire_portmap"} {
			nftRun(t, append([]string{"delete", "table"}, strings.Fields(tb)...)...)
		}
		// Without its tables the container is online: the control.
		expect(t, first.Netns, true, inet)
		second := attach{ID: "tamper-2", Netns: container(t, l), Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": 38102, "containerPort": 80, "protocol": "tcp"}}}}
		n.MustAdd(second)
		for _, a := range []attach{first, second} {
			expectBlocked(t, a.Netns, inet)
			if err := n.Check(a); err != nil {
				t.Errorf("CHECK %s after the rebuild: %v", a.ID, err)
			}
		}
		expect(t, lanNS, true, published)
	})
}

// With the host's global bridge-nf-call-iptables and -ip6tables at 0, the
// bridge's own switches (which offline-egress turns on) are all the offline
// container's checks need: blocked, allowed and published all hold, over
// IPv4 and IPv6, and the global switches stay 0. Not parallel: it sets the
// global switches (put back after).
func TestOfflineGlobalSwitchesOff(t *testing.T) {
	for _, s := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
		p := "/proc/sys/net/bridge/" + s
		old, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v (br_netfilter not loaded?)", p, err)
		}
		t.Cleanup(func() { _ = os.WriteFile(p, old, 0o644) })
		if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := newOfflineGround(t, "2m")
	l := g.lan
	plain := attach{ID: "gsw-plain", Netns: container(t, l)}
	g.network(t, "gswplain").MustAdd(plain)
	n := g.network(t, "gsw", g.offlineConf(), map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}})
	a := attach{ID: "gsw-off", Netns: container(t, l), Caps: maps(tcpMap(38401, 80, ""))}
	serveTCP(t, a.Netns, ":80", "offline web")
	n.MustAdd(a)
	blocked := []probe{tcpProbe(l.Internet + ":80"), tcpProbe("[" + l.Internet6 + "]:80"), tcpProbe(l.Router + ":9001")}
	expect(t, plain.Netns, true, blocked...)
	expectBlocked(t, a.Netns, blocked...)
	expect(t, a.Netns, true, g.allowedForOffline()...)
	expect(t, filepath.Join("/var/run/netns", l.LANNS), true, tcpProbe(l.HostAddr+":38401"))
	if got := sysctls(t); got != "bridge-nf-call-iptables=0 bridge-nf-call-ip6tables=0" {
		t.Errorf("the global switches changed: %s", got)
	}
}

// An offline port's allowlist goes with its DEL, entry for entry, at
// once: the same container added again, with the same host port name and
// another allowlist, reaches only what the new allowlist names.
func TestOfflineAllowlistGoesWithPort(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	l := g.lan
	allow := func(ports ...string) map[string]any {
		return map[string]any{"type": "offline-egress", "allow": []map[string]any{{"to": "host", "ports": ports}}}
	}
	// One exact port, then a port and a range: both kinds of entries.
	first, second := g.network(t, "reuse", allow("8000/tcp")), g.network(t, "reuse", allow("8001/tcp", "7990-7999/tcp"))
	a := attach{ID: "reuse", Netns: container(t, l)}
	p8000, p8001 := tcpProbe(l.HostAddr+":8000"), tcpProbe(l.HostAddr+":8001")
	for i, step := range []struct {
		n          *network
		open, shut probe
	}{{first, p8000, p8001}, {second, p8001, p8000}} {
		step.n.MustAdd(a)
		expect(t, a.Netns, true, step.open)
		expectBlocked(t, a.Netns, step.shut)
		if err := step.n.Del(a); err != nil {
			t.Fatal(err)
		}
		if n := entriesOf(t, step.n.Name, a.ID); n != 0 {
			t.Errorf("DEL %d left %d entries of the container", i+1, n)
		}
	}
}
