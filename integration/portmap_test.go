package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/portmap"
)

// portmapGround is a LAN whose host has .254 (and .253) on the bridge, and
// a conflist hostbridge-dhcp -> portmap-lite.
type portmapGround struct {
	lan   *testlan.LAN
	d     *daemonProc
	net   *network
	lanNS string // the LAN router's netns: a LAN client
}

func newPortmapGround(t *testing.T, pm map[string]any) *portmapGround {
	t.Helper()
	l := newLAN(t, testlan.Options{HostIP: true})
	g := &portmapGround{lan: l, d: startDaemon(t), lanNS: filepath.Join("/var/run/netns", l.LANNS)}
	conf := map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}}
	for k, v := range pm {
		conf[k] = v
	}
	g.net = newNetworkList(t, "pm"+l.ID, []map[string]any{
		{"type": "hostbridge-dhcp", "bridge": l.Bridge, "daemonSocket": g.d.Socket, "autoStartDaemon": false},
		conf,
	})
	return g
}

func maps(ms ...portmap.Mapping) map[string]any {
	return map[string]any{"portMappings": ms}
}

func tcpMap(host, cont int, hostIP string) portmap.Mapping {
	return portmap.Mapping{HostPort: host, ContainerPort: cont, Protocol: "tcp", HostIP: hostIP}
}

// Items 1, 2 and 6: LAN clients, the host (LAN address and 127.0.0.1),
// hairpin from another container and from the container itself; hostIP
// binding; only traffic to this host is DNATed.
func TestPortmapReach(t *testing.T) {
	t.Parallel()
	g := newPortmapGround(t, map[string]any{"localhost": true})
	l := g.lan
	second := strings.TrimSuffix(l.HostAddr, ".254") + ".253"
	if out, err := exec.Command("ip", "addr", "add", second+"/24", "dev", l.Bridge).CombinedOutput(); err != nil {
		t.Fatalf("second host address: %v %s", err, out)
	}
	web := attach{ID: "web", Netns: container(t, l), Caps: maps(
		tcpMap(18080, 80, ""), tcpMap(18081, 81, l.HostAddr),
		portmap.Mapping{HostPort: 18053, ContainerPort: 53, Protocol: "udp"})}
	serveTCP(t, web.Netns, ":80", "web 80")
	serveTCP(t, web.Netns, ":81", "web 81")
	serveUDP(t, web.Netns, ":53")
	webRes := g.net.MustAdd(web)
	other := attach{ID: "other", Netns: container(t, l)}
	otherRes := g.net.MustAdd(other)
	serveTCP(t, other.Netns, ":18080", "other itself")

	hostAddr := l.HostAddr
	t.Run("LAN client", func(t *testing.T) {
		expect(t, g.lanNS, true, tcpProbe(hostAddr+":18080"), udpProbe(hostAddr+":18053"), tcpProbe(hostAddr+":18081"))
	})
	t.Run("host itself", func(t *testing.T) {
		expect(t, "", true, tcpProbe(hostAddr+":18080"), tcpProbe("127.0.0.1:18080"), udpProbe(hostAddr+":18053"))
	})
	t.Run("hairpin", func(t *testing.T) {
		expect(t, other.Netns, true, tcpProbe(hostAddr+":18080"))
		expect(t, web.Netns, true, tcpProbe(hostAddr+":18080"))
	})
	t.Run("hostIP binds", func(t *testing.T) {
		expect(t, g.lanNS, true, tcpProbe(second+":18080"))
		expect(t, g.lanNS, false, tcpProbe(second+":18081"))
		expect(t, "", false, tcpProbe("127.0.0.1:18081"))
	})
	t.Run("traffic to another address is untouched", func(t *testing.T) {
		// The LAN router connects to the other container's own port 18080:
		// bridged through the host, it must reach that container, not web.
		addr := otherRes.IPs[0].Address.IP.String() + ":18080"
		if err := probeTCP(g.lanNS, addr); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		greeting := greet(t, g.lanNS, addr)
		if !strings.Contains(greeting, "other itself") {
			t.Errorf("connection to %s answered %q: DNATed traffic not addressed to the host", addr, greeting)
		}
	})
	_ = webRes
	for _, a := range []attach{web, other} {
		if err := g.net.Del(a); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, g.lanNS, false, tcpProbe(hostAddr+":18080"))
}

// greet connects and returns the server's greeting.
func greet(t *testing.T, netns, addr string) string {
	var out string
	_ = inNetns(netns, func() error {
		c, err := net.DialTimeout("tcp", addr, probeTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(probeTimeout))
		b := make([]byte, 64)
		n, _ := c.Read(b)
		out = string(b[:n])
		return nil
	})
	return out
}

// A mapping bound to 127.0.0.1 cannot be reached from the LAN, even by
// packets crafted in a LAN netns towards 127.0.0.1: with localhost access
// (route_localnet on the bridge, guarded in the raw table) and without it
// (the PREROUTING jump never takes loopback destinations).
func TestPortmapLoopbackNotFromLAN(t *testing.T) {
	t.Parallel()
	for _, localhost := range []bool{false, true} {
		t.Run(fmt.Sprintf("localhost %v", localhost), func(t *testing.T) {
			t.Parallel()
			g := newPortmapGround(t, map[string]any{"localhost": localhost})
			l := g.lan
			// Host ports are the host's: the two subtests use their own.
			p := 19053
			if localhost {
				p = 19153
			}
			a := attach{ID: "lo", Netns: container(t, l), Caps: maps(
				portmap.Mapping{HostPort: p, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
				portmap.Mapping{HostPort: p + 1, ContainerPort: 53, Protocol: "udp"})}
			got := countUDP(t, a.Netns, ":53")
			g.net.MustAdd(a)
			if localhost {
				expect(t, "", true, udpProbe(fmt.Sprintf("127.0.0.1:%d", p)))
			}
			before := got()
			brMAC := mustMAC(t, "", l.Bridge)
			// The control: a crafted datagram to the host's address reaches
			// the container, so the crafting works.
			sendCrafted(t, g.lanNS, brMAC, l.Router, l.HostAddr, p+1)
			waitFor(t, 2*time.Second, "the crafted control datagram", func() bool { return got() > before })
			before = got()
			sendCrafted(t, g.lanNS, brMAC, l.Router, "127.0.0.1", p)
			sendCrafted(t, g.lanNS, brMAC, l.Router, "127.0.0.1", p+1)
			time.Sleep(500 * time.Millisecond)
			if got() != before {
				t.Errorf("a datagram sent from the LAN to 127.0.0.1 reached the container")
			}
		})
	}
}

// Item 3: a second container asking for a taken port fails naming the
// holder; a host process holding the port is reported the same way; the
// same container added again replaces its rules.
func TestPortmapConflicts(t *testing.T) {
	t.Parallel()
	g := newPortmapGround(t, nil)
	a := attach{ID: "holder-a", Netns: container(t, g.lan), Caps: maps(tcpMap(18180, 80, ""))}
	g.net.MustAdd(a)
	b := attach{ID: "wants-b", Netns: container(t, g.lan), Caps: maps(tcpMap(18180, 80, g.lan.HostAddr))}
	_, err := g.net.Add(b)
	if err == nil {
		t.Fatal("second container got a port already allocated")
	}
	if te := cniError(t, err); !strings.Contains(te.Msg, "port 18180/tcp is already allocated") || !strings.Contains(te.Msg, a.ID) {
		t.Errorf("error %q does not name the port and its holder", te.Msg)
	}
	if n := portmapEntries(t, g.net.Name, b.ID); n != 0 {
		t.Errorf("refused ADD left %d entries", n)
	}
	_ = g.net.Del(b)
	serveTCP(t, "", g.lan.HostAddr+":18181", "host process")
	c := attach{ID: "wants-c", Netns: container(t, g.lan), Caps: maps(tcpMap(18181, 80, ""))}
	_, err = g.net.Add(c)
	if err == nil {
		t.Fatal("ADD took a port a host process listens on")
	}
	if te := cniError(t, err); !strings.Contains(te.Msg, "port 18181/tcp is already allocated") {
		t.Errorf("error %q does not say the port is taken", te.Msg)
	}
	_ = g.net.Del(c)
	// The same container again: success, entries replaced, not added to.
	g.net.MustAdd(a)
	g.net.MustAdd(a)
	if n := mappingEntries(t, g.net.Name, a.ID, "18180/tcp"); n != 1 {
		t.Errorf("%d DNAT entries for 18180/tcp after re-adding, want 1", n)
	}
	if err := g.net.Del(a); err != nil {
		t.Fatal(err)
	}
}

// Item 4: a steady UDP stream reaches the new container within a second of
// the old one's DEL and the new one's ADD.
func TestPortmapUDPSwitch(t *testing.T) {
	t.Parallel()
	g := newPortmapGround(t, nil)
	m := maps(portmap.Mapping{HostPort: 18253, ContainerPort: 5353, Protocol: "udp"})
	a := attach{ID: "udp-a", Netns: container(t, g.lan), Caps: m}
	b := attach{ID: "udp-b", Netns: container(t, g.lan), Caps: m}
	serveUDPName(t, a.Netns, ":5353", "A")
	serveUDPName(t, b.Netns, ":5353", "B")
	g.net.MustAdd(a)
	var conn net.Conn
	if err := inNetns(g.lanNS, func() (err error) { conn, err = net.Dial("udp", g.lan.HostAddr+":18253"); return }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The client sends every 50 ms from one source port, as a media or DNS
	// stream does, and records who answered.
	var mu sync.Mutex
	var lastB time.Time
	firstA := make(chan struct{})
	var once sync.Once
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		buf := make([]byte, 16)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := conn.Read(buf)
			if err == nil && string(buf[:n]) == "A" {
				once.Do(func() { close(firstA) })
			}
			if err == nil && string(buf[:n]) == "B" {
				mu.Lock()
				if lastB.IsZero() {
					lastB = time.Now()
				}
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				_, _ = conn.Write([]byte("x"))
			}
		}
	}()
	select {
	case <-firstA:
	case <-time.After(3 * time.Second):
		t.Fatal("the stream never reached container A")
	}
	if err := g.net.Del(a); err != nil {
		t.Fatal(err)
	}
	g.net.MustAdd(b)
	added := time.Now()
	waitFor(t, 3*time.Second, "the stream to reach B", func() bool { mu.Lock(); defer mu.Unlock(); return !lastB.IsZero() })
	mu.Lock()
	took := lastB.Sub(added)
	mu.Unlock()
	t.Logf("stream reached B %s after its ADD", took)
	if took > time.Second {
		t.Errorf("stream reached B after %s, want within 1s", took)
	}
	if err := g.net.Del(b); err != nil {
		t.Fatal(err)
	}
}

func serveUDPName(t *testing.T, netns, addr, name string) {
	var pc net.PacketConn
	if err := inNetns(netns, func() (err error) { pc, err = net.ListenPacket("udp", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
}

// Item 7: invalid mappings get error 7 and change nothing.
func TestPortmapInvalid(t *testing.T) {
	t.Parallel()
	g := newPortmapGround(t, nil)
	cases := map[string][]portmap.Mapping{
		"port 0":      {tcpMap(0, 80, "")},
		"port 70000":  {tcpMap(70000, 80, "")},
		"container 0": {tcpMap(8080, 0, "")},
		"icmp":        {{HostPort: 8080, ContainerPort: 80, Protocol: "icmp"}},
		"hostIP nope": {tcpMap(8080, 80, "nope")},
		"duplicates":  {tcpMap(8080, 80, ""), tcpMap(8080, 81, "")},
	}
	for name, ms := range cases {
		t.Run(name, func(t *testing.T) {
			id := "bad-" + strings.ReplaceAll(name, " ", "-")
			a := attach{ID: id, Netns: container(t, g.lan), Caps: maps(ms...)}
			_, err := g.net.Add(a)
			if te := cniError(t, err); te.Code != 7 {
				t.Errorf("code %d (%s), want 7", te.Code, te.Msg)
			}
			if n := portmapEntries(t, g.net.Name, id); n != 0 {
				t.Errorf("%d entries created for an invalid mapping", n)
			}
			// hostbridge-dhcp ran before the failure: the runtime's DEL
			// (with the same invalid mappings) must get to it and clean up.
			if err := g.net.Del(a); err != nil {
				t.Errorf("DEL after the refused ADD: %v", err)
			}
			if n := entriesOf(t, g.net.Name, id); n != 0 {
				t.Errorf("DEL left %d firewall entries", n)
			}
		})
	}
}

// runPlugin executes a plugin binary as a runtime does, with stdin conf.
func runPlugin(t testing.TB, name, command, containerID, netns string, conf map[string]any) ([]byte, error) {
	data, _ := json.Marshal(conf)
	cmd := exec.Command(plugin(name))
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID,
		"CNI_NETNS="+netns, "CNI_IFNAME=eth0", "CNI_PATH="+binDir)
	cmd.Stdin = strings.NewReader(string(data))
	return cmd.Output()
}

// Item 8: DEL without prevResult, twice; CHECK catches a removed DNAT
// entry, which the next ADD puts back; GC removes the mappings of
// containers not in the valid list.
func TestPortmapCheckDelGC(t *testing.T) {
	t.Parallel()
	g := newPortmapGround(t, nil)
	a := attach{ID: "chk-a", Netns: container(t, g.lan), Caps: maps(tcpMap(18380, 80, ""))}
	b := attach{ID: "chk-b", Netns: container(t, g.lan), Caps: maps(tcpMap(18381, 80, ""))}
	aRes := g.net.MustAdd(a)
	bRes := g.net.MustAdd(b)
	// b's bridge port is in hairpin mode while it publishes ports (it
	// reaches them itself); its DEL below turns that off again.
	hairpin := func() string {
		for _, ifc := range bRes.Interfaces {
			if ifc.Sandbox == "" && ifc.Name != g.lan.Bridge {
				v, err := os.ReadFile("/sys/class/net/" + ifc.Name + "/brport/hairpin_mode")
				if err != nil {
					t.Fatalf("hairpin mode of %s: %v", ifc.Name, err)
				}
				return strings.TrimSpace(string(v))
			}
		}
		t.Fatal("no host-side port in the result")
		return ""
	}
	if h := hairpin(); h != "1" {
		t.Errorf("hairpin mode of a publishing container's port is %s, want 1", h)
	}
	if err := g.net.Check(a); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	nftRun(t, "delete", "element", "inet", portmap.Table, "dnatany4", "{ tcp . 18380 }")
	if err := g.net.Check(a); err == nil || !strings.Contains(err.Error(), "DNAT of 18380/tcp") {
		t.Errorf("CHECK with the DNAT entry removed: %v", err)
	}
	if err := g.net.Check(b); err != nil {
		t.Errorf("CHECK of the other container: %v", err)
	}
	g.net.MustAdd(a) // ADD puts the entry back
	if err := g.net.Check(a); err != nil {
		t.Errorf("CHECK after a second ADD: %v", err)
	}
	// GC keeps b, removes a. (A rule removed by hand, shared by every
	// container, is TestFirewallTamper's.)
	err := g.net.cni.GCNetworkList(t.Context(), g.net.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: b.ID, IfName: "eth0"}}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if portmapEntries(t, g.net.Name, a.ID) != 0 || mappingEntries(t, g.net.Name, b.ID, "18381/tcp") != 1 {
		t.Error("GC did not remove exactly the invalid container's mappings")
	}
	if err := g.net.Check(b); err != nil {
		t.Errorf("CHECK after GC: %v", err)
	}
	_ = aRes
	// DEL without prevResult, twice.
	conf := map[string]any{"cniVersion": "1.1.0", "name": g.net.Name, "type": "portmap-lite",
		"runtimeConfig": map[string]any{"portMappings": []portmap.Mapping{tcpMap(18381, 80, "")}}}
	for i := 0; i < 2; i++ {
		if out, err := runPlugin(t, "portmap-lite", "DEL", b.ID, b.Netns, conf); err != nil {
			t.Fatalf("DEL %d without prevResult: %v %s", i+1, err, out)
		}
	}
	if n := portmapEntries(t, g.net.Name, b.ID); n != 0 {
		t.Errorf("DEL left %d entries", n)
	}
	if h := hairpin(); h != "0" {
		t.Errorf("hairpin mode of the port after portmap-lite's DEL is %s, want 0 as before", h)
	}
	for _, x := range []attach{a, b} {
		_ = g.net.Del(x)
	}
}

// Item 9: 50 parallel ADD/DEL report no error and leave no rule.
func TestPortmapParallel(t *testing.T) {
	t.Parallel()
	const n = 50
	netName := fmt.Sprintf("pmpar%d", time.Now().UnixNano()%100000)
	conf := func(i int) map[string]any { return portmapAlone(netName, 20000+i, 203, i) }
	errs := make(chan error, 2*n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("par-%d", i)
			if out, err := runPlugin(t, "portmap-lite", "ADD", id, "/x", conf(i)); err != nil {
				errs <- fmt.Errorf("ADD %d: %v %s", i, err, out)
			}
			if out, err := runPlugin(t, "portmap-lite", "DEL", id, "/x", conf(i)); err != nil {
				errs <- fmt.Errorf("DEL %d: %v %s", i, err, out)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if out := ruleset(t); strings.Contains(out, "net="+netName+" ") {
		t.Errorf("entries left after 50 parallel ADD/DEL:\n%s", out)
	}
}

// Item 5: IPv6 mappings work beside IPv4 for the same port; an IPv4-only
// container gets no IPv6 rules; link-local sources are never DNATed.
func TestPortmapIPv6(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	br := "lwt" + l.ID + "b6"
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
	prefix := strings.TrimSuffix(l.Subnet6, "::/64")
	v4net := "192.168.254.0/24"
	n := newNetworkList(t, "pm6"+l.ID, []map[string]any{
		{"type": "bridge", "bridge": br, "ipam": map[string]any{"type": "host-local", "dataDir": t.TempDir(),
			"ranges": [][]map[string]any{{{"subnet": v4net, "gateway": "192.168.254.1"}}, {{"subnet": prefix + "::/64", "gateway": prefix + "::1"}}}}},
		{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}},
	})
	a := attach{ID: "v6", Netns: container(t, l), Caps: maps(tcpMap(18480, 80, ""))}
	serveTCP(t, a.Netns, ":80", "dual-stack web")
	n.MustAdd(a)
	// The host's own addresses on the bridge (the plugin made the bridge
	// without a gateway, so nothing on the host routes).
	for _, args := range [][]string{
		{"addr", "add", "192.168.254.1/24", "dev", br},
		{"addr", "add", prefix + "::1/64", "dev", br, "nodad"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	expect(t, "", true, tcpProbe("192.168.254.1:18480"), tcpProbe("["+prefix+"::1]:18480"))
	t.Run("link-local sources are never DNATed", func(t *testing.T) {
		// A client on the bridge with a global and a link-local address.
		client := container(t, l)
		host := "lwt" + l.ID + "v6h"
		for _, args := range [][]string{
			{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", filepath.Base(client)},
			{"link", "set", host, "master", br, "up"},
			{"-n", filepath.Base(client), "addr", "add", prefix + "::50/64", "dev", "eth0", "nodad"},
			{"-n", filepath.Base(client), "link", "set", "eth0", "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v %s", args, err, out)
			}
		}
		waitFor(t, 5*time.Second, "the client's link-local address", func() bool {
			out, _ := nsRun(client, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link", "-tentative")
			return strings.Contains(out, "fe80::")
		})
		var hostLL string
		ifc, _ := net.InterfaceByName(br)
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsLinkLocalUnicast() {
				hostLL = ipn.IP.String()
			}
		}
		if hostLL == "" {
			t.Fatal("the bridge has no link-local address")
		}
		// Control: from its global address the client gets the container.
		expect(t, client, true, tcpProbe("["+prefix+"::1]:18480"))
		// From its link-local address (to the host's), the packet is not
		// DNATed: the host, with nothing listening, refuses it.
		err := linkLocalProbe(hostLL, "18480").run(client)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("a connection from a link-local source to the host's port 18480: %v, want connection refused (not DNATed)", err)
		}
	})
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}

	// An IPv4-only container (hostbridge-dhcp) gets no IPv6 entries.
	g := newPortmapGround(t, nil)
	b := attach{ID: "v4only", Netns: container(t, g.lan), Caps: maps(tcpMap(18481, 80, ""))}
	g.net.MustAdd(b)
	if got := ruleset(t); mappingEntries(t, g.net.Name, b.ID, "18481/tcp") != 1 {
		t.Errorf("want exactly one DNAT entry (IPv4) for an IPv4-only container:\n%s", got)
	}
}
