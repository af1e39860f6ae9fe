package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/bridgeport"
	"github.com/lanwire/lanwire/pkg/forward"
)

// Runtime inputs: the mac capability, CNI_ARGS IP= and the mtu setting.
func TestRuntimeInputs(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, map[string]any{"mtu": 1400, "capabilities": map[string]bool{"mac": true}})
	_, sn, _ := net.ParseCIDR(l.Subnet)
	wantIP := fmt.Sprintf("%d.%d.%d.150", sn.IP[0], sn.IP[1], sn.IP[2])
	a := attach{ID: "inputs", Netns: container(t, l),
		Caps: map[string]any{"mac": "02:42:0a:00:00:99"}, Args: [][2]string{{"IP", wantIP}}}
	res := n.MustAdd(a)
	if got := res.IPs[0].Address.IP.String(); got != wantIP {
		t.Errorf("requested %s, got %s", wantIP, got)
	}
	if got := res.Interfaces[2].Mac; got != "02:42:0a:00:00:99" {
		t.Errorf("MAC: got %s", got)
	}
	out, err := nsRun(a.Netns, "ip", "link", "show", "eth0")
	if err != nil || !strings.Contains(out, "mtu 1400") || !strings.Contains(out, "02:42:0a:00:00:99") {
		t.Errorf("container link: %v\n%s", err, out)
	}
	if _, ok := l.LeaseFor("02:42:0a:00:00:99"); !ok {
		t.Error("dnsmasq holds no lease for the given MAC")
	}
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
}

// STATUS answers when the daemon runs and the bridge is up, and fails with
// code 50 and what to do otherwise. GC releases every lease of the network
// not in the valid list.
func TestStatusAndGC(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	ctx := context.Background()
	if err := n.cni.GetStatusNetworkList(ctx, n.list); err != nil {
		t.Fatalf("STATUS with the daemon up: %v", err)
	}
	keep := attach{ID: "gc-keep", Netns: container(t, l)}
	drop := attach{ID: "gc-drop", Netns: container(t, l)}
	keepMAC := n.MustAdd(keep).Interfaces[2].Mac
	dropMAC := n.MustAdd(drop).Interfaces[2].Mac
	err := n.cni.GCNetworkList(ctx, n.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: keep.ID, IfName: "eth0"}}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	ls := d.Leases()
	if len(ls) != 1 || ls[0].Key.ContainerID != keep.ID {
		t.Errorf("after GC the daemon holds %+v, want only %s", ls, keep.ID)
	}
	waitFor(t, 5*time.Second, "GC's release to reach dnsmasq", func() bool { _, ok := l.LeaseFor(dropMAC); return !ok })
	if _, ok := l.LeaseFor(keepMAC); !ok {
		t.Error("GC released a valid lease")
	}
	d.Stop()
	err = n.cni.GetStatusNetworkList(ctx, n.list)
	te := cniError(t, err)
	if te.Code != 50 || !strings.Contains(te.Msg, "hostbridge-dhcp daemon") {
		t.Errorf("STATUS with the daemon down: code %d %q", te.Code, te.Msg)
	}
	d.Start()
	if err := n.Del(keep); err != nil {
		t.Fatal(err)
	}
}

// A host whose FORWARD chain drops the bridge's frames (Docker's policy
// DROP, simulated with a DROP rule for this bridge only, whose frames cross
// iptables through its own switch) still gets leases: the plugin lets the
// bridge's own traffic through.
func TestForwardDrop(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	crossIPTables(t, l.Bridge)
	d := startDaemon(t)
	drop := []string{"FORWARD", "-i", l.Bridge, "-o", l.Bridge, "-m", "comment", "--comment", "lanwire test: drop " + l.Bridge, "-j", "DROP"}
	if out, err := exec.Command("iptables", append([]string{"-I"}, drop...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("iptables", append([]string{"-D"}, drop...)...).Run() })
	n := newNetwork(t, l, d, map[string]any{"leaseTimeout": "10s"})
	a := attach{ID: "fwd", Netns: container(t, l)}
	start := time.Now()
	res := n.MustAdd(a)
	t.Logf("ADD behind a dropping FORWARD chain took %s", time.Since(start))
	inRange(t, l, res.IPs[0].Address.IP)
	// The rule is written over netlink: iptables must see it as exactly
	// the rule it would write itself (-C compares its own encoding).
	check := append([]string{"-C", "FORWARD"}, forward.Rule(l.Bridge)...)
	if out, err := exec.Command("iptables", check...).CombinedOutput(); err != nil {
		rules, _ := exec.Command("iptables", "-S", "FORWARD").Output()
		t.Errorf("iptables does not recognise lanwire's FORWARD rule (%v %s):\n%s", err, out, rules)
	}
	if out, err := nsRun(a.Netns, "busybox", "ping", "-c", "1", "-W", "2", l.Router); err != nil {
		t.Errorf("container cannot reach the router: %v\n%s", err, out)
	}
	// A second container trusts the rule the first put in; removed by
	// hand, the rule comes back at the daemon's next poll.
	b := attach{ID: "fwd2", Netns: container(t, l)}
	n.MustAdd(b)
	if out, err := exec.Command("iptables", append([]string{"-D", "FORWARD"}, forward.Rule(l.Bridge)...)...).CombinedOutput(); err != nil {
		t.Fatalf("removing the rule by hand: %v %s", err, out)
	}
	waitFor(t, 2*pollInterval+time.Second, "the daemon to put back the FORWARD rule containers need", func() bool {
		return exec.Command("iptables", check...).Run() == nil
	})
	if err := n.Del(b); err != nil {
		t.Fatal(err)
	}
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
	// It stays a while for the next container (see forward.Release), then
	// the daemon removes it.
	waitFor(t, testLinger+2*pollInterval+time.Second, "the daemon to remove the FORWARD rule no container needs", func() bool {
		return exec.Command("iptables", check...).Run() != nil
	})
}

// skipRoutes false copies the host's static routes through the bridge into
// the container; true does not.
func TestBridgeRoutes(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{HostIP: true})
	d := startDaemon(t)
	_, sn, _ := net.ParseCIDR(l.Subnet)
	// A destination beside the LAN's own /24, through the router.
	dst := fmt.Sprintf("%d.%d.%d.0/24", sn.IP[0], sn.IP[1]^0x80, sn.IP[2])
	if err := testlan.CheckSafe(dst); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "route", "add", dst, "via", l.Router, "dev", l.Bridge).CombinedOutput(); err != nil {
		t.Fatalf("host route: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "route", "del", dst, "dev", l.Bridge).Run() })
	for _, skip := range []bool{false, true} {
		n := newNetwork(t, l, d, map[string]any{"skipRoutes": skip})
		a := attach{ID: fmt.Sprintf("routes-%v", skip), Netns: container(t, l)}
		n.MustAdd(a)
		out, _ := nsRun(a.Netns, "ip", "route")
		if has := strings.Contains(out, dst+" via "+l.Router); has == skip {
			t.Errorf("skipRoutes %v: container routes:\n%s", skip, out)
		}
		if err := n.Del(a); err != nil {
			t.Fatal(err)
		}
	}
}

// Two lanwire networks on one LAN bridge, "online" and "offline", are the
// common setup: both ask the LAN's DHCP server, and so does the bridge
// plugin with the dhcp IPAM. Only a network that hands out addresses of
// its own (host-local here) is refused, naming its file; ignoreConflicts
// accepts it.
func TestConflicts(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	l := g.lan
	dir := t.TempDir()
	write := func(name, conf string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	online := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"online","plugins":[{"type":"hostbridge-dhcp","bridge":%q,"daemonSocket":%q,"autoStartDaemon":false}]}`, l.Bridge, g.d.Socket)
	offline := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"offline","plugins":[{"type":"hostbridge-dhcp","bridge":%q,"daemonSocket":%q,"autoStartDaemon":false},{"type":"offline-egress","allow":[{"to":"host","ports":["8000/tcp"]}]}]}`, l.Bridge, g.d.Socket)
	updhcp := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"updhcp","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"dhcp"}}]}`, l.Bridge)
	write("10-online.conflist", online)
	write("20-offline.conflist", offline)
	write("30-updhcp.conflist", updhcp)
	cnitool := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(cnitool, args...)
		cmd.Env = append(append(os.Environ(), "NETCONFPATH="+dir, "CNI_PATH="+binDir+":"+upstreamDir), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	on, off := container(t, l), container(t, l)
	t.Cleanup(func() { _, _ = cnitool(nil, "del", "online", on); _, _ = cnitool(nil, "del", "offline", off) })
	if out, err := cnitool(nil, "add", "online", on); err != nil {
		t.Fatalf("ADD online: %v\n%s", err, out)
	}
	if out, err := cnitool(nil, "add", "offline", off); err != nil {
		t.Fatalf("ADD offline beside online (and bridge+dhcp) on one bridge: %v\n%s", err, out)
	}
	expect(t, on, true, tcpProbe(l.Internet+":80"))
	expectBlocked(t, off, tcpProbe(l.Internet+":80"))
	expect(t, off, true, tcpProbe(l.HostAddr+":8000"))

	// A network handing out addresses of its own on that bridge.
	write("40-hostlocal.conflist", fmt.Sprintf(`{"cniVersion":"1.1.0","name":"hostlocal","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.99.0.0/24"}}]}`, l.Bridge))
	c := container(t, l)
	out, err := cnitool(nil, "add", "online", c)
	if err == nil {
		t.Errorf("ADD accepted a bridge host-local hands addresses out on:\n%s", out)
		_, _ = cnitool(nil, "del", "online", c)
	} else if !strings.Contains(out, `"hostlocal"`) || !strings.Contains(out, "40-hostlocal.conflist") || !strings.Contains(out, "host-local") {
		t.Errorf("the conflict error does not name the network, its file and its IPAM:\n%s", out)
	}
	if got := links(t, c); len(got) != 1 {
		t.Errorf("refused ADD left links: %v", got)
	}
	write("10-online.conflist", strings.Replace(online, `"autoStartDaemon":false`, `"autoStartDaemon":false,"ignoreConflicts":true`, 1))
	if out, err := cnitool(nil, "add", "online", c); err != nil {
		t.Errorf("ignoreConflicts true: %v\n%s", err, out)
	}
	if out, err := cnitool(nil, "del", "online", c); err != nil {
		t.Errorf("DEL: %v\n%s", err, out)
	}
}

// The conflict check reads the config directory only when its files
// changed, and asks Docker once per bridge (the first container), never
// waiting on a dockerd that does not answer.
func TestConflictCheckCost(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	for i := 0; i < 20; i++ {
		conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"unrelated%d","plugins":[{"type":"bridge","bridge":"elsewhere%d","ipam":{"type":"host-local","subnet":"10.98.%d.0/24"}}]}`, i, i, i)
		if err := os.WriteFile(filepath.Join(n.Dir, fmt.Sprintf("%02d-unrelated.conflist", i)), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A dockerd that accepts and never answers.
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var asked atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			asked.Add(1)
			t.Cleanup(func() { c.Close() })
		}
	}()
	dir, opened := straceShimWith(t, "openat", "DOCKER_HOST=unix://"+sock, "NETCONFPATH="+n.Dir)
	shimmed := libcni.NewCNIConfigWithCacheDir([]string{dir}, filepath.Join(t.TempDir(), "cache"), nil)
	reads := func() int {
		n := 0
		for _, line := range opened() {
			if strings.Contains(line, "unrelated.conflist") {
				n++
			}
		}
		return n
	}
	add := func(id string) {
		t.Helper()
		a := attach{ID: id, Netns: container(t, l)}
		if _, err := shimmed.AddNetworkList(t.Context(), n.list, a.rt()); err != nil {
			t.Fatalf("ADD %s: %v", id, err)
		}
		t.Cleanup(func() { _ = n.Del(a) })
	}
	add("cost-1")
	if got := reads(); got != 20 {
		t.Errorf("the first ADD read %d of the 20 config files, want each once", got)
	}
	add("cost-2")
	if got := reads(); got != 0 {
		t.Errorf("the second ADD read %d config files, want none (nothing changed)", got)
	}
	if got := asked.Load(); got != 1 {
		t.Errorf("Docker was asked %d times for two containers on one bridge, want once (the first)", got)
	}
}

// A bridge whose address was not set by hand takes the lowest of its
// ports' addresses: the ports lanwire adds must never be that lowest, or
// the bridge's (and so the host's) address on the LAN would change as
// containers come and go, and neighbours would keep the old one in their
// ARP caches.
func TestBridgeAddressStays(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{HostIP: true})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	addr := func() string {
		ifc, err := net.InterfaceByName(l.Bridge)
		if err != nil {
			t.Fatal(err)
		}
		return ifc.HardwareAddr.String()
	}
	want := addr()
	var as []attach
	for i := range 6 {
		a := attach{ID: fmt.Sprintf("brmac-%d-%s", i, l.ID), Netns: container(t, l)}
		n.MustAdd(a)
		as = append(as, a)
		if got := addr(); got != want {
			t.Fatalf("the bridge's address changed from %s to %s when container %d came", want, got, i)
		}
	}
	for i, a := range as {
		if err := n.Del(a); err != nil {
			t.Fatal(err)
		}
		if got := addr(); got != want {
			t.Fatalf("the bridge's address changed from %s to %s when container %d went", want, got, i)
		}
	}
}

// crossIPTables makes bridge's frames cross the IP hooks (and so iptables)
// through the bridge's own switch, whatever the host's global one says,
// loading br_netfilter if needed (and putting the global switches that
// loading turns on back as they were).
func crossIPTables(t *testing.T, bridge string) {
	t.Helper()
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			t.Fatalf("modprobe br_netfilter: %v %s", err, out)
		}
		for _, s := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
			_ = os.WriteFile("/proc/sys/net/bridge/"+s, []byte("0"), 0o644)
		}
	}
	p := filepath.Join("/sys/class/net", bridge, "bridge", "nf_call_iptables")
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		t.Fatalf("turning on %s: %v", p, err)
	}
}

// DEL retires the container's port (down, off the bridge, renamed) and the
// lease daemon deletes it after DEL answered: the container's interface is
// gone soon after, an ADD of the same container into the same netns right
// after DEL works, and with the daemon down DEL deletes it itself.
func TestDelRetiresPort(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	a := attach{ID: "retire", Netns: container(t, l)}
	host := n.MustAdd(a).Interfaces[1].Name
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/class/net/" + host); err == nil {
		t.Errorf("the port %s is still there under its name after DEL", host)
	}
	waitFor(t, 3*time.Second, "the daemon to delete the retired port", func() bool {
		return !slices.Contains(links(t, a.Netns), "eth0")
	})

	// An ADD of the same container into the same netns while its old port
	// is retired and not yet deleted (as a DEL leaves it; retired by hand
	// here, so that no one has asked the daemon to delete it yet).
	host = n.MustAdd(a).Interfaces[1].Name
	for _, args := range [][]string{
		{"link", "set", host, "down", "nomaster", "group", fmt.Sprint(bridgeport.RetiredGroup)},
		{"link", "set", host, "name", bridgeport.RetiredPrefix + l.ID},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	n.MustAdd(a)
	// DEL and ADD back to back, as `podman restart` does.
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
	res := n.MustAdd(a)
	inRange(t, l, res.IPs[0].Address.IP)
	if out, err := nsRun(a.Netns, "busybox", "ping", "-c", "1", "-W", "2", l.Router); err != nil {
		t.Errorf("the container added right after its DEL cannot reach the router: %v\n%s", err, out)
	}

	d.Stop()
	if err := n.Del(a); err != nil {
		t.Fatalf("DEL with the daemon down: %v", err)
	}
	if slices.Contains(links(t, a.Netns), "eth0") {
		t.Error("with the daemon down, DEL left the container's interface")
	}
	d.Start()
}
