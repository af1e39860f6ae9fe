package integration

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// fetch reads the blobs, into check (a digest, or io.Discard).
	fetch := func(check func() io.Writer) time.Duration {
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
			_, _ = io.Copy(check(), resp.Body)
			resp.Body.Close()
		}
		return time.Since(start)
	}
	discard := func() io.Writer { return io.Discard }
	digest := func() io.Writer { return sha256.New() }
	// The archive's size, from one save through a pipe.
	sizer := exec.Command(offlineImage(), "save", ref, "-o", "-")
	out, _ := sizer.StdoutPipe()
	if err := sizer.Start(); err != nil {
		b.Fatal(err)
	}
	size, _ := io.Copy(io.Discard, out)
	if err := sizer.Wait(); err != nil {
		b.Fatalf("offline-image save: %v", err)
	}
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	defer devnull.Close()
	save := func() (time.Duration, float64, *syscall.Rusage) {
		cmd := exec.Command(offlineImage(), "save", ref, "-o", "-")
		cmd.Dir, cmd.Stdout = b.TempDir(), devnull
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		peak := peakRSS(cmd)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("offline-image save: %v", err)
		}
		return time.Since(start), <-peak, cmd.ProcessState.SysUsage().(*syscall.Rusage)
	}
	// Alternate, best of three each (the same host for both).
	best := func(ds ...time.Duration) time.Duration {
		m := ds[0]
		for _, d := range ds {
			m = min(m, d)
		}
		return m
	}
	var fs, cs, ss []time.Duration
	var ru *syscall.Rusage
	var peak float64
	for i := 0; i < 3; i++ {
		fs = append(fs, fetch(discard))
		cs = append(cs, fetch(digest))
		d, p, u := save()
		ss = append(ss, d)
		ru, peak = u, max(peak, p)
	}
	mib := float64(size) / (1 << 20)
	tf, tc, ts := best(fs...).Seconds(), best(cs...).Seconds(), best(ss...).Seconds()
	rep.add(fmt.Sprintf("save -o -, %d MiB image: MiB/s", mb), "MiB/s", mib/ts, 0, "", nil)
	rep.add("the same blobs back to back, unchecked: MiB/s", "MiB/s", mib/tf, 0, "", nil)
	rep.add("the same blobs back to back, digests checked: MiB/s", "MiB/s", mib/tc, 0, "", nil)
	rep.add("save throughput / the checked fetch's", "ratio", tc/ts, 0, ">= 0.90", flag(tc/ts >= 0.9))
	rep.add("save throughput / the unchecked fetch's", "ratio", tf/ts, 0, "", nil)
	rep.add("save -o -: peak RSS (VmHWM)", "MiB", peak, 0, "<= 64 MiB", flag(peak <= 64))
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
	written := writeBytes(s.cmd.Process.Pid)
	rep.add("serve: bytes written to disk in 3 downloads (its log goes to a pipe)", "bytes", float64(written), 0, "0", flag(written == 0))

	if crane := craneBin(); crane != "" {
		dir := b.TempDir()
		out := filepath.Join(dir, "crane.tar")
		cmd := exec.Command(crane, "pull", "--format=tarball", ref, out)
		cmd.Env = append(os.Environ(), "TMPDIR="+dir)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cpeak := peakRSS(cmd)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("crane pull: %v", err)
		}
		ct := time.Since(start).Seconds()
		st, _ := os.Stat(out)
		rep.add("save -o - vs crane pull --format=tarball: seconds", "s", ts, ct, "", nil)
		rep.add("peak RSS vs crane", "MiB", peak, <-cpeak, "", nil)
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

// peakRSS follows a started process's peak resident memory (VmHWM: the
// rusage of a child forked from this big process counts the parent's
// memory) until it exits; the channel gets the last value read.
func peakRSS(cmd *exec.Cmd) <-chan float64 {
	ch := make(chan float64, 1)
	go func() {
		var peak float64
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			if err != nil || strings.Contains(string(b), "State:\tZ") {
				break
			}
			for _, l := range strings.Split(string(b), "\n") {
				var kb float64
				if n, _ := fmt.Sscanf(l, "VmHWM: %f kB", &kb); n == 1 {
					peak = max(peak, kb/1024)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		ch <- peak
	}()
	return ch
}

// writeBytes is what a process has caused to be written to storage
// (/proc/PID/io write_bytes).
func writeBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		var n int64
		if _, err := fmt.Sscanf(l, "write_bytes: %d", &n); err == nil {
			return n
		}
	}
	return -1
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
