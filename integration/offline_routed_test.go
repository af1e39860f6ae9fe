package integration

import (
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/guard"
)

// restoreSysctl puts a global sysctl back to its value at the test's start
// (the upstream bridge plugin turns on IPv4 forwarding for isGateway).
func restoreSysctl(t *testing.T, path string) {
	old, err := os.ReadFile(path)
	if err != nil {
		return
	}
	t.Cleanup(func() { _ = os.WriteFile(path, old, 0o644) })
}

// offline-egress after the upstream bridge plugin with isGateway: the
// container's traffic is routed by the host, and the same rules hold.
func TestOfflineRouted(t *testing.T) {
	t.Parallel()
	restoreSysctl(t, "/proc/sys/net/ipv4/ip_forward")
	l := newLAN(t, testlan.Options{HostIP: true})
	lanNS := filepath.Join("/var/run/netns", l.LANNS)
	serveTCP(t, lanNS, ":9000", "router 9000")
	serveTCP(t, lanNS, ":9001", "router 9001")
	serveTCP(t, "", l.HostAddr+":8000", "mirror")
	serveTCP(t, "", l.HostAddr+":8001", "host 8001")

	_, sn, _ := net.ParseCIDR(l.Subnet)
	routed := fmt.Sprintf("%d.%d.%d.0/24", sn.IP[0], sn.IP[1]^0x20, sn.IP[2])
	if err := testlan.CheckSafe(routed); err != nil {
		t.Fatal(err)
	}
	gw := fmt.Sprintf("%d.%d.%d.1", sn.IP[0], sn.IP[1]^0x20, sn.IP[2])
	br := "lwt" + l.ID + "rb"
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
	if out, err := exec.Command("ip", "-n", l.LANNS, "route", "add", routed, "via", l.HostAddr).CombinedOutput(); err != nil {
		t.Fatalf("route back to the routed subnet: %v %s", err, out)
	}
	dataDir := t.TempDir()
	bridgeConf := func(start, end int) map[string]any {
		return map[string]any{"type": "bridge", "bridge": br, "isGateway": true, "ipMasq": false,
			"ipam": map[string]any{"type": "host-local", "dataDir": dataDir,
				"routes": []map[string]any{{"dst": "0.0.0.0/0"}}, "ranges": [][]map[string]any{{{
					"subnet": routed, "gateway": gw,
					"rangeStart": fmt.Sprintf("%d.%d.%d.%d", sn.IP[0], sn.IP[1]^0x20, sn.IP[2], start),
					"rangeEnd":   fmt.Sprintf("%d.%d.%d.%d", sn.IP[0], sn.IP[1]^0x20, sn.IP[2], end)}}}}}
	}
	plainNet := newNetworkList(t, "rplain"+l.ID, []map[string]any{bridgeConf(10, 19)})
	offNet := newNetworkList(t, "roff"+l.ID, []map[string]any{bridgeConf(20, 29), {
		"type": "offline-egress", "allow": []map[string]any{
			{"to": "host", "ports": []string{"8000/tcp"}},
			{"to": l.Router + "/32", "ports": []string{"9000/tcp"}},
		}}})
	plain := attach{ID: "rplain", Netns: container(t, l)}
	off := attach{ID: "roff", Netns: container(t, l)}
	plainNet.MustAdd(plain)
	offNet.MustAdd(off)
	t.Cleanup(func() { _ = plainNet.Del(plain); _ = offNet.Del(off) })

	// The gateway's address exists once the bridge plugin gave it to the bridge.
	serveTCP(t, "", gw+":8001", "gateway 8001")
	blocked := []probe{tcpProbe(l.Router + ":9001"), pingProbe(l.Router), tcpProbe(l.HostAddr + ":8001"), tcpProbe(gw + ":8001")}
	allowed := []probe{tcpProbe(l.Router + ":9000"), tcpProbe(l.HostAddr + ":8000")}
	expect(t, plain.Netns, true, append(blocked, allowed...)...)
	expect(t, off.Netns, true, allowed...)
	expectBlocked(t, off.Netns, blocked...)
	if err := offNet.Check(off); err != nil {
		t.Errorf("CHECK: %v", err)
	}

	// A port whose index entry is missing, as a kill -9 of an ADD between
	// the port's record and its index entry leaves it: DEL finds the port
	// through prevResult and removes its entries. (The entry's name is
	// guard's: a hash of network and container ID.)
	crashed := attach{ID: "rcrash", Netns: container(t, l)}
	offNet.MustAdd(crashed)
	sum := sha256.Sum256([]byte(offNet.Name + "\x00" + crashed.ID))
	if err := os.Remove(filepath.Join(guard.Dir, "ids", hex.EncodeToString(sum[:12]))); err != nil {
		t.Fatalf("removing the container's index entry: %v", err)
	}
	if err := offNet.Del(crashed); err != nil {
		t.Fatalf("DEL without an index entry: %v", err)
	}
	if n := entriesOf(t, offNet.Name, crashed.ID); n != 0 {
		t.Errorf("DEL of a port without an index entry left %d entries", n)
	}

	// A container whose netns went away without a DEL (a runtime that
	// crashed): the GC of any lanwire network forgets its port, and only it.
	gone := attach{ID: "rgone", Netns: container(t, l)}
	offNet.MustAdd(gone)
	if entriesOf(t, offNet.Name, gone.ID) == 0 {
		t.Fatal("the container's port has no entries: the check below proves nothing")
	}
	if err := l.DeleteContainer(gone.Netns); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the container's veth to go with its netns", func() bool {
		p, err := guard.Find(offNet.Name, gone.ID)
		if err != nil || p == nil {
			return false
		}
		_, err = os.Stat("/sys/class/net/" + p.IfName)
		return err != nil
	})
	other := newNetworkList(t, "rother"+l.ID, []map[string]any{bridgeConf(30, 39), {"type": "offline-egress"}})
	if err := other.cni.GCNetworkList(t.Context(), other.list, &libcni.GCArgs{}); err != nil {
		t.Fatalf("GC of another network: %v", err)
	}
	if n := entriesOf(t, offNet.Name, gone.ID); n != 0 {
		t.Errorf("%d entries of the vanished container's port are left after GC", n)
	}
	if p, _ := guard.Find(offNet.Name, gone.ID); p != nil {
		t.Errorf("the vanished container's port record is left after GC: %+v", p)
	}
	if entriesOf(t, offNet.Name, off.ID) == 0 {
		t.Error("GC took away the entries of a live container")
	}
	expectBlocked(t, off.Netns, blocked...)
}

// offline-egress guards a container at its bridge port; given a host veth
// that is on no bridge, it fails closed with a clear error (7) and leaves
// nothing.
func TestOfflineRefusesUnbridgedPort(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	c := container(t, l)
	host := "lwt" + l.ID + "nb"
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	if out, err := exec.Command("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", filepath.Base(c)).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v %s", err, out)
	}
	name := "unbridged" + l.ID
	conf := map[string]any{"cniVersion": "1.1.0", "name": name, "type": "offline-egress",
		"prevResult": map[string]any{"cniVersion": "1.1.0",
			"interfaces": []map[string]any{{"name": host}, {"name": "eth0", "mac": "02:00:00:00:00:09", "sandbox": c}},
			"ips":        []map[string]any{{"address": "192.168.250.9/24", "interface": 1}}}}
	out, err := runPlugin(t, "offline-egress", "ADD", "unbridged", c, conf)
	if err == nil {
		t.Fatalf("ADD guarded a port on no bridge:\n%s", out)
	}
	var e struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	_ = json.Unmarshal(out, &e)
	if e.Code != 7 || !strings.Contains(e.Msg, "not a bridge port") {
		t.Errorf("got %s, want error 7 saying the veth is not a bridge port", out)
	}
	if n := entriesOf(t, name, "unbridged"); n != 0 {
		t.Errorf("the failed ADD left %d entries", n)
	}
}
