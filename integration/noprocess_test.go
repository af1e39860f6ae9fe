package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// straceShim makes a CNI_PATH directory whose plugins are the real ones
// run under `strace -f -e trace=execve`, each call logging to its own
// file, and returns a func listing every program the calls executed
// besides the plugins themselves.
func straceShim(t *testing.T) (dir string, execs func() []string) {
	t.Helper()
	dir, lines := straceShimWith(t, "execve")
	return dir, func() []string {
		var out []string
		for _, line := range lines() {
			if !strings.Contains(line, "execve(") || strings.Contains(line, "= -1 ") {
				continue
			}
			if strings.Contains(line, "execve(\""+binDir+"/") {
				continue // the plugin itself
			}
			out = append(out, line)
		}
		return out
	}
}

// straceShimWith makes a CNI_PATH directory whose plugins are the real
// ones run under `strace -f -e trace=EXPR` (with env added), and returns a
// func that takes the trace lines logged so far.
func straceShimWith(t *testing.T, expr string, env ...string) (dir string, lines func() []string) {
	t.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatal("strace is missing: `make test` installs it (Debian package strace)")
	}
	dir = t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"hostbridge-dhcp", "offline-egress", "portmap-lite"} {
		script := fmt.Sprintf("#!/bin/sh\nexec env %s %s -f -qq -e trace=%s -o %s/%s.$$ %s \"$@\"\n", strings.Join(env, " "), strace, expr, logs, p, plugin(p))
		if err := os.WriteFile(filepath.Join(dir, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, func() []string {
		var out []string
		files, _ := filepath.Glob(filepath.Join(logs, "*"))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			for _, line := range strings.Split(string(data), "\n") {
				if line != "" {
					out = append(out, filepath.Base(f)+": "+line)
				}
			}
			os.Remove(f)
		}
		return out
	}
}

// No plugin starts a process on ADD or DEL, and none is left behind: the
// firewall changes are one nf_tables transaction over netlink, and the
// netlink socket goes to the lease daemon to close. Measured for a second
// container on a bridge (the first one's ADD may insert the FORWARD rule
// with iptables, once per bridge on hosts whose bridged traffic crosses
// FORWARD) and for the last one's DEL.
func TestNoProcessPerCall(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	n := g.network(t, "noproc", g.offlineConf(),
		map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}})
	first := attach{ID: "noproc-1", Netns: container(t, g.lan), Caps: maps(tcpMap(18801, 80, ""))}
	n.MustAdd(first)

	dir, execs := straceShim(t)
	shimmed := libcni.NewCNIConfigWithCacheDir([]string{dir}, filepath.Join(t.TempDir(), "cache"), nil)
	second := attach{ID: "noproc-2", Netns: container(t, g.lan), Caps: maps(tcpMap(18802, 80, ""))}
	ctx := t.Context()
	if _, err := shimmed.AddNetworkList(ctx, n.list, second.rt()); err != nil {
		t.Fatalf("ADD under strace: %v", err)
	}
	t.Cleanup(func() { _ = n.Del(second) })
	if got := execs(); len(got) > 0 {
		t.Errorf("ADD started processes:\n%s", strings.Join(got, "\n"))
	}
	expectBlocked(t, second.Netns, tcpProbe(g.lan.Internet+":80"))
	expect(t, second.Netns, true, tcpProbe(g.lan.HostAddr+":8000"))
	for _, a := range []attach{second, first} {
		if err := shimmed.DelNetworkList(ctx, n.list, a.rt()); err != nil {
			t.Fatalf("DEL %s under strace: %v", a.ID, err)
		}
		if got := execs(); len(got) > 0 {
			t.Errorf("DEL of %s started processes:\n%s", a.ID, strings.Join(got, "\n"))
		}
	}
}
