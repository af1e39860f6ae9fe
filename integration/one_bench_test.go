package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/lanwire/lanwire/integration/testlan"
)

// BenchmarkOneContainer measures what a developer who runs one container
// at a time sees (`make bench`; bench-one.json): ADD+DEL cycles of a single
// container on a host where it is the only one, per plugin and for the
// chain, against the upstream plugins in the same run; then `podman run
// --rm` on each chain against `--network none`, alone and beside 100 other
// containers. Knob: LANWIRE_BENCH_ONE (cycles per row, 20).
func BenchmarkOneContainer(b *testing.B) {
	for i := 0; i < b.N; i++ {
		oneContainer(b)
	}
}

// chainSet is one suite's plugins for the single-container rows.
type chainSet struct {
	name   string     // "lanwire", "upstream"
	chains []*network // the interface plugin alone, + firewall, + port mapping
	exec   *boundedExec
}

func oneContainer(b *testing.B) {
	count := knob("LANWIRE_BENCH_ONE", 20)
	if t := lanwireTables(b); len(t) > 0 {
		b.Logf("lanwire's tables exist before the run (%v): another container is alive, the 'only container' rows are not", t)
	}
	before := upstreamChains()
	defer removeUpstreamChains(before)
	l := newLAN(b, testlan.Options{HostIP: true, Wide: true}) // room for 100 others
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
	set := func(name string, plugins ...map[string]any) chainSet {
		cs := chainSet{name: name, exec: &boundedExec{times: map[string][]time.Duration{}}}
		for i := range plugins {
			n := newNetworkList(b, fmt.Sprintf("one%s%d", name[:2], i), plugins[:i+1])
			n.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir, upstreamDir}, filepath.Join(b.TempDir(), "cache"), cs.exec)
			cs.chains = append(cs.chains, n)
		}
		return cs
	}
	ours, theirs := set("lanwire", hb, oe, pl), set("upstream", ub, fw, pm)

	var r report
	r.Upstream = upstreamVersion
	p50 := func(ds []time.Duration) float64 { return msOf(percentile(ds, .5)) }
	settle()
	// Cycles alternate between the suites, so that both see the same host.
	cycles := map[string][][2][]time.Duration{}
	for i, label := range []string{"interface plugin alone", "+ firewall plugin", "+ port mapping plugin (full chain)"} {
		var got [2][2][]time.Duration // suite, ADD/DEL
		for k := 0; k < count; k++ {
			for s, cs := range []chainSet{ours, theirs} {
				a, dl := cycle(b, l, cs.chains[i], k, i == 2)
				got[s][0] = append(got[s][0], a)
				got[s][1] = append(got[s][1], dl)
			}
		}
		cycles[label] = [][2][]time.Duration{got[0], got[1]}
		r.add("one container, "+label+": ADD p50", "ms", p50(got[0][0]), p50(got[1][0]), "", nil)
		r.add("one container, "+label+": DEL p50", "ms", p50(got[0][1]), p50(got[1][1]), "", nil)
	}
	// Per plugin, from the full chain's cycles (the exec of each plugin
	// as the runtime sees it, process start included).
	for _, pair := range [][2]string{{"hostbridge-dhcp", "bridge"}, {"offline-egress", "firewall"}, {"portmap-lite", "portmap"}} {
		for _, cmd := range []string{"ADD", "DEL"} {
			o, u := ours.exec.took(pair[0], cmd), theirs.exec.took(pair[1], cmd)
			r.add(fmt.Sprintf("one container, %s vs %s %s p50", pair[0], pair[1], cmd), "ms", p50(o), p50(u), "", nil)
		}
	}
	noopDir := b.TempDir()
	if out, err := buildNoop(noopDir); err != nil {
		b.Fatalf("building the no-op plugin: %v %s", err, out)
	}
	na, _ := alone(b, l, "noop", count, noopDir)
	r.add("no-op plugin exec p50 (the floor of any plugin call)", "ms", p50(na), 0, "", nil)

	podmanRows(b, l, &r, noopDir, hb, oe, pl, ub, fw, pm, count)
	printReport(b, r, "bench-one.json")
}

// cycle makes a container netns, ADDs it to n, DELs it and removes the
// netns, timing ADD and DEL.
func cycle(b *testing.B, l *testlan.LAN, n *network, k int, mapping bool) (add, del time.Duration) {
	a := attach{ID: fmt.Sprintf("one-%s-%d", n.Name, k), Netns: container(b, l)}
	if mapping {
		a.Caps = map[string]any{"portMappings": []map[string]any{{"hostPort": 18600, "containerPort": 80, "protocol": "tcp"}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := n.cni.AddNetworkList(ctx, n.list, a.rt()); err != nil {
		b.Fatalf("ADD on %s: %v", n.Name, err)
	}
	add = time.Since(start)
	start = time.Now()
	if err := n.cni.DelNetworkList(ctx, n.list, a.rt()); err != nil {
		b.Fatalf("DEL on %s: %v", n.Name, err)
	}
	del = time.Since(start)
	_ = l.DeleteContainer(a.Netns)
	return add, del
}

// podmanRows times `podman run --rm IMAGE true` (podman 4.3, CNI backend)
// with no network, the lanwire chain and the upstream chain (each with a
// published port), interleaved; first as the only container, then beside
// 100 containers on the lanwire chain.
func podmanRows(b *testing.B, l *testlan.LAN, r *report, noopDir string, hb, oe, pl, ub, fw, pm map[string]any, count int) {
	if _, err := exec.LookPath("podman"); err != nil {
		b.Logf("podman rows skipped: %v", err)
		return
	}
	netDir := b.TempDir()
	noop := map[string]any{"type": "noop"}
	noopPM := map[string]any{"type": "noop", "capabilities": map[string]bool{"portMappings": true}}
	for name, plugins := range map[string][]map[string]any{"lwfull": {hb, oe, pl}, "upfull": {ub, fw, pm}, "lwhb": {hb}, "noop3": {noop, noop, noopPM}} {
		// (podman 4.3's libcni knows CNI 1.0.0 at most.)
		data, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": name, "plugins": plugins})
		if err := os.WriteFile(filepath.Join(netDir, name+".conflist"), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	p := newPodman(b, netDir, noopDir)
	run := func(args ...string) time.Duration {
		start := time.Now()
		if out, err := p.run(append([]string{"run", "--rm"}, args...)...); err != nil {
			b.Fatalf("podman run %v: %v %s", args, err, out)
		}
		return time.Since(start)
	}
	variants := [][]string{
		{"--network", "none"},
		{"--network", "lwhb"},
		{"--network", "lwfull", "-p", "18610:80"},
		{"--network", "upfull", "-p", "18611:80"},
		{"--network", "noop3", "-p", "18612:80"},
	}
	measure := func(when string) {
		for _, v := range variants { // warm caches, images and daemons
			run(append(v, "localhost/lanwire-busybox", "/bin/busybox", "true")...)
		}
		settle()
		ts := make([][]time.Duration, len(variants))
		for k := 0; k < count; k++ {
			for i, v := range variants {
				ts[i] = append(ts[i], run(append(v, "localhost/lanwire-busybox", "/bin/busybox", "true")...))
			}
		}
		none := msOf(percentile(ts[0], .5))
		r.add("podman run --rm, --network none, "+when+": p50", "ms", none, 0, "", nil)
		hbOver := msOf(percentile(ts[1], .5)) - none
		r.add("podman run --rm, hostbridge-dhcp alone over none, "+when, "ms", hbOver, 0, "", nil)
		ours, theirs := msOf(percentile(ts[2], .5))-none, msOf(percentile(ts[3], .5))-none
		r.add("podman run --rm -p, full chain over none, "+when, "ms", ours, theirs, "<= 50 ms", flag(ours <= 50))
		// What podman 4.3 pays for any 3-plugin CNI chain, whatever the
		// plugins do: three no-op plugins.
		floor := msOf(percentile(ts[4], .5)) - none
		r.add("podman run --rm -p, 3 no-op plugins over none (podman's CNI floor), "+when, "ms", floor, 0, "", nil)
		r.add("podman run --rm -p, full chain over the no-op chain, "+when, "ms", ours-floor, theirs-floor, "", nil)
	}
	measure5 := podman5Rows(b, l, r, hb["daemonSocket"].(string), count)
	measure("the only container")
	measure5("the only container")
	others := newNetworkList(b, "lwothers", []map[string]any{hb, oe, pl})
	for i := 0; i < 100; i++ {
		a := attach{ID: fmt.Sprintf("other-%d", i), Netns: container(b, l)}
		b.Cleanup(func() { _ = l.DeleteContainer(a.Netns) }) // after the DEL MustAdd registers
		others.MustAdd(a)
	}
	measure("beside 100 others")
	measure5("beside 100 others")
}

// podman5Rows returns what times `podman run --rm IMAGE true` under podman
// 5 (netavark, in the trixie root): no network and a lanwire network
// (offline, with a published port), interleaved. (netavark's own bridge
// is not compared: it needs nft in the root and changes the host's
// ip_forward.) It does nothing when there is no trixie root.
func podman5Rows(b *testing.B, l *testlan.LAN, r *report, socket string, count int) func(when string) {
	if _, err := os.Stat(filepath.Join(trixieRoot(), "usr/bin/podman")); err != nil {
		b.Logf("podman 5 rows skipped: no trixie root (%v)", err)
		return func(string) {}
	}
	p := newPodman5(b, socket)
	if out, err := p.run("network", "create", "-d", "lanwire", "-o", "bridge="+l.Bridge, "-o", "daemonSocket="+socket,
		"-o", "autoStartDaemon=false", "-o", "allow=host:8000/tcp", "lw5"); err != nil {
		b.Fatalf("podman 5 network create: %v %s", err, out)
	}
	variants := [][]string{
		{"--network", "none"},
		{"--network", "lw5", "-p", "18620:80"},
	}
	run := func(args ...string) time.Duration {
		start := time.Now()
		if out, err := p.run(append(append([]string{"run", "--rm"}, args...), "localhost/lanwire-busybox", "/bin/busybox", "true")...); err != nil {
			b.Fatalf("podman 5 run %v: %v %s", args, err, out)
		}
		return time.Since(start)
	}
	return func(when string) {
		for _, v := range variants {
			run(v...)
		}
		settle()
		ts := make([][]time.Duration, len(variants))
		for k := 0; k < count; k++ {
			for i, v := range variants {
				ts[i] = append(ts[i], run(v...))
			}
		}
		none := msOf(percentile(ts[0], .5))
		r.add("podman 5 run --rm, --network none, "+when+": p50", "ms", none, 0, "", nil)
		ours := msOf(percentile(ts[1], .5)) - none
		r.add("podman 5 run --rm -p, lanwire netavark plugin (offline, published port) over none, "+when, "ms", ours, 0, "<= 50 ms", flag(ours <= 50))
	}
}

// buildNoop builds the no-op plugin into dir, static as lanwire's plugins
// are (so that both pay the same exec).
func buildNoop(dir string) ([]byte, error) {
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/noop")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}
