package integration

import (
	"fmt"
	"sort"
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
