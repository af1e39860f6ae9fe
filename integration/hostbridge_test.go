package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/lease"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

func inRange(t *testing.T, l *testlan.LAN, ip net.IP) {
	t.Helper()
	_, sn, _ := net.ParseCIDR(l.Subnet)
	ip4 := ip.To4()
	if ip4 == nil || !sn.Contains(ip4) || ip4[3] < 100 || ip4[3] > 199 {
		t.Fatalf("address %v is not in dnsmasq's range %s .100-.199", ip, l.Subnet)
	}
}

// 1. cnitool add gives an address from the range, the router as gateway and
// dnsmasq's DNS; dnsmasq holds the MAC and hostname. The plugin starts the
// daemon itself (autoStartDaemon's default).
func TestAddWithCnitool(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	dir := t.TempDir()
	sock := filepath.Join(dir, "hb.sock")
	n := newNetworkList(t, "lan"+l.ID, []map[string]any{{
		"type": "hostbridge-dhcp", "bridge": l.Bridge, "daemonSocket": sock, "daemonStateDir": filepath.Join(dir, "state"),
	}})
	t.Cleanup(func() { stopAutoStarted(t, sock) })
	c := container(t, l)

	start := time.Now()
	out, errOut, err := runCnitool(t, n, []string{"CNI_ARGS=HOSTNAME=web1"}, "add", n.Name, c)
	if err != nil {
		t.Fatalf("cnitool add: %v\n%s%s", err, out, errOut)
	}
	t.Logf("cnitool add took %s (daemon auto-started)", time.Since(start))
	var res current.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("result is not JSON: %v\n%s", err, out)
	}
	if len(res.IPs) != 1 {
		t.Fatalf("want one IP, got %s", out)
	}
	inRange(t, l, res.IPs[0].Address.IP)
	if got := res.IPs[0].Gateway.String(); got != l.Router {
		t.Errorf("gateway: got %s, want %s", got, l.Router)
	}
	if len(res.DNS.Nameservers) != 1 || res.DNS.Nameservers[0] != l.Router {
		t.Errorf("DNS: got %v, want [%s]", res.DNS.Nameservers, l.Router)
	}
	if res.DNS.Domain != "lan.test" {
		t.Errorf("DNS domain: got %q, want lan.test", res.DNS.Domain)
	}
	var mac string
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox != "" {
			mac = ifc.Mac
		}
	}
	lease, ok := l.LeaseFor(mac)
	if !ok {
		t.Fatalf("dnsmasq holds no lease for %s:\n%s", mac, l.Log())
	}
	if lease.IP != res.IPs[0].Address.IP.String() || lease.Hostname != "web1" {
		t.Errorf("dnsmasq lease: got %+v, want IP %s hostname web1", lease, res.IPs[0].Address.IP)
	}
	// The address is really on the interface and the LAN answers.
	if out, err := nsRun(c, "busybox", "ping", "-c", "1", "-W", "2", l.Router); err != nil {
		t.Errorf("container cannot ping the router: %v\n%s", err, out)
	}
	if _, errOut, err := runCnitool(t, n, nil, "del", n.Name, c); err != nil {
		t.Fatalf("cnitool del: %v\n%s", err, errOut)
	}
}

// stopAutoStarted ends a daemon the plugin started, by the PID it reports.
func stopAutoStarted(t *testing.T, sock string) {
	d := &daemonProc{t: t, Socket: sock}
	resp, err := d.Call(leaseapi.Request{Method: leaseapi.MethodStatus})
	if err != nil || resp.Status == nil {
		return
	}
	_ = syscall.Kill(resp.Status.PID, syscall.SIGTERM)
	waitFor(t, 10*time.Second, "auto-started daemon to stop", func() bool {
		return syscall.Kill(resp.Status.PID, 0) != nil
	})
}

// 2. DEL removes the veth and the lease; a second DEL, a DEL after the netns
// is gone and a DEL with the daemon stopped all succeed, the last one's
// release going out once the daemon is back.
func TestDelReleases(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)

	t.Run("plain", func(t *testing.T) {
		a := attach{ID: "del-plain", Netns: container(t, l)}
		res := n.MustAdd(a)
		mac, host := res.Interfaces[2].Mac, res.Interfaces[1].Name
		if _, ok := l.LeaseFor(mac); !ok {
			t.Fatalf("no lease in dnsmasq after ADD")
		}
		if err := n.Del(a); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		if got := links(t, a.Netns); len(got) != 1 {
			t.Errorf("container links after DEL: %v, want only lo", got)
		}
		for _, p := range bridgePorts(t, l.Bridge) {
			if p == host {
				t.Errorf("host veth %s still on the bridge", host)
			}
		}
		waitFor(t, 3*time.Second, "dnsmasq to drop the released lease", func() bool { _, ok := l.LeaseFor(mac); return !ok })
		if err := n.Del(a); err != nil {
			t.Errorf("second DEL: %v", err)
		}
		if f := stateFiles(d.StateDir); len(f) != 0 {
			t.Errorf("state files left: %v", f)
		}
	})

	t.Run("netns gone", func(t *testing.T) {
		a := attach{ID: "del-nsgone", Netns: container(t, l)}
		res := n.MustAdd(a)
		mac := res.Interfaces[2].Mac
		if err := l.DeleteContainer(a.Netns); err != nil {
			t.Fatal(err)
		}
		if err := n.Del(a); err != nil {
			t.Fatalf("DEL after netns deletion: %v", err)
		}
		waitFor(t, 5*time.Second, "release of a lease whose netns is gone", func() bool { _, ok := l.LeaseFor(mac); return !ok })
	})

	t.Run("daemon stopped", func(t *testing.T) {
		a := attach{ID: "del-nodaemon", Netns: container(t, l)}
		res := n.MustAdd(a)
		mac := res.Interfaces[2].Mac
		d.Stop()
		if err := n.Del(a); err != nil {
			t.Fatalf("DEL with the daemon stopped: %v", err)
		}
		if got := links(t, a.Netns); len(got) != 1 {
			t.Errorf("container links after DEL: %v, want only lo", got)
		}
		if _, ok := l.LeaseFor(mac); !ok {
			t.Fatalf("lease vanished before the daemon was back; test cannot tell the queued release")
		}
		d.Start()
		waitFor(t, 10*time.Second, "queued release sent by the restarted daemon", func() bool { _, ok := l.LeaseFor(mac); return !ok })
		if ls := d.Leases(); len(ls) != 0 {
			t.Errorf("daemon still holds %d leases", len(ls))
		}
	})
}

// 3. The same container ID added again after DEL gets the same address.
func TestReAddSameAddress(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	a := attach{ID: "readd", Netns: container(t, l)}
	res1 := n.MustAdd(a)
	first := res1.IPs[0].Address.IP.String()
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
	// A fresh netns, as a re-created container has. lanwire's part is the
	// MAC, derived from container ID and ifname; the server gives the
	// address it last gave that MAC.
	a.Netns = container(t, l)
	res2 := n.MustAdd(a)
	second := res2.IPs[0].Address.IP.String()
	if m1, m2 := macOf(t, res1), macOf(t, res2); m1.String() != m2.String() {
		t.Errorf("the re-created container has MAC %s, the first had %s", m2, m1)
	}
	if first != second {
		t.Errorf("re-added container got %s, first had %s", second, first)
	}
	serverHolds(t, l, second, macOf(t, res2).String())
	// Idempotent ADD: a second ADD of the same attachment returns the same
	// result without a second veth.
	again := n.MustAdd(a)
	if again.IPs[0].Address.IP.String() != second {
		t.Errorf("repeated ADD got %s, want %s", again.IPs[0].Address.IP, second)
	}
	if got := links(t, a.Netns); len(got) != 2 {
		t.Errorf("container links after repeated ADD: %v", got)
	}
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
}

// serverHolds checks dnsmasq's lease file (the server's view): ip held for
// mac (an IPv6 address: for any client), expiring a minute or more from now.
func serverHolds(t *testing.T, l *testlan.LAN, ip, mac string) {
	t.Helper()
	data, _ := os.ReadFile(l.LeaseFile)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != ip || (mac != "" && !strings.EqualFold(f[1], mac)) {
			continue
		}
		exp, _ := strconv.ParseInt(f[0], 10, 64)
		if time.Until(time.Unix(exp, 0)) < time.Minute {
			t.Errorf("dnsmasq's lease of %s expires at %s, not in the future", ip, time.Unix(exp, 0).Format(time.RFC3339))
		}
		return
	}
	t.Errorf("dnsmasq's lease file holds no lease of %s for %s:\n%s", ip, mac, data)
}

// dhcpLines returns dnsmasq log lines of kind (e.g. "DHCPACK") for ip.
func dhcpLines(l *testlan.LAN, kind, ip string) []string {
	var out []string
	for _, line := range strings.Split(l.Log(), "\n") {
		if strings.Contains(line, kind+"(") && strings.Contains(line, " "+ip+" ") {
			out = append(out, line)
		}
	}
	return out
}

// 4. With 2-minute leases the lease is renewed at T1 and the address kept
// past the first expiry.
func TestRenewAtT1(t *testing.T) {
	if testing.Short() {
		t.Skip("waits past a 2-minute lease; skipped with -short")
	}
	t.Parallel()
	l := newLAN(t, testlan.Options{LeaseTime: "2m"})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	a := attach{ID: "renew", Netns: container(t, l)}
	added := time.Now()
	res := n.MustAdd(a)
	ip := res.IPs[0].Address.IP.String()
	acks := len(dhcpLines(l, "DHCPACK", ip))
	// T1 is 60 s.
	waitFor(t, 75*time.Second, "the renewal at T1", func() bool { return len(dhcpLines(l, "DHCPACK", ip)) > acks })
	if reqs := dhcpLines(l, "DHCPREQUEST", ip); len(reqs) < 2 {
		t.Errorf("want the renewal REQUEST in dnsmasq's log, got %v", reqs)
	}
	// Past the first expiry (120 s after ADD) the address is still there.
	time.Sleep(time.Until(added.Add(125 * time.Second)))
	out, err := nsRun(a.Netns, "ip", "-4", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(out, ip+"/") {
		t.Fatalf("address %s gone after the first expiry: %v\n%s", ip, err, out)
	}
	if err := n.Check(a); err != nil {
		t.Errorf("CHECK after renewals: %v", err)
	}
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
}

// 5. kill -9 of the daemon holding 50 leases, then a restart: all 50 reloaded
// with the same addresses, listed by `hostbridge-dhcp leases`, and renewed
// at T1 afterwards.
func TestDaemonKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for T1 of a 2-minute lease; skipped with -short")
	}
	t.Parallel()
	l := newLAN(t, testlan.Options{LeaseTime: "2m"})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	const count = 50
	want := map[string]string{} // container ID -> address
	macs := map[string]string{} // container ID -> MAC
	var as []attach
	for i := 0; i < count; i++ {
		a := attach{ID: fmt.Sprintf("kill-%d", i), Netns: container(t, l)}
		as = append(as, a)
		res := n.MustAdd(a)
		want[a.ID], macs[a.ID] = res.IPs[0].Address.IP.String(), macOf(t, res).String()
	}
	d.Kill()
	restarted := time.Now()
	d.Start()
	got := map[string]string{}
	for _, ls := range d.Leases() {
		got[ls.Key.ContainerID] = ls.Info.Address.IP.String()
	}
	for id, ip := range want {
		if got[id] != ip {
			t.Errorf("after restart %s holds %q, want %s", id, got[id], ip)
		}
	}
	out, err := exec.Command(plugin("hostbridge-dhcp"), "leases", "--socket", d.Socket).CombinedOutput()
	if err != nil {
		t.Fatalf("hostbridge-dhcp leases: %v\n%s", err, out)
	}
	for id, ip := range want {
		if !strings.Contains(string(out), id+"/") || !strings.Contains(string(out), ip+"/") {
			t.Errorf("`hostbridge-dhcp leases` lacks %s (%s):\n%s", id, ip, out)
		}
	}
	jsonOut, err := exec.Command(plugin("hostbridge-dhcp"), "leases", "--socket", d.Socket, "--json").Output()
	var list struct {
		Version string `json:"version"`
		Leases  []struct {
			Address      string `json:"address"`
			MAC          string `json:"mac"`
			Expires      string `json:"expires"`
			LeaseSeconds int64  `json:"leaseSeconds"`
		} `json:"leases"`
	}
	if err != nil || json.Unmarshal(jsonOut, &list) != nil || len(list.Leases) != count || list.Version == "" {
		t.Errorf("`leases --json`: %v, %d leases\n%s", err, len(list.Leases), jsonOut)
	}
	// Units a person reads: a CIDR, RFC 3339, seconds.
	for _, x := range list.Leases {
		_, _, cerr := net.ParseCIDR(x.Address)
		_, terr := time.Parse(time.RFC3339, x.Expires)
		if cerr != nil || terr != nil || x.LeaseSeconds != 120 {
			t.Errorf("`leases --json` entry %+v: address %v, expiry %v, lease %d s (want 120)", x, cerr, terr, x.LeaseSeconds)
			break
		}
	}
	// Each is renewed at T1 (60 s after its ADD), after the restart, with
	// no new DISCOVER.
	discovers := strings.Count(l.Log(), "DHCPDISCOVER(")
	waitFor(t, 80*time.Second, fmt.Sprintf("renewal of all %d leases after the restart", count), func() bool {
		for _, ls := range d.Leases() {
			if ls.Acquired.Before(restarted) {
				return false
			}
		}
		return true
	})
	if after := strings.Count(l.Log(), "DHCPDISCOVER("); after != discovers {
		t.Errorf("%d new DISCOVERs after the restart; valid leases should only be renewed", after-discovers)
	}
	for _, ip := range want {
		if acks := dhcpLines(l, "DHCPACK", ip); len(acks) < 2 {
			t.Errorf("no renewal ACK for %s in dnsmasq's log", ip)
		}
	}
	// The server's view, and the containers': each address held by dnsmasq
	// for the container's MAC, renewed (expiring in the future), and on the
	// container's interface.
	for _, a := range as {
		serverHolds(t, l, want[a.ID], macs[a.ID])
		if out, _ := nsRun(a.Netns, "ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, " "+want[a.ID]+"/") {
			t.Errorf("%s's eth0 lacks %s after the restart:\n%s", a.ID, want[a.ID], out)
		}
	}
	for _, a := range as {
		if err := n.Del(a); err != nil {
			t.Error(err)
		}
	}
}

// 6. No DHCP server: ADD fails within leaseTimeout, names the bridge and the
// likely causes, and leaves no veth, lease or state file.
func TestNoDHCPServer(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{NoDHCP: true})
	d := startDaemon(t)
	n := newNetwork(t, l, d, map[string]any{"leaseTimeout": "3s"})
	a := attach{ID: "nodhcp", Netns: container(t, l)}
	portsBefore := bridgePorts(t, l.Bridge)
	start := time.Now()
	_, err := n.Add(a)
	took := time.Since(start)
	if err == nil {
		t.Fatal("ADD succeeded without a DHCP server")
	}
	te := cniError(t, err)
	msg := te.Msg + " " + te.Details
	for _, want := range []string{l.Bridge, "uplink", "STP", "FORWARD"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if took > 3*time.Second+3*time.Second {
		t.Errorf("ADD took %s to fail with leaseTimeout 3s", took)
	}
	if got := links(t, a.Netns); len(got) != 1 {
		t.Errorf("container links after failed ADD: %v", got)
	}
	if got := bridgePorts(t, l.Bridge); len(got) != len(portsBefore) {
		t.Errorf("bridge ports after failed ADD: %v, before %v", got, portsBefore)
	}
	if f := stateFiles(d.StateDir); len(f) != 0 {
		t.Errorf("state files after failed ADD: %v", f)
	}
	if ls := d.Leases(); len(ls) != 0 {
		t.Errorf("daemon holds %d leases after failed ADD", len(ls))
	}
}

// 7. Missing bridge, a non-bridge link and malformed configs get CNI error
// JSON with the right code and a message that says what to fix; nothing is
// created.
func TestBadConfigs(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	c := container(t, l)

	cases := []struct {
		name  string
		extra map[string]any
		args  [][2]string
		code  uint
		want  string
	}{
		{"missing bridge", map[string]any{"bridge": "lwnosuchbr0"}, nil, 7, "does not exist"},
		{"not a bridge", map[string]any{"bridge": l.Uplink}, nil, 7, "not a bridge"},
		{"empty bridge", map[string]any{"bridge": ""}, nil, 7, "\"bridge\" is required"},
		{"bridge wrong type", map[string]any{"bridge": 42}, nil, 7, "bridge"},
		{"bridge name too long", map[string]any{"bridge": "averyveryverylongname"}, nil, 7, "not a valid interface name"},
		{"unknown ipv6 mode", map[string]any{"ipv6": "sometimes"}, nil, 7, "\"ipv6\" must be"},
		{"ipv6 wrong type", map[string]any{"ipv6": true}, nil, 7, "ipv6"},
		{"bad duration", map[string]any{"leaseTimeout": "soon"}, nil, 7, "bad duration"},
		{"duration as number", map[string]any{"leaseTimeout": 20}, nil, 7, "duration"},
		{"duration too short", map[string]any{"leaseTimeout": "1ms"}, nil, 7, "out of range"},
		{"mtu too small", map[string]any{"mtu": 100}, nil, 7, "mtu"},
		{"mtu wrong type", map[string]any{"mtu": "big"}, nil, 7, "mtu"},
		{"bad hostname", map[string]any{"hostname": "web 1!"}, nil, 7, "hostname"},
		{"bad send option", map[string]any{"sendOptions": map[string]any{"nosuchoption": "x"}}, nil, 7, "unknown DHCP option"},
		{"reserved send option", map[string]any{"sendOptions": map[string]any{"53": "x"}}, nil, 7, "set by the client"},
		{"bad request option", map[string]any{"requestOptions": []any{300}}, nil, 7, "out of range"},
		{"negative metric", map[string]any{"routeMetric": -1}, nil, 7, "routeMetric"},
		{"relative socket", map[string]any{"daemonSocket": "hb.sock"}, nil, 7, "absolute path"},
		{"skipRoutes wrong type", map[string]any{"skipRoutes": "yes"}, nil, 7, "skipRoutes"},
		{"bad mac capability", map[string]any{"runtimeConfig": map[string]any{"mac": "zz:zz"}}, nil, 7, "not an Ethernet MAC"},
		{"multicast mac capability", map[string]any{"runtimeConfig": map[string]any{"mac": "01:00:5e:00:00:01"}}, nil, 7, "multicast"},
		{"bad ip capability", map[string]any{"runtimeConfig": map[string]any{"ips": []any{"10.0.0.300"}}}, nil, 7, "not an IP address"},
		{"bad MAC arg", nil, [][2]string{{"MAC", "nope"}}, 4, "CNI_ARGS MAC"},
		{"bad IP arg", nil, [][2]string{{"IP", "nope"}}, 4, "CNI_ARGS IP"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNetwork(t, l, d, tc.extra)
			id := fmt.Sprintf("bad-%d", i)
			_, err := n.Add(attach{ID: id, Netns: c, Args: tc.args})
			if err == nil {
				t.Fatal("ADD succeeded")
			}
			te := cniError(t, err)
			if te.Code != tc.code {
				t.Errorf("code: got %d, want %d (%s)", te.Code, tc.code, te.Msg)
			}
			if !strings.Contains(te.Msg+te.Details, tc.want) {
				t.Errorf("message %q lacks %q", te.Msg, tc.want)
			}
			// The host end this attachment would have had does not exist.
			veth := "lw" + lease.Key{ContainerID: id, Network: n.Name, IfName: "eth0"}.ID()[:10]
			for _, name := range links(t, "") {
				if name == veth {
					t.Errorf("refused ADD left host link %s", veth)
				}
			}
		})
	}
	if got := links(t, c); len(got) != 1 {
		t.Errorf("container links after bad configs: %v", got)
	}
	if ls := d.Leases(); len(ls) != 0 {
		t.Errorf("daemon holds %d leases", len(ls))
	}
}

// 8. CHECK passes after ADD, fails with a message once the address is
// removed by hand, and never acquires a lease.
func TestCheck(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	a := attach{ID: "check", Netns: container(t, l)}
	res := n.MustAdd(a)
	if err := n.Check(a); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	addr := res.IPs[0].Address.String()
	if out, err := nsRun(a.Netns, "ip", "addr", "del", addr, "dev", "eth0"); err != nil {
		t.Fatalf("removing address: %v %s", err, out)
	}
	before := strings.Count(l.Log(), "DHCPDISCOVER(") + strings.Count(l.Log(), "DHCPREQUEST(")
	err := n.Check(a)
	if err == nil {
		t.Fatal("CHECK passed with the address removed")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("CHECK error %q does not name the missing address %s", err, addr)
	}
	// A CHECK for an attachment the daemon does not know fails and does not
	// acquire: copy the cached result under another container ID.
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
	b := attach{ID: "check-unknown", Netns: container(t, l)}
	if err := n.cni.CheckNetworkList(t.Context(), n.list, b.rt()); err == nil {
		t.Error("CHECK of an unknown attachment passed")
	}
	time.Sleep(500 * time.Millisecond)
	after := strings.Count(l.Log(), "DHCPDISCOVER(") + strings.Count(l.Log(), "DHCPREQUEST(")
	if after != before {
		t.Errorf("CHECK sent DHCP packets (%d before, %d after)", before, after)
	}
	if got := links(t, b.Netns); len(got) != 1 {
		t.Errorf("CHECK created links: %v", got)
	}
}

// 9. The socket is 0600, and a client running as another user is refused,
// by the file mode and, should the mode be loosened, by the daemon itself.
func TestSocketPermissions(t *testing.T) {
	t.Parallel()
	// A directory everyone may traverse: only the daemon can refuse.
	dir, err := os.MkdirTemp("", "lanwire-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, filepath.Join(dir, "hb.sock"), "")
	st, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %o, want 600", st.Mode().Perm())
	}
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 0 {
		t.Errorf("socket owned by uid %d, want root", s.Uid)
	}
	leases := func(uid uint32) (string, error) {
		cmd := exec.Command(plugin("hostbridge-dhcp"), "leases", "--socket", d.Socket)
		if uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := leases(65534); err == nil {
		t.Errorf("uid 65534 listed leases through a 0600 socket:\n%s", out)
	}
	// The file mode loosened, the daemon's own check refuses, and says so.
	if err := os.Chmod(d.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	out, err := leases(65534)
	if err == nil {
		t.Errorf("uid 65534 was served:\n%s", out)
	}
	if !strings.Contains(out, "permission denied: only root may use the lease daemon") {
		t.Errorf("the refusal is not the daemon's: %s", out)
	}
	waitFor(t, 2*time.Second, "the daemon's log of the refusal", func() bool {
		b, _ := os.ReadFile(d.LogPath)
		return strings.Contains(string(b), "refused connection from uid 65534")
	})
	if out, err := leases(0); err != nil {
		t.Errorf("root was not served: %v %s", err, out)
	}
}

// 10. 20 parallel ADDs on one bridge: 20 distinct addresses and no errors;
// 20 parallel DELs leave no link, lease or state file.
func TestParallelAddDel(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	const count = 20
	as := make([]attach, count)
	for i := range as {
		as[i] = attach{ID: fmt.Sprintf("par-%02d", i), Netns: container(t, l)}
	}
	addrs := make([]string, count)
	macs := make([]string, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range as {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := n.Add(as[i])
			if err == nil {
				addrs[i], macs[i] = r.IPs[0].Address.IP.String(), r.Interfaces[2].Mac
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	t.Logf("%d parallel ADDs took %s", count, time.Since(start))
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("ADD %d: %v", i, err)
			continue
		}
		if seen[addrs[i]] {
			t.Errorf("address %s handed out twice", addrs[i])
		}
		seen[addrs[i]] = true
	}
	for i := range as {
		wg.Add(1)
		go func(i int) { defer wg.Done(); errs[i] = n.Del(as[i]) }(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("DEL %d: %v", i, err)
		}
	}
	if ports := bridgePorts(t, l.Bridge); len(ports) != 1 {
		t.Errorf("bridge ports after DELs: %v, want only the uplink", ports)
	}
	waitFor(t, 5*time.Second, "dnsmasq to drop all 20 leases", func() bool {
		for _, m := range macs {
			if _, ok := l.LeaseFor(m); ok && m != "" {
				return false
			}
		}
		return true
	})
	if f := stateFiles(d.StateDir); len(f) != 0 {
		t.Errorf("state files left: %v", f)
	}
}
