package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// BenchmarkOfflineImage measures offline-image on an image of
// LANWIRE_BENCH_IMAGE_MB MiB (1024) in a registry on loopback
// (bench-image.json): `save -o -` against fetching the same blobs back to
// back with no tar in between (the link's limit), its peak memory and disk
// writes, serve's time to first byte, and `crane pull --format=tarball`
// (go-containerregistry's CLI; CRANE, or crane on PATH / in GOBIN) on the
// same image.
func BenchmarkOfflineImage(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchOfflineImage(b)
	}
}

func benchOfflineImage(b *testing.B) {
	mb := knob("LANWIRE_BENCH_IMAGE_MB", 1024)
	r := newImageRegistryOf(b, mb)
	ref := r.host + "/busybox:latest"
	var rep report
	rep.Upstream = "crane"

	// The link's limit: the manifest and every blob, back to back.
	pr, _ := name.ParseReference(ref)
	img, err := remote.Image(pr)
	if err != nil {
		b.Fatal(err)
	}
	layers, _ := img.Layers()
	cfg, _ := img.ConfigName()
	fetch := func() time.Duration {
		start := time.Now()
		var digests []string
		for _, l := range layers {
			d, _ := l.Digest()
			digests = append(digests, d.String())
		}
		for _, d := range append([]string{cfg.String()}, digests...) {
			resp, err := http.Get("http://" + r.host + "/v2/busybox/blobs/" + d)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return time.Since(start)
	}
	var size int64
	save := func() (time.Duration, *syscall.Rusage) {
		cmd := exec.Command(offlineImage(), "save", ref, "-o", "-")
		cmd.Dir = b.TempDir()
		out, _ := cmd.StdoutPipe()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		size, _ = io.Copy(io.Discard, out)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("offline-image save: %v", err)
		}
		return time.Since(start), cmd.ProcessState.SysUsage().(*syscall.Rusage)
	}
	// Alternate, best of three each (the same host for both).
	best := func(ds ...time.Duration) time.Duration {
		m := ds[0]
		for _, d := range ds {
			m = min(m, d)
		}
		return m
	}
	var fs, ss []time.Duration
	var ru *syscall.Rusage
	for i := 0; i < 3; i++ {
		fs = append(fs, fetch())
		d, u := save()
		ss = append(ss, d)
		ru = u
	}
	mib := float64(size) / (1 << 20)
	tf, ts := best(fs...).Seconds(), best(ss...).Seconds()
	rep.add(fmt.Sprintf("save -o -, %d MiB image: MiB/s", mb), "MiB/s", mib/ts, 0, "", nil)
	rep.add("the same blobs back to back (the link's limit): MiB/s", "MiB/s", mib/tf, 0, "", nil)
	rep.add("save throughput / the link's", "ratio", tf/ts, 0, ">= 0.90", flag(tf/ts >= 0.9))
	rep.add("save -o -: peak RSS", "MiB", float64(ru.Maxrss)/1024, 0, "<= 64 MiB", flag(ru.Maxrss <= 64*1024))
	rep.add("save -o -: blocks written to disk", "blocks", float64(ru.Oublock), 0, "0", flag(ru.Oublock == 0))

	// serve: time to the first byte of the archive and the whole download.
	s := startImageServer(b)
	var ttfb []time.Duration
	var serveTime time.Duration
	for i := 0; i < 3; i++ {
		start := time.Now()
		resp, err := http.Get("http://" + s.addr + "/save?ref=" + ref)
		if err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.Peek(1); err != nil {
			b.Fatal(err)
		}
		ttfb = append(ttfb, time.Since(start))
		_, _ = io.Copy(io.Discard, br)
		resp.Body.Close()
		serveTime = time.Since(start)
	}
	first := msOf(best(ttfb...))
	rep.add("serve: time to first byte (tag resolved, redirect, manifest, config)", "ms", first, 0, "<= 200 ms", flag(first <= 200))
	rep.add("serve: whole download MiB/s", "MiB/s", mib/serveTime.Seconds(), 0, "", nil)
	rep.add("serve: RSS after 3 downloads", "MiB", rssMiB(s.cmd.Process.Pid), 0, "", nil)

	if crane := craneBin(); crane != "" {
		dir := b.TempDir()
		out := filepath.Join(dir, "crane.tar")
		cmd := exec.Command(crane, "pull", "--format=tarball", ref, out)
		cmd.Env = append(os.Environ(), "TMPDIR="+dir)
		start := time.Now()
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("crane pull: %v %s", err, o)
		}
		ct := time.Since(start).Seconds()
		cru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		st, _ := os.Stat(out)
		rep.add("save -o - vs crane pull --format=tarball: seconds", "s", ts, ct, "", nil)
		rep.add("peak RSS vs crane", "MiB", float64(ru.Maxrss)/1024, float64(cru.Maxrss)/1024, "", nil)
		rep.add("bytes on disk vs crane", "MiB", float64(ru.Oublock)*512/(1<<20), float64(st.Size())/(1<<20), "", nil)
	} else {
		b.Log("crane not found (set CRANE, or `make deps` installs it): its rows are left out")
	}
	printReport(b, rep, "bench-image.json")
}

// craneBin is go-containerregistry's crane, if installed.
func craneBin() string {
	if c := os.Getenv("CRANE"); c != "" {
		return c
	}
	if c, err := exec.LookPath("crane"); err == nil {
		return c
	}
	if gobin, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		c := filepath.Join(string(gobin[:len(gobin)-1]), "bin", "crane")
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return ""
}

// rssMiB is a process's resident memory now.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return float64(res*int64(os.Getpagesize())) / (1 << 20)
}
