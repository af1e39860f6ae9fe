package integration

import (
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/containernetworking/cni/libcni"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// BenchmarkCompare measures lanwire and the upstream plugins in the same
// run on the same test LAN and writes a table and bench.json (run it with
// `make bench`). Knobs: LANWIRE_BENCH_N (containers per latency run, 50),
// LANWIRE_BENCH_GROWTH (500), LANWIRE_BENCH_LEASES (1000),
// LANWIRE_BENCH_JSON (where the JSON goes).
func BenchmarkCompare(b *testing.B) {
	for i := 0; i < b.N; i++ {
		compare(b)
	}
}

func knob(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// row is one line of the report.
type row struct {
	Metric   string  `json:"metric"`
	Unit     string  `json:"unit"`
	Lanwire  float64 `json:"lanwire"`
	Upstream float64 `json:"upstream,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
}

type report struct {
	Upstream string `json:"upstreamVersion"`
	Rows     []row  `json:"rows"`
}

func (r *report) add(metric, unit string, ours, theirs float64, target string, met *bool) {
	x := row{Metric: metric, Unit: unit, Lanwire: round(ours), Upstream: round(theirs), Target: target, Met: met}
	if theirs > 0 {
		x.Ratio = round(ours / theirs)
	}
	r.Rows = append(r.Rows, x)
}

func round(f float64) float64      { return float64(int64(f*100+0.5)) / 100 }
func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func flag(ok bool) *bool           { return &ok }

// upstreamChains lists the CNI-* chains of the upstream plugins.
func upstreamChains() map[string]bool {
	out := map[string]bool{}
	for _, table := range []string{"filter", "nat"} {
		s, _ := exec.Command("iptables-save", "-t", table).Output()
		for _, l := range strings.Split(string(s), "\n") {
			if strings.HasPrefix(l, ":CNI-") {
				out[table+" "+strings.Fields(l[1:])[0]] = true
			}
		}
	}
	return out
}

// removeUpstreamChains removes the CNI-* chains the upstream plugins left
// (they keep their top-level chains after the last DEL) that were not there
// before the run, and the jumps to them.
func removeUpstreamChains(before map[string]bool) {
	for key := range upstreamChains() {
		if before[key] {
			continue
		}
		table, chain, _ := strings.Cut(key, " ")
		s, _ := exec.Command("iptables", "-t", table, "-S").Output()
		for _, l := range strings.Split(string(s), "\n") {
			if strings.HasPrefix(l, "-A ") && strings.HasSuffix(l, "-j "+chain) {
				f := testlan.SplitRule(strings.TrimPrefix(l, "-A "))
				_ = exec.Command("iptables", append([]string{"-t", table, "-D"}, f...)...).Run()
			}
		}
		_ = exec.Command("iptables", "-t", table, "-F", chain).Run()
	}
	for key := range upstreamChains() {
		if !before[key] {
			table, chain, _ := strings.Cut(key, " ")
			_ = exec.Command("iptables", "-t", table, "-X", chain).Run()
		}
	}
}

// run attaches count containers one at a time (then detaches them),
// returning each ADD's and DEL's time.
func run(b *testing.B, l *testlan.LAN, n *network, count, offset int, mapping bool) (adds, dels []time.Duration) {
	as := make([]attach, count)
	for i := range as {
		as[i] = attach{ID: fmt.Sprintf("%s-%d", n.Name, i), Netns: container(b, l)}
		if mapping {
			as[i].Caps = map[string]any{"portMappings": []map[string]any{{"hostPort": offset + i, "containerPort": 80, "protocol": "tcp"}}}
		}
	}
	settle()
	for _, a := range as {
		start := time.Now()
		if _, err := n.Add(a); err != nil {
			b.Fatalf("%s ADD: %v", n.Name, err)
		}
		adds = append(adds, time.Since(start))
	}
	for _, a := range as {
		start := time.Now()
		if err := n.Del(a); err != nil {
			b.Fatalf("%s DEL: %v", n.Name, err)
		}
		dels = append(dels, time.Since(start))
		_ = l.DeleteContainer(a.Netns)
	}
	return adds, dels
}

// pair attaches count containers to a and count to c, in turns (a, c, a,
// c...), then detaches them, and returns each network's ADD times.
func pair(b *testing.B, l *testlan.LAN, a, c *network, count, offset int) (aAdds, cAdds []time.Duration) {
	nets := []*network{a, c}
	as := make([][]attach, 2)
	for k, n := range nets {
		for i := 0; i < count; i++ {
			as[k] = append(as[k], attach{ID: fmt.Sprintf("%s-%d", n.Name, i), Netns: container(b, l),
				Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": offset + 2*i + k, "containerPort": 80, "protocol": "tcp"}}}})
		}
	}
	adds := make([][]time.Duration, 2)
	settle()
	for i := 0; i < count; i++ {
		for k, n := range nets {
			start := time.Now()
			if _, err := n.Add(as[k][i]); err != nil {
				b.Fatalf("%s ADD: %v", n.Name, err)
			}
			adds[k] = append(adds[k], time.Since(start))
		}
	}
	for i := 0; i < count; i++ {
		for k, n := range nets {
			if err := n.Del(as[k][i]); err != nil {
				b.Fatalf("%s DEL: %v", n.Name, err)
			}
			_ = l.DeleteContainer(as[k][i].Netns)
		}
	}
	return adds[0], adds[1]
}

// growthRun is what grow measured.
type growthRun struct {
	low, high []time.Duration // ADDs of the first 20 (and of 19 more after the others went), of the last 20
	alone     [2]float64      // tcp from the first container alone: before the others came, after they went
	beside    float64         // tcp from the first container beside all the others
}

// ratio is the p50 of the last 20 ADDs over the p50 of the first ones.
func (g growthRun) ratio() float64 {
	return percentile(g.high, .5).Seconds() / percentile(g.low, .5).Seconds()
}

// grow attaches count containers to n one at a time, then detaches all
// but the first, attaches 19 more and detaches everything. The first 20
// ADDs and the 19 after the others went are the "low" ones: taken before
// and after the last 20, they keep a slower stretch of this machine out of
// the ratio. tcp, when not nil, measures from the first container before
// the others came, beside them and after they went, each on a settled host.
func grow(b *testing.B, l *testlan.LAN, n *network, count, offset int, tcp func(attach) float64) growthRun {
	var g growthRun
	mk := func(i int) attach {
		return attach{ID: fmt.Sprintf("%s-g%d", n.Name, i), Netns: container(b, l),
			Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": offset + i, "containerPort": 80, "protocol": "tcp"}}}}
	}
	add := func(a attach) time.Duration {
		start := time.Now()
		if _, err := n.Add(a); err != nil {
			b.Fatalf("%s ADD: %v", n.Name, err)
		}
		return time.Since(start)
	}
	del := func(as []attach) {
		for _, a := range as {
			if err := n.Del(a); err != nil {
				b.Fatalf("%s DEL: %v", n.Name, err)
			}
			_ = l.DeleteContainer(a.Netns)
		}
	}
	as := make([]attach, count)
	for i := range as {
		as[i] = mk(i)
	}
	settle()
	var adds []time.Duration
	adds = append(adds, add(as[0]))
	if tcp != nil {
		settle()
		g.alone[0] = tcp(as[0])
	}
	for _, a := range as[1:] {
		adds = append(adds, add(a))
	}
	if tcp != nil {
		settle()
		g.beside = tcp(as[0])
	}
	del(as[1:])
	settle()
	if tcp != nil {
		g.alone[1] = tcp(as[0])
	}
	more := make([]attach, 19)
	for i := range more {
		more[i] = mk(count + i)
	}
	settle()
	g.low = append(g.low, adds[:20]...)
	for _, a := range more {
		g.low = append(g.low, add(a))
	}
	g.high = adds[count-20:]
	del(append(more, as[0]))
	return g
}

// parallel runs count ADDs at once and returns the wall time and errors.
func parallel(b *testing.B, l *testlan.LAN, n *network, count, offset int) (time.Duration, int) {
	as := make([]attach, count)
	for i := range as {
		as[i] = attach{ID: fmt.Sprintf("%s-par-%d", n.Name, i), Netns: container(b, l),
			Caps: map[string]any{"portMappings": []map[string]any{{"hostPort": offset + i, "containerPort": 80, "protocol": "tcp"}}}}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := 0
	settle()
	start := time.Now()
	for _, a := range as {
		wg.Add(1)
		go func(a attach) {
			defer wg.Done()
			if _, err := n.Add(a); err != nil {
				mu.Lock()
				errs++
				mu.Unlock()
			}
		}(a)
	}
	wg.Wait()
	wall := time.Since(start)
	for _, a := range as {
		_ = n.Del(a)
		_ = l.DeleteContainer(a.Netns)
	}
	return wall, errs
}

func compare(b *testing.B) {
	count := knob("LANWIRE_BENCH_N", 50)
	growthN := knob("LANWIRE_BENCH_GROWTH", 500)
	leaseN := knob("LANWIRE_BENCH_LEASES", 1000)
	before := upstreamChains()
	defer removeUpstreamChains(before)

	l := newLAN(b, testlan.Options{Wide: true, HostIP: true})
	d := startDaemon(b)
	dhcpSock := filepath.Join(b.TempDir(), "dhcp.sock")
	up := exec.Command(filepath.Join(upstreamDir, "dhcp"), "daemon", "-socketpath", dhcpSock)
	if err := up.Start(); err != nil {
		b.Fatalf("upstream dhcp daemon: %v", err)
	}
	b.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })
	waitFor(b, 5*time.Second, "upstream dhcp socket", func() bool { _, err := os.Stat(dhcpSock); return err == nil })

	hb := map[string]any{"type": "hostbridge-dhcp", "bridge": l.Bridge, "daemonSocket": d.Socket, "autoStartDaemon": false}
	ub := map[string]any{"type": "bridge", "bridge": l.Bridge, "ipam": map[string]any{"type": "dhcp", "daemonSocketPath": dhcpSock}}
	oe := map[string]any{"type": "offline-egress", "allow": []map[string]any{{"to": "host", "ports": []string{"8000/tcp"}}}}
	fw := map[string]any{"type": "firewall", "backend": "iptables"}
	pl := map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}}
	pm := map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}}
	noopDir := b.TempDir()
	if out, err := buildNoop(noopDir); err != nil {
		b.Fatalf("building the no-op plugin: %v %s", err, out)
	}
	ours := newNetworkList(b, "lwchain", []map[string]any{hb, oe, pl})
	hbFloor := map[string]any{"type": "hostbridge-dhcp", "bridge": l.Bridge, "daemonSocket": d.Socket, "autoStartDaemon": false, "spoofCheck": false}
	floor := newNetworkList(b, "lwfloor", []map[string]any{hbFloor, {"type": "noop"}, {"type": "noop", "capabilities": map[string]bool{"portMappings": true}}})
	floor.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir, noopDir}, filepath.Join(b.TempDir(), "cache"), nil)
	theirs := newNetworkList(b, "upchain", []map[string]any{ub, fw, pm})
	oursIf := newNetworkList(b, "lwif", []map[string]any{hb})
	theirsIf := newNetworkList(b, "upif", []map[string]any{ub})

	var r report
	r.Upstream = upstreamVersion
	p := func(ds []time.Duration, q float64) float64 { return msOf(percentile(ds, q)) }

	oa, od := run(b, l, ours, count, 31000, true)
	ua, ud := run(b, l, theirs, count, 32000, true)
	r.add("full chain ADD p50", "ms", p(oa, .5), p(ua, .5), "ratio <= 0.5", flag(p(oa, .5) <= 0.5*p(ua, .5)))
	r.add("full chain ADD p95", "ms", p(oa, .95), p(ua, .95), "ours <= 2x our p50", flag(p(oa, .95) <= 2*p(oa, .5)))
	r.add("full chain DEL p50", "ms", p(od, .5), p(ud, .5), "ratio <= 0.5", flag(p(od, .5) <= 0.5*p(ud, .5)))
	r.add("full chain DEL p95", "ms", p(od, .95), p(ud, .95), "", nil)

	// Ours and the floor taken in turns, container by container, so that
	// a slower minute of this machine weighs on both alike.
	pa, fa := pair(b, l, ours, floor, count, 33000)
	fr := p(pa, .5) / p(fa, .5)
	r.add("full chain ADD p50 over the floor (hostbridge-dhcp without spoofCheck, 2 no-op plugins), in turns", "ms", p(pa, .5), p(fa, .5), "ratio <= 1.3", flag(fr <= 1.3))

	// The conflict check with 20 other networks' configs in the directory.
	confs := b.TempDir()
	for i := 0; i < 20; i++ {
		conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"other%d","plugins":[{"type":"bridge","bridge":"other%d","ipam":{"type":"host-local","subnet":"10.97.%d.0/24"}}]}`, i, i, i)
		if err := os.WriteFile(filepath.Join(confs, fmt.Sprintf("%02d.conflist", i)), []byte(conf), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	netconf := os.Getenv("NETCONFPATH")
	os.Setenv("NETCONFPATH", confs)
	ca, _ := run(b, l, oursIf, count, 0, false)
	os.Setenv("NETCONFPATH", netconf)

	oa, od = run(b, l, oursIf, count, 0, false)
	ua, ud = run(b, l, theirsIf, count, 0, false)
	cd := p(ca, .5) - p(oa, .5)
	r.add("hostbridge-dhcp ADD p50 with 20 other CNI configs in the directory, over with none", "ms", cd, 0, "<= 1 ms", flag(cd <= 1))
	r.add("hostbridge-dhcp vs bridge+dhcp ADD p50", "ms", p(oa, .5), p(ua, .5), "", nil)
	r.add("hostbridge-dhcp vs bridge+dhcp ADD p95", "ms", p(oa, .95), p(ua, .95), "", nil)
	r.add("hostbridge-dhcp vs bridge+dhcp DEL p50", "ms", p(od, .5), p(ud, .5), "", nil)

	aloneDaemon = d.Socket
	na, nd := alone(b, l, "noop", count, noopDir)
	for _, pair := range [][2]string{{"offline-egress", "firewall"}, {"portmap-lite", "portmap"}} {
		oa, od := alone(b, l, pair[0], count, noopDir)
		ua, ud := alone(b, l, pair[1], count, noopDir)
		r.add(pair[0]+" vs "+pair[1]+" ADD p50", "ms", p(oa, .5), p(ua, .5), "", nil)
		r.add(pair[0]+" vs "+pair[1]+" DEL p50", "ms", p(od, .5), p(ud, .5), "", nil)
		da, dd := p(oa, .5)-p(na, .5), p(od, .5)-p(nd, .5)
		r.add(pair[0]+" ADD p50 over a no-op plugin's exec", "ms", da, 0, "<= 3 ms", flag(da <= 3))
		r.add(pair[0]+" DEL p50 over a no-op plugin's exec", "ms", dd, 0, "<= 3 ms", flag(dd <= 3))
	}
	r.add("no-op plugin exec, ADD p50 (the floor above)", "ms", p(na, .5), 0, "", nil)

	// TCP from an offline container to its allowed host service, alone on
	// the bridge (before the others come and after they went) and beside
	// growthN-1 others; ADD's growth from the first 20 containers (and 19
	// more once the others went) to the last 20.
	mirror := serveDiscard(b, l.HostAddr+":8000")
	og := grow(b, l, ours, growthN, 40000, func(a attach) float64 { return throughput(b, a.Netns, mirror) })
	ug := grow(b, l, theirs, growthN, 41000, nil)
	thr1 := (og.alone[0] + og.alone[1]) / 2
	tr := og.beside / thr1 // over the mean of before and after
	r.add("TCP to the allowed host service, 1 offline container, before the others came", "MB/s", og.alone[0], 0, "", nil)
	r.add("TCP to the allowed host service, 1 offline container, after they went", "MB/s", og.alone[1], 0, "", nil)
	r.add(fmt.Sprintf("TCP to the allowed host service, %d offline containers", growthN), "MB/s", og.beside, 0, "", nil)
	r.add(fmt.Sprintf("TCP with %d offline containers over with 1", growthN), "x", tr, 0, ">= 0.95", flag(tr >= 0.95))
	r.add("growth: ADD p50 of 1-20 (and of 19 more after the others went)", "ms", p(og.low, .5), p(ug.low, .5), "", nil)
	r.add(fmt.Sprintf("growth: ADD p50 of %d-%d", growthN-19, growthN), "ms", p(og.high, .5), p(ug.high, .5), "", nil)
	or, ur := og.ratio(), ug.ratio()
	r.add(fmt.Sprintf("growth: ADD p50 of %d-%d over 1-20", growthN-19, growthN), "x", or, ur, "<= 1.3", flag(or <= 1.3))

	ow, oerr := parallel(b, l, ours, 50, 45000)
	uw, uerr := parallel(b, l, theirs, 50, 46000)
	r.add("50 parallel ADDs, wall time", "s", ow.Seconds(), uw.Seconds(), "<= 3 s, no error", flag(ow <= 3*time.Second && oerr == 0))
	r.add("50 parallel ADDs, errors", "", float64(oerr), float64(uerr), "", nil)

	daemonFigures(b, l, d, oursIf, leaseN, &r)
	printReport(b, r, "bench.json")
}

// settle waits, at most 60 s, until the host is nearly idle (90% over half
// a second): the kernel tears deleted network namespaces down in the
// background for seconds after a phase that deleted hundreds, and ADDs
// measured meanwhile run slower for that alone. Each phase, ours and
// upstream's, starts settled.
func settle() {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		idle0, total0 := cpuTicks()
		time.Sleep(500 * time.Millisecond)
		idle1, total1 := cpuTicks()
		if total1 > total0 && float64(idle1-idle0) >= 0.9*float64(total1-total0) {
			return
		}
	}
}

// cpuTicks returns the host's idle and total CPU time from /proc/stat.
func cpuTicks() (idle, total uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return idle, total
}

// alone times a chained plugin by itself: ADD and DEL with a prevResult
// naming a real veth on the LAN bridge (plugins are looked for in binDir,
// upstreamDir, then extra).
// aloneDaemon is the lease daemon socket alone's lanwire plugins name.
var aloneDaemon string

func alone(b *testing.B, l *testlan.LAN, name string, count int, extra string) (adds, dels []time.Duration) {
	netName := "alone-" + name
	conf := func(i int) map[string]any {
		host := fmt.Sprintf("lwt%sa%d", l.ID, i)
		c := map[string]any{"cniVersion": "1.0.0", "name": netName, "type": name,
			"runtimeConfig": map[string]any{"portMappings": []map[string]any{{"hostPort": 47000 + i, "containerPort": 80, "protocol": "tcp"}}},
			"prevResult": map[string]any{"cniVersion": "1.0.0",
				"interfaces": []map[string]any{{"name": host}, {"name": "eth0", "sandbox": "/var/run/netns/none", "mac": fmt.Sprintf("02:00:00:00:%02x:%02x", i/250, i%250)}},
				"ips":        []map[string]any{{"address": fmt.Sprintf("10.202.%d.%d/16", i/250, i%250+2), "gateway": "10.202.0.1", "interface": 1}}}}
		if name == "offline-egress" {
			c["allow"] = []map[string]any{{"to": "host", "ports": []string{"8000/tcp"}}}
		}
		if name == "offline-egress" || name == "portmap-lite" {
			// As deployed beside hostbridge-dhcp: the lease daemon takes
			// the firewall socket, so the kernel's release of what a DEL
			// deleted is not waited for (~10 ms here without it).
			c["daemonSocket"] = aloneDaemon
		}
		if name == "firewall" {
			c["backend"] = "iptables"
		}
		return c
	}
	for i := 0; i < count; i++ {
		host := fmt.Sprintf("lwt%sa%d", l.ID, i)
		for _, args := range [][]string{{"link", "add", host, "type", "veth", "peer", "name", fmt.Sprintf("lwt%sq%d", l.ID, i)}, {"link", "set", host, "master", l.Bridge, "up"}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				b.Fatalf("ip %v: %v %s", args, err, out)
			}
		}
		defer exec.Command("ip", "link", "del", host).Run()
	}
	settle()
	for i := 0; i < count; i++ {
		start := time.Now()
		if err := runPluginExec(name, "ADD", fmt.Sprintf("alone-%d", i), conf(i), extra); err != nil {
			b.Fatalf("%s ADD: %v", name, err)
		}
		adds = append(adds, time.Since(start))
	}
	for i := 0; i < count; i++ {
		start := time.Now()
		if err := runPluginExec(name, "DEL", fmt.Sprintf("alone-%d", i), conf(i), extra); err != nil {
			b.Fatalf("%s DEL: %v", name, err)
		}
		dels = append(dels, time.Since(start))
	}
	return adds, dels
}

func runPluginExec(name, command, id string, conf map[string]any, extra string) error {
	dir := binDir
	for _, d := range []string{binDir, upstreamDir, extra} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			dir = d
			break
		}
	}
	data, _ := json.Marshal(conf)
	cmd := exec.Command(filepath.Join(dir, name))
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+id,
		"CNI_NETNS=/var/run/netns/none", "CNI_IFNAME=eth0", "CNI_PATH="+binDir+":"+upstreamDir)
	cmd.Stdin = strings.NewReader(string(data))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// serveDiscard accepts TCP connections on addr and reads them to the end,
// until the benchmark ends; it returns addr.
func serveDiscard(b *testing.B, addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		b.Fatalf("listening on %s: %v", addr, err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return addr
}

// throughput sends to addr from netns for 2 s, three times, and returns
// the best rate in MB/s.
func throughput(b *testing.B, netns, addr string) float64 {
	best := 0.0
	buf := make([]byte, 256<<10)
	for i := 0; i < 3; i++ {
		var c net.Conn
		if err := inNetns(netns, func() (err error) { c, err = net.DialTimeout("tcp", addr, 2*time.Second); return }); err != nil {
			b.Fatalf("connecting to %s from %s: %v", addr, netns, err)
		}
		var sent int64
		start := time.Now()
		for time.Since(start) < 2*time.Second {
			n, err := c.Write(buf)
			sent += int64(n)
			if err != nil {
				b.Fatalf("sending to %s: %v", addr, err)
			}
		}
		rate := float64(sent) / time.Since(start).Seconds() / 1e6
		c.Close()
		if rate > best {
			best = rate
		}
	}
	return best
}

// procStat returns a process's RSS (MiB) and CPU time.
func procStat(pid int) (float64, time.Duration) {
	var rss float64
	if s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(s), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				rss = float64(kb) / 1024
			}
		}
	}
	var cpu time.Duration
	if s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		f := strings.Fields(string(s)[strings.LastIndex(string(s), ")")+2:])
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return rss, cpu
}

// daemonFigures: RSS and goroutines with 0, 100 and leaseN leases, and the
// CPU time of one renewal cycle of all of them.
func daemonFigures(b *testing.B, l *testlan.LAN, d *daemonProc, n *network, leaseN int, r *report) {
	pid := d.cmd.Process.Pid
	status := func() *leaseapi.Status {
		resp, err := d.Call(leaseapi.Request{Method: leaseapi.MethodStatus})
		if err != nil {
			b.Fatal(err)
		}
		return resp.Status
	}
	var as []attach
	measure := func(at int) {
		for len(as) < at {
			a := attach{ID: fmt.Sprintf("lease-%d", len(as)), Netns: container(b, l)}
			if _, err := n.Add(a); err != nil {
				b.Fatalf("lease %d: %v", len(as), err)
			}
			as = append(as, a)
		}
		time.Sleep(time.Second)
		rss, _ := procStat(pid)
		st := status()
		r.add(fmt.Sprintf("daemon with %d leases: RSS", st.Leases), "MiB", rss, 0, "<= 32 MiB at 1000", flag(st.Leases < 1000 || rss <= 32))
		r.add(fmt.Sprintf("daemon with %d leases: goroutines", st.Leases), "", float64(st.Goroutines), 0, "", nil)
	}
	measure(0)
	if leaseN > 100 {
		measure(100)
	}
	measure(leaseN)
	// One renewal cycle: every lease renews once (T1 is 60 s of 2 minutes).
	start := time.Now()
	_, cpu0 := procStat(pid)
	waitFor(b, 3*time.Minute, "every lease to renew", func() bool {
		for _, ls := range d.Leases() {
			if ls.Acquired.Before(start) {
				return false
			}
		}
		return true
	})
	_, cpu1 := procStat(pid)
	r.add(fmt.Sprintf("daemon CPU over one renewal cycle of %d leases", len(as)), "s", (cpu1 - cpu0).Seconds(), 0, "", nil)
	for _, a := range as {
		_ = n.Del(a)
		_ = l.DeleteContainer(a.Netns)
	}
	_ = syscall.Kill(pid, 0)
}

func printReport(b *testing.B, r report, defaultPath string) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-52s %10s %10s %7s  %s\n", "metric", "lanwire", "upstream", "ratio", "target")
	for _, x := range r.Rows {
		up, ratio := "", ""
		if x.Upstream > 0 {
			up = fmt.Sprintf("%.2f", x.Upstream)
		}
		if x.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", x.Ratio)
		}
		target := x.Target
		if x.Met != nil {
			if *x.Met {
				target = "met: " + target
			} else {
				target = "MISSED: " + target
			}
		}
		fmt.Fprintf(&sb, "%-52s %10.2f %10s %7s  %s %s\n", x.Metric, x.Lanwire, up, ratio, target, x.Unit)
	}
	fmt.Print(sb.String())
	path := os.Getenv("LANWIRE_BENCH_JSON")
	if path == "" {
		path = defaultPath
	} else if defaultPath != "bench.json" {
		path = strings.TrimSuffix(path, ".json") + "-" + defaultPath
	}
	data, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Errorf("writing %s: %v", path, err)
	}
	fmt.Printf("JSON written to %s\n", path)
}
