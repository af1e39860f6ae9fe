package integration

import (
	"context"
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
// DROP, simulated with a DROP rule for this bridge only) still gets leases:
// the plugin lets the bridge's own traffic through.
func TestForwardDrop(t *testing.T) {
	t.Parallel()
	if v, _ := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); strings.TrimSpace(string(v)) != "1" {
		t.Skipf("net.bridge.bridge-nf-call-iptables is %q here, not 1: bridged frames do not cross FORWARD, nothing to test", strings.TrimSpace(string(v)))
	}
	l := newLAN(t, testlan.Options{})
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
	out, _ := exec.Command("iptables", "-S", "FORWARD").Output()
	if !strings.Contains(string(out), "lanwire hostbridge-dhcp") {
		t.Errorf("no lanwire FORWARD rule:\n%s", out)
	}
	if out, err := nsRun(a.Netns, "busybox", "ping", "-c", "1", "-W", "2", l.Router); err != nil {
		t.Errorf("container cannot reach the router: %v\n%s", err, out)
	}
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
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

// ignoreConflicts false refuses a bridge another network in the config
// directory manages with its own IPAM; true accepts it.
func TestConflicts(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	for _, ignore := range []bool{false, true} {
		n := newNetwork(t, l, d, map[string]any{"ignoreConflicts": ignore})
		other := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.99.0.0/24"}}]}`, l.Bridge)
		if err := os.WriteFile(filepath.Join(n.Dir, "other.conflist"), []byte(other), 0o644); err != nil {
			t.Fatal(err)
		}
		c := container(t, l)
		out, errOut, err := runCnitool(t, n, nil, "add", n.Name, c)
		if !ignore {
			if err == nil {
				t.Errorf("ADD accepted a bridge managed by another network:\n%s", out)
			} else if !strings.Contains(out+errOut, "already used by CNI network \"other\"") {
				t.Errorf("conflict error does not name the other network:\n%s%s", out, errOut)
			}
			if got := links(t, c); len(got) != 1 {
				t.Errorf("refused ADD left links: %v", got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ignoreConflicts true: %v\n%s%s", err, out, errOut)
		}
		if _, errOut, err := runCnitool(t, n, nil, "del", n.Name, c); err != nil {
			t.Errorf("DEL: %v %s", err, errOut)
		}
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
