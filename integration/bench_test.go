package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lanwire/lanwire/integration/testlan"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkHostbridgeAddDel measures ADD and DEL of hostbridge-dhcp alone on
// the test LAN, one container at a time, and reports p50/p95 in ms. Run it
// with -benchtime=1x: each run attaches 50 containers.
func BenchmarkHostbridgeAddDel(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchAddDel(b, 50)
	}
}

func benchAddDel(b *testing.B, count int) {
	l, err := testlan.New(testlan.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	d := startDaemon(b)
	n := newNetwork(b, l, d, nil)
	var adds, dels []time.Duration
	for i := 0; i < count; i++ {
		ns, err := l.NewContainer()
		if err != nil {
			b.Fatal(err)
		}
		a := attach{ID: fmt.Sprintf("bench-%d", i), Netns: ns}
		start := time.Now()
		if _, err := n.Add(a); err != nil {
			b.Fatalf("ADD %d: %v", i, err)
		}
		adds = append(adds, time.Since(start))
		start = time.Now()
		if err := n.Del(a); err != nil {
			b.Fatalf("DEL %d: %v", i, err)
		}
		dels = append(dels, time.Since(start))
		_ = l.DeleteContainer(ns)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(adds, 0.5)), "add-p50-ms")
	b.ReportMetric(ms(percentile(adds, 0.95)), "add-p95-ms")
	b.ReportMetric(ms(percentile(dels, 0.5)), "del-p50-ms")
	b.ReportMetric(ms(percentile(dels, 0.95)), "del-p95-ms")
}

// execShim puts wrappers for the iptables tools first in PATH; each run is
// logged, so a benchmark or test can count the processes a call starts.
func execShim(b testing.TB) (pathEnv string, count func() int) {
	dir := b.TempDir()
	logf := filepath.Join(dir, "runs.log")
	for _, tool := range []string{"iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			continue
		}
		script := fmt.Sprintf("#!/bin/sh\necho %s >> %s\nexec %s \"$@\"\n", tool, logf, real)
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	return "PATH=" + dir + ":" + os.Getenv("PATH"), func() int {
		data, _ := os.ReadFile(logf)
		return strings.Count(string(data), "\n")
	}
}

func runPluginEnv(name, command, id string, conf map[string]any, env ...string) error {
	data, _ := json.Marshal(conf)
	cmd := exec.Command(plugin(name))
	cmd.Env = append(append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+id,
		"CNI_NETNS=/var/run/netns/none", "CNI_IFNAME=eth0", "CNI_PATH="+binDir), env...)
	cmd.Stdin = strings.NewReader(string(data))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// growth times ADD of count attachments and reports the p50 of the first
// and last 20, their ratio, and the iptables processes of one ADD.
func growth(b *testing.B, count int, name string, conf func(i int) map[string]any) {
	env, runs := execShim(b)
	var adds []time.Duration
	ids := make([]string, count)
	defer func() {
		for i, id := range ids {
			if id != "" {
				_ = runPluginEnv(name, "DEL", id, conf(i))
			}
		}
	}()
	var perAdd int
	for i := 0; i < count; i++ {
		ids[i] = fmt.Sprintf("bench-%d", i)
		before := runs()
		start := time.Now()
		if err := runPluginEnv(name, "ADD", ids[i], conf(i), env); err != nil {
			b.Fatalf("ADD %d: %v", i, err)
		}
		adds = append(adds, time.Since(start))
		if i == count-1 {
			perAdd = runs() - before
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	first, last := percentile(adds[:20], 0.5), percentile(adds[count-20:], 0.5)
	b.ReportMetric(ms(first), "first20-p50-ms")
	b.ReportMetric(ms(last), "last20-p50-ms")
	b.ReportMetric(float64(last)/float64(first), "growth-ratio")
	b.ReportMetric(float64(perAdd), "iptables-runs/add")
}

// BenchmarkOfflineEgressGrowth: ADD latency of offline-egress alone with
// 200 containers (each a veth on a test bridge).
func BenchmarkOfflineEgressGrowth(b *testing.B) {
	for n := 0; n < b.N; n++ {
		l, err := testlan.New(testlan.Options{})
		if err != nil {
			b.Fatal(err)
		}
		const count = 200
		for i := 0; i < count; i++ {
			host := fmt.Sprintf("lwt%sh%d", l.ID, i)
			for _, args := range [][]string{
				{"link", "add", host, "type", "veth", "peer", "name", fmt.Sprintf("lwt%sp%d", l.ID, i)},
				{"link", "set", host, "master", l.Bridge, "up"},
			} {
				if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
					b.Fatalf("ip %v: %v %s", args, err, out)
				}
			}
		}
		netName := "benchoff" + l.ID
		growth(b, count, "offline-egress", func(i int) map[string]any {
			return map[string]any{"cniVersion": "1.1.0", "name": netName, "type": "offline-egress",
				"allow": []map[string]any{{"to": "host", "ports": []string{"8000/tcp"}}},
				"prevResult": map[string]any{"cniVersion": "1.1.0",
					"interfaces": []map[string]any{{"name": fmt.Sprintf("lwt%sh%d", l.ID, i)},
						{"name": "eth0", "sandbox": "/var/run/netns/none", "mac": fmt.Sprintf("02:00:00:00:%02x:%02x", i/250, i%250)}},
					"ips": []map[string]any{{"address": fmt.Sprintf("10.200.%d.%d/16", i/250, i%250+2)}}}}
		})
		for i := 0; i < count; i++ {
			_ = exec.Command("ip", "link", "del", fmt.Sprintf("lwt%sh%d", l.ID, i)).Run()
		}
		l.Close()
	}
}

// BenchmarkPortmapGrowth: ADD latency of portmap-lite alone with 500
// existing mappings (one per container).
func BenchmarkPortmapGrowth(b *testing.B) {
	for n := 0; n < b.N; n++ {
		netName := fmt.Sprintf("benchpm%d", time.Now().UnixNano()%100000)
		growth(b, 500, "portmap-lite", func(i int) map[string]any {
			return portmapAlone(netName, 30000+i, 201, i)
		})
	}
}

// portmapAlone is the config of portmap-lite run on its own for attachment
// i: one TCP mapping of hostPort to 80, and a prevResult with the IPv4
// address 10.NET.x.y/16 of i (no IPv6).
func portmapAlone(netName string, hostPort, net, i int) map[string]any {
	return map[string]any{"cniVersion": "1.1.0", "name": netName, "type": "portmap-lite",
		"runtimeConfig": map[string]any{"portMappings": []map[string]any{{"hostPort": hostPort, "containerPort": 80, "protocol": "tcp"}}},
		"prevResult": map[string]any{"cniVersion": "1.1.0", "interfaces": []map[string]any{{"name": "lo"}},
			"ips": []map[string]any{{"address": fmt.Sprintf("10.%d.%d.%d/16", net, i/250, i%250+2), "gateway": fmt.Sprintf("10.%d.0.1", net)}}}}
}
