package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"os/exec"

	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/guard"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// With another process holding the firewall's lock, ADD fails after its
// bounded wait with error 11 and leaves nothing; it never hangs. (Not
// parallel: the lock is the host's.)
func TestLockHeldFailsTryAgain(t *testing.T) {
	g := newOfflineGround(t, "2m")
	n := g.network(t, "lock", g.offlineConf())
	lock := filepath.Join(guard.Dir, "lock")
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	release := time.AfterFunc(8*time.Second, func() { f.Close() })
	defer func() { release.Stop(); f.Close() }()
	a := attach{ID: "locked", Netns: container(t, g.lan)}
	start := time.Now()
	_, err = n.Add(a)
	took := time.Since(start)
	te := cniError(t, err)
	if te.Code != 11 {
		t.Errorf("code %d (%s), want 11 (try again later)", te.Code, te.Msg)
	}
	if took > 7*time.Second {
		t.Errorf("ADD waited %s for the lock; the wait is bounded at 5s", took)
	}
	t.Logf("ADD gave up after %s: %s", took.Round(10*time.Millisecond), te.Msg)
	if n := entriesOf(t, n.Name, a.ID); n != 0 {
		t.Errorf("the failed ADD left %d firewall entries", n)
	}
	if ports := bridgePorts(t, g.lan.Bridge); len(ports) != 1 {
		t.Errorf("the failed ADD left bridge ports: %v", ports)
	}
}

// 100 ADD/DEL cycles through the full chain, 10 at a time: no error, and no
// link, rule, lease or state file left.
func TestChurnFullChain(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	n := g.network(t, "churn", g.offlineConf(), map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}})
	const cycles, width = 100, 10
	errs := make(chan error, 2*cycles)
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < cycles; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			netns, err := g.lan.NewContainer()
			if err != nil {
				errs <- err
				return
			}
			a := attach{ID: fmt.Sprintf("churn-%d", i), Netns: netns,
				Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": 21000 + i, "containerPort": 80, "protocol": "tcp"}}}}
			if _, err := n.Add(a); err != nil {
				errs <- fmt.Errorf("ADD %d: %w", i, err)
			}
			if err := n.Del(a); err != nil {
				errs <- fmt.Errorf("DEL %d: %w", i, err)
			}
			_ = g.lan.DeleteContainer(netns)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d ADD/DEL cycles, %d at a time, took %s", cycles, width, time.Since(start).Round(time.Millisecond))
	if ports := bridgePorts(t, g.lan.Bridge); len(ports) != 1 {
		t.Errorf("bridge ports left: %v", ports)
	}
	if out := ruleset(t); strings.Contains(out, "net="+n.Name+" ") {
		t.Errorf("firewall entries left:\n%s", out)
	}
	waitFor(t, 5*time.Second, "dnsmasq to hold no lease", func() bool { ls, _ := g.lan.Leases(); return len(ls) == 0 })
	if f := stateFiles(g.d.StateDir); len(f) != 0 {
		t.Errorf("state files left: %v", f)
	}
}

// A netns deleted without DEL: the daemon notices, releases and drops the
// lease; after 200 such cycles its goroutines and open files are back
// where they started.
func TestNetnsVanishCycles(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{Wide: true})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	status := func() *leaseapi.Status {
		resp, err := d.Call(leaseapi.Request{Method: leaseapi.MethodStatus})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	fds := func() int {
		es, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
		return len(es)
	}
	time.Sleep(500 * time.Millisecond)
	g0, f0 := status().Goroutines, fds()
	const batch, rounds = 50, 4
	for r := 0; r < rounds; r++ {
		var netnses []string
		for i := 0; i < batch; i++ {
			a := attach{ID: fmt.Sprintf("vanish-%d-%d", r, i), Netns: container(t, l)}
			if _, err := n.Add(a); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			netnses = append(netnses, a.Netns)
		}
		for _, p := range netnses {
			if err := l.DeleteContainer(p); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 60*time.Second, "the daemon to drop the leases of vanished namespaces", func() bool { return status().Leases == 0 })
	}
	waitFor(t, 10*time.Second, "dnsmasq to hold no lease", func() bool { ls, _ := l.Leases(); return len(ls) == 0 })
	time.Sleep(500 * time.Millisecond)
	g1, f1 := status().Goroutines, fds()
	t.Logf("after %d vanished namespaces: goroutines %d -> %d, open files %d -> %d", batch*rounds, g0, g1, f0, f1)
	if g1 > g0+2 || f1 > f0+2 {
		t.Errorf("the daemon leaks: goroutines %d -> %d, open files %d -> %d", g0, g1, f0, f1)
	}
	if files := stateFiles(d.StateDir); len(files) != 0 {
		t.Errorf("state files left: %d", len(files))
	}
}

// Daemon API: oversized and malformed requests are answered with an error,
// 1,000 connections that never send hold no one up, and memory stays bounded.
func TestDaemonAPIHostile(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	raw := func(payload string) string {
		c, err := net.DialTimeout("unix", d.Socket, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { _, _ = c.Write([]byte(payload)) }()
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for name, p := range map[string]string{
		"oversized":     strings.Repeat("x", leaseapi.MaxMessage+100) + "\n",
		"malformed":     "{not json\n",
		"wrong version": `{"version":99,"method":"list"}` + "\n",
		"unknown":       `{"version":1,"method":"format-disk"}` + "\n",
	} {
		if got := raw(p); !strings.Contains(got, `"error"`) {
			t.Errorf("%s request: answer %q, want an error", name, got)
		}
	}
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 1000; i++ {
		c, err := net.Dial("unix", d.Socket)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := leaseapi.Call(ctx, d.Socket, leaseapi.Request{Method: leaseapi.MethodStatus}); err != nil {
		t.Fatalf("a real client beside 1,000 idle ones: %v", err)
	}
	t.Logf("status answered in %s beside 1,000 idle connections", time.Since(start).Round(time.Millisecond))
	rss, _ := procStat(d.cmd.Process.Pid)
	if rss > 64 {
		t.Errorf("daemon RSS %.1f MiB with 1,000 idle connections", rss)
	}
}

func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}

// The server moves the range to another subnet and gateway: at the next
// renewal it NAKs, and the container follows within T1 + 10 s: new address
// and gateway applied, old ones removed.
func TestRangeMove(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{DnsmasqArgs: []string{"--dhcp-option=option:T1,10", "--dhcp-option=option:T2,20"}})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	a := attach{ID: "move", Netns: container(t, l)}
	res := n.MustAdd(a)
	old := res.IPs[0].Address.String()
	if err := l.MoveRange(); err != nil {
		t.Fatal(err)
	}
	_, newNet, _ := net.ParseCIDR(l.Subnet)
	start := time.Now()
	var addrs string
	waitFor(t, 10*time.Second+10*time.Second, "the container to move to "+l.Subnet, func() bool {
		addrs, _ = nsRun(a.Netns, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		for _, f := range strings.Fields(addrs) {
			if ip, _, err := net.ParseCIDR(f); err == nil && newNet.Contains(ip) {
				return true
			}
		}
		return false
	})
	t.Logf("followed the move %s after it", time.Since(start).Round(time.Second))
	if strings.Contains(addrs, old) {
		t.Errorf("old address %s still on the interface:\n%s", old, addrs)
	}
	routes, _ := nsRun(a.Netns, "ip", "-4", "route", "show", "default")
	if !strings.Contains(routes, "via "+l.Router) {
		t.Errorf("default route not through the new router %s:\n%s", l.Router, routes)
	}
	if !strings.Contains(l.Log(), "DHCPNAK") {
		t.Error("dnsmasq logged no NAK for the old address")
	}
	if err := n.Check(a); err == nil {
		t.Error("CHECK passed although the address changed from prevResult's")
	}
}

// DHCP server outages, with 2-minute leases (T1 60 s, T2 105 s):
// stopped past T1 and T2 but back before expiry, no address is dropped and
// the lease is rebound; stopped past expiry, the address and its routes go,
// and the old address is asked for again and restored when it returns.
func TestServerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("waits through two 2-minute leases; skipped with -short")
	}
	t.Parallel()
	l := newLAN(t, testlan.Options{LeaseTime: "2m"})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	a := attach{ID: "outage", Netns: container(t, l)}
	t0 := time.Now()
	res := n.MustAdd(a)
	ip := res.IPs[0].Address.IP.String()
	hasAddr := func() bool {
		out, _ := nsRun(a.Netns, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		return strings.Contains(out, " "+ip+"/")
	}
	acquired := func() time.Time {
		for _, ls := range d.Leases() {
			if ls.Key.ContainerID == a.ID {
				return ls.Acquired
			}
		}
		return time.Time{}
	}

	// Phase 1: out from 5 s to 110 s (past T1 and T2, before expiry at 120 s).
	time.Sleep(time.Until(t0.Add(5 * time.Second)))
	l.StopDHCP()
	time.Sleep(time.Until(t0.Add(110 * time.Second)))
	if !hasAddr() {
		t.Fatalf("address %s dropped before its lease expired", ip)
	}
	logBefore := len(l.Log())
	if err := l.StartDHCP(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	waitFor(t, 15*time.Second, "the lease to be rebound once the server is back", func() bool { return acquired().After(back) })
	if !strings.Contains(l.Log()[logBefore:], "DHCPREQUEST(eth0) "+ip) {
		t.Errorf("no REQUEST for %s in the server log after it came back", ip)
	}
	if !hasAddr() {
		t.Fatalf("address %s gone after the rebind", ip)
	}

	// Phase 2: out past expiry.
	t1 := acquired()
	l.StopDHCP()
	waitFor(t, 135*time.Second-time.Since(t1), "the expired address to be removed", func() bool { return !hasAddr() })
	if time.Since(t1) < 119*time.Second {
		t.Errorf("address removed %s after the last renewal, before its 2-minute lease expired", time.Since(t1).Round(time.Second))
	}
	routes, _ := nsRun(a.Netns, "ip", "-4", "route", "show", "default")
	if strings.TrimSpace(routes) != "" {
		t.Errorf("default route kept after expiry: %s", routes)
	}
	// (Where the log stood before the server starts: the daemon, asking
	// every few seconds, may be answered before a read after the start.)
	logBefore = len(l.Log())
	if err := l.StartDHCP(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the old address to be restored", hasAddr)
	// Asked for by the daemon (option 50, which dnsmasq logs in the
	// DISCOVER line), not only remembered by the server.
	if !strings.Contains(l.Log()[logBefore:], "DHCPDISCOVER(eth0) "+ip+" ") {
		t.Errorf("the DISCOVER after the outage did not ask for %s:\n%s", ip, l.Log()[logBefore:])
	}
	routes, _ = nsRun(a.Netns, "ip", "-4", "route", "show", "default")
	if !strings.Contains(routes, "via "+l.Router) {
		t.Errorf("default route not restored: %s", routes)
	}
	if err := n.Check(a); err != nil {
		t.Errorf("CHECK after the address came back: %v", err)
	}
}
