package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanwire/lanwire/integration/testlan"
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

	all := []probe{tcpProbe(l.Router + ":9000"), tcpProbe(l.Router + ":9001"), pingProbe(l.Router),
		tcpProbe(l.HostAddr + ":8000"), tcpProbe(l.HostAddr + ":8001"), tcpProbe(gw + ":8001")}
	expect(t, plain.Netns, true, all[:5]...)
	expect(t, off.Netns, true, tcpProbe(l.Router+":9000"), tcpProbe(l.HostAddr+":8000"))
	expect(t, off.Netns, false, tcpProbe(l.Router+":9001"), pingProbe(l.Router), tcpProbe(l.HostAddr+":8001"), tcpProbe(gw+":8001"))
	if err := offNet.Check(off); err != nil {
		t.Errorf("CHECK: %v", err)
	}
}

// With IPv6 in the container and no ip6tables, ADD fails closed with a
// clear error and leaves no rule.
func TestOfflineFailsClosedWithoutIP6tables(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	// A PATH with iptables but no ip6tables.
	pathDir := t.TempDir()
	for _, tool := range []string{"iptables", "iptables-restore", "iptables-save", "ip", "modprobe"} {
		if p, err := exec.LookPath(tool); err == nil {
			_ = os.Symlink(p, filepath.Join(pathDir, tool))
		}
	}
	br := "lwt" + l.ID + "b6"
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
	prefix := strings.TrimSuffix(l.Subnet6, "::/64")
	n := newNetworkList(t, "v6off"+l.ID, []map[string]any{
		{"type": "bridge", "bridge": br, "ipam": map[string]any{"type": "host-local", "dataDir": t.TempDir(),
			"ranges": [][]map[string]any{{{"subnet": "192.168.252.0/24"}}, {{"subnet": prefix + "::/64"}}}}},
		{"type": "offline-egress"},
	})
	c := container(t, l)
	out, errOut, err := runCnitool(t, n, []string{"PATH=" + pathDir + ":/usr/bin:/bin"}, "add", n.Name, c)
	if err == nil {
		t.Fatalf("ADD succeeded without ip6tables for a container with IPv6:\n%s", out)
	}
	if !strings.Contains(out+errOut, "cannot enforce IPv6") {
		t.Errorf("error does not say why:\n%s%s", out, errOut)
	}
	s, _ := exec.Command("iptables-save", "-t", "mangle").Output()
	if strings.Contains(string(s), "net="+n.Name+" ") {
		t.Errorf("failed ADD left rules:\n%s", s)
	}
	if _, errOut, err := runCnitool(t, n, nil, "del", n.Name, c); err != nil {
		t.Errorf("DEL after the failed ADD: %v %s", err, errOut)
	}
}
