package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanwire/lanwire/pkg/netavark"
)

// runLanwire runs the netavark plugin as netavark does: a subcommand, its
// arguments, JSON on stdin; it returns stdout and whether it exited 0.
func runLanwire(t *testing.T, stdin any, args ...string) ([]byte, bool) {
	t.Helper()
	cmd := exec.Command(plugin("lanwire"), args...)
	if stdin != nil {
		data, _ := json.Marshal(stdin)
		cmd.Stdin = bytes.NewReader(data)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running lanwire %v: %v", args, err)
		}
		return out, false
	}
	return out, true
}

// netavarkError is the message of netavark's error object in out.
func netavarkError(t *testing.T, out []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &e); err != nil || e.Error == "" {
		t.Fatalf("a failure answered %q, not netavark's {\"error\": ...}", out)
	}
	return e.Error
}

// The netavark plugin, driven with the JSON podman and netavark send
// (plugin-API.md), without podman: create checks and completes the
// network, setup attaches a container (lease from the LAN's server, offline
// allowlist, published port), teardown undoes it and releases the lease.
func TestNetavarkReplay(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	l := g.lan

	out, ok := runLanwire(t, nil, "info")
	var info netavark.Info
	if !ok || json.Unmarshal(out, &info) != nil || info.APIVersion != "1.0.0" || info.Version == "" {
		t.Fatalf("info answered %q", out)
	}

	name, id := "lan"+l.ID, strings.Repeat("ab", 32)
	network := map[string]any{
		"name": name, "id": id, "driver": "lanwire", "network_interface": "", "created": "2026-11-30T12:00:00Z",
		"subnets": []any{}, "ipv6_enabled": false, "internal": false, "dns_enabled": true, "ipam_options": map[string]string{},
		"options": map[string]string{"bridge": l.Bridge, "daemonSocket": g.d.Socket, "autoStartDaemon": "false",
			"allow": "host:8000/tcp," + l.Router + "/32:9000/tcp", "logBlocked": "true"},
	}
	out, ok = runLanwire(t, network, "create")
	if !ok {
		t.Fatalf("create refused a good network: %s", out)
	}
	var created map[string]any
	if err := json.Unmarshal(out, &created); err != nil {
		t.Fatalf("create answered %q", out)
	}
	for _, k := range []string{"name", "id", "driver", "created"} {
		if created[k] != network[k] {
			t.Errorf("create changed %s: %v, was %v", k, created[k], network[k])
		}
	}
	if ipam, _ := created["ipam_options"].(map[string]any); ipam["driver"] != "dhcp" {
		t.Errorf("create answered ipam_options %v, want the dhcp driver (podman allocates nothing)", created["ipam_options"])
	}

	for _, bad := range []struct {
		name string
		opts map[string]string
		more map[string]any
		want string
	}{
		{"no bridge", map[string]string{}, nil, "option bridge is missing"},
		{"unknown option", map[string]string{"bridge": l.Bridge, "brige": "x"}, nil, `unknown option "brige"`},
		{"bad value", map[string]string{"bridge": l.Bridge, "spoofCheck": "maybe"}, nil, "spoofCheck"},
		{"bad allow", map[string]string{"bridge": l.Bridge, "allow": "internet:80/tcp"}, nil, "allow entry"},
		{"offline option without allow", map[string]string{"bridge": l.Bridge, "logBlocked": "true"}, nil, "set allow too"},
		{"a subnet", map[string]string{"bridge": l.Bridge}, map[string]any{"subnets": []any{map[string]string{"subnet": "10.9.0.0/24"}}}, "DHCP"},
		{"bad ipv6 mode", map[string]string{"bridge": l.Bridge, "ipv6": "sometimes"}, nil, "ipv6"},
	} {
		n := map[string]any{"name": "bad", "id": id, "driver": "lanwire", "options": bad.opts}
		for k, v := range bad.more {
			n[k] = v
		}
		out, ok := runLanwire(t, n, "create")
		if ok {
			t.Errorf("create accepted %s: %s", bad.name, out)
			continue
		}
		if msg := netavarkError(t, out); !strings.Contains(msg, bad.want) {
			t.Errorf("create with %s said %q, want it to mention %q", bad.name, msg, bad.want)
		}
	}

	netns := container(t, l)
	serveTCP(t, netns, ":80", "netavark web")
	ctr := map[string]any{
		"container_id": strings.Repeat("cd", 32), "container_name": "nv" + l.ID,
		"port_mappings":   []map[string]any{{"container_port": 80, "host_ip": "", "host_port": 18950, "protocol": "tcp", "range": 1}},
		"network":         created,
		"network_options": map[string]any{"aliases": []string{"nv"}, "interface_name": "eth0"},
	}
	out, ok = runLanwire(t, ctr, "setup", netns)
	if !ok {
		t.Fatalf("setup failed: %s", out)
	}
	t.Cleanup(func() { runLanwire(t, ctr, "teardown", netns) })
	var st netavark.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("setup answered %q", out)
	}
	eth0, ok := st.Interfaces["eth0"]
	if !ok || len(eth0.Subnets) == 0 {
		t.Fatalf("setup's status has no eth0 with an address: %s", out)
	}
	ip, _, err := net.ParseCIDR(eth0.Subnets[0].IPNet)
	if err != nil {
		t.Fatalf("setup's address %q: %v", eth0.Subnets[0].IPNet, err)
	}
	inRange(t, l, ip)
	if eth0.Subnets[0].Gateway != l.Router {
		t.Errorf("gateway %q, want the LAN router %s", eth0.Subnets[0].Gateway, l.Router)
	}
	if lease, ok := l.LeaseFor(eth0.MACAddress); !ok || lease.IP != ip.String() {
		t.Errorf("dnsmasq's lease for %s: %+v %v, want %s", eth0.MACAddress, lease, ok, ip)
	} else if lease.Hostname != "nv"+l.ID {
		t.Errorf("dnsmasq saw hostname %q, want the container name", lease.Hostname)
	}
	if !strings.Contains(strings.Join(st.DNSServerIPs, " "), l.Router) {
		t.Errorf("DNS servers %v, want the LAN's (%s)", st.DNSServerIPs, l.Router)
	}
	expect(t, netns, true, tcpProbe(l.HostAddr+":8000"), tcpProbe(l.Router+":9000"))
	expectBlocked(t, netns, tcpProbe(l.Internet+":80"), tcpProbe(l.Router+":9001"), tcpProbe(l.HostAddr+":8001"))
	lanNS := filepath.Join("/var/run/netns", l.LANNS)
	expect(t, lanNS, true, tcpProbe(l.HostAddr+":18950"))
	leases, _ := exec.Command(plugin("hostbridge-dhcp"), "leases", "--socket", g.d.Socket).CombinedOutput()
	if !strings.Contains(string(leases), ip.String()) {
		t.Errorf("hostbridge-dhcp leases does not list the netavark container's %s:\n%s", ip, leases)
	}

	// A second container asking for the same host port: setup fails
	// (after hostbridge-dhcp and offline-egress succeeded) and leaves
	// nothing of it behind.
	second := map[string]any{}
	for k, v := range ctr {
		second[k] = v
	}
	second["container_id"] = strings.Repeat("ef", 32)
	second["container_name"] = "nv2" + l.ID
	netns2 := container(t, l)
	out, ok = runLanwire(t, second, "setup", netns2)
	if ok {
		runLanwire(t, second, "teardown", netns2)
		t.Fatalf("setup took a port another container holds: %s", out)
	}
	if msg := netavarkError(t, out); !strings.Contains(msg, "18950") {
		t.Errorf("setup's refusal %q does not name the port", msg)
	}
	if n := entriesOf(t, name, fmt.Sprint(second["container_id"])); n != 0 {
		t.Errorf("%d firewall entries left by the failed setup", n)
	}
	if ls := g.d.Leases(); len(ls) != 1 {
		t.Errorf("after the failed setup the daemon holds %d leases, want the first container's only: %+v", len(ls), ls)
	}

	out, ok = runLanwire(t, ctr, "teardown", netns)
	if !ok || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("teardown answered %q (ok %v), want nothing", out, ok)
	}
	waitFor(t, 5*time.Second, "teardown's release to reach dnsmasq", func() bool { _, ok := l.LeaseFor(eth0.MACAddress); return !ok })
	if n := entriesOf(t, name, fmt.Sprint(ctr["container_id"])); n != 0 {
		t.Errorf("%d firewall entries of the container left after teardown", n)
	}
	if out, ok := runLanwire(t, ctr, "teardown", netns); !ok {
		t.Errorf("a second teardown failed: %s", out)
	}

}
