package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanwire/lanwire/integration/testlan"
)

// nerdctlEnv is a containerd with its own config, state and socket under
// a temp dir, and nerdctl (built at a pinned version by `make deps`)
// talking to it with our plugins and conflist.
type nerdctlEnv struct {
	t    *testing.T
	args []string
}

// nerdctlSetup is a nerdctl and the containerd it runs on.
type nerdctlSetup struct {
	name       string
	nerdctl    string // its path
	containerd string // its path
	path       string // prepended to containerd's PATH (its runc shim)
}

// nerdctl1 is nerdctl 1.7 (NERDCTL) on Debian's containerd 1.6.
func nerdctl1(t *testing.T) nerdctlSetup {
	t.Helper()
	bin := os.Getenv("NERDCTL")
	if bin == "" {
		bin, _ = exec.LookPath("nerdctl")
	}
	if bin == "" {
		bin = needTool(t, "nerdctl", "`make deps` builds it (set NERDCTL to its path)")
	}
	return nerdctlSetup{name: "nerdctl 1.7 on containerd 1.6", nerdctl: bin,
		containerd: needTool(t, "containerd", "`make deps` installs it (apt-get install containerd)")}
}

// nerdctl2 is nerdctl 2 (NERDCTL2) on containerd 2 (CONTAINERD2).
func nerdctl2(t *testing.T) nerdctlSetup {
	t.Helper()
	dir := containerd2Dir(t)
	bin := os.Getenv("NERDCTL2")
	if bin == "" {
		t.Skip("NERDCTL2 is not set: `make deps` builds nerdctl 2, `make test` sets it")
	}
	return nerdctlSetup{name: "nerdctl 2 on containerd 2", nerdctl: bin, containerd: filepath.Join(dir, "containerd"), path: dir}
}

// newNerdctl is nerdctl 1.7 on containerd 1.6.
func newNerdctl(t *testing.T, netDir string) *nerdctlEnv {
	t.Helper()
	return newNerdctlOn(t, netDir, nerdctl1(t))
}

func newNerdctlOn(t *testing.T, netDir string, s nerdctlSetup) *nerdctlEnv {
	t.Helper()
	bin := s.nerdctl
	dir := t.TempDir()
	// nerdctl wants its plugins in one directory, the upstream tuning too.
	cniBin := filepath.Join(dir, "cni-bin")
	_ = os.MkdirAll(cniBin, 0o755)
	for _, d := range []string{binDir, upstreamDir} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			_ = os.Symlink(filepath.Join(d, e.Name()), filepath.Join(cniBin, e.Name()))
		}
	}
	if _, err := os.Stat(filepath.Join(cniBin, "tuning")); err != nil {
		t.Fatal("the upstream tuning plugin is missing: `make deps` installs it (UPSTREAM_BIN)")
	}
	sock := filepath.Join(dir, "containerd.sock")
	conf := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock)
	_ = os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o644)
	logf, _ := os.Create(filepath.Join(dir, "containerd.log"))
	ctrd := exec.Command(s.containerd, "--config", filepath.Join(dir, "config.toml"))
	ctrd.Stdout, ctrd.Stderr = logf, logf
	if s.path != "" {
		ctrd.Env = append(os.Environ(), "PATH="+s.path+":"+os.Getenv("PATH"))
	}
	if err := ctrd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	n := &nerdctlEnv{t: t, args: []string{bin, "--address", sock, "--data-root", filepath.Join(dir, "nerdctl"),
		"--snapshotter", "native", "--cni-path", cniBin, "--cni-netconfpath", netDir, "--cgroup-manager", "cgroupfs"}}
	t.Cleanup(func() {
		// (nerdctl 1.7 has no `rm --all`.)
		ids, _ := n.run("ps", "-aq")
		for _, id := range strings.Fields(ids) {
			if out, err := n.run("rm", "-f", id); err != nil {
				t.Errorf("nerdctl rm -f %s: %v %s", id, err, out)
			}
		}
		testlan.StopProcess(ctrd, 10*time.Second)
	})
	ready := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, err := n.run("version"); err == nil {
			ready = true
			break
		}
	}
	if !ready {
		b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
		t.Fatalf("containerd did not answer on %s within 10s; its log:\n%s", sock, tail(string(b), 20))
	}
	archive := filepath.Join(dir, "image.tar")
	ociArchive(t, busyboxRootfs(t, dir, "hello from nerdctl"), archive, "localhost/lanwire-busybox:latest")
	if out, err := n.run("load", "-i", archive); err != nil {
		t.Fatalf("nerdctl load: %v %s", err, out)
	}
	return n
}

func (n *nerdctlEnv) run(args ...string) (string, error) {
	out, err := exec.Command(n.args[0], append(n.args[1:], args...)...).CombinedOutput()
	return string(out), err
}

// nerdctl with containerd runs a container on our conflist: lease from
// dnsmasq, offline rules, published port, and `nerdctl rm` releases; with
// nerdctl 1.7 on containerd 1.6 and nerdctl 2 on containerd 2.
func TestNerdctl(t *testing.T) {
	t.Parallel()
	for i, setup := range []func(*testing.T) nerdctlSetup{nerdctl1, nerdctl2} {
		port := fmt.Sprint(18790 + i)
		t.Run(fmt.Sprint(i+1), func(t *testing.T) {
			t.Parallel()
			nerdctlOffline(t, setup(t), port)
		})
	}
}

func nerdctlOffline(t *testing.T, s nerdctlSetup, port string) {
	t.Logf("%s: %s", s.name, s.nerdctl)
	g := newOfflineGround(t, "2m")
	netDir, name, plainNet := g.runtimeNetwork(t, "nerdoff")
	n := newNerdctlOn(t, netDir, s)
	ctr := "web" + g.lan.ID
	plain := "plain" + g.lan.ID
	if out, err := n.run("run", "-d", "--name", plain, "--network", plainNet, "localhost/lanwire-busybox", "sleep", "600"); err != nil {
		t.Fatalf("nerdctl run (the plain control): %v\n%s", err, out)
	}
	// (nerdctl 1.7 refuses --mac-address for network types other than
	// bridge and macvlan, so the MAC is the one derived by the plugin.)
	if out, err := n.run("run", "-d", "--name", ctr, "--network", name, "-p", port+":80",
		"localhost/lanwire-busybox", "httpd", "-f", "-p", "80", "-h", "/www"); err != nil {
		t.Fatalf("nerdctl run: %v\n%s", err, out)
	}
	out, err := n.run("exec", ctr, "cat", "/sys/class/net/eth0/address")
	mac := strings.TrimSpace(out)
	if err != nil {
		t.Fatalf("reading the container's MAC: %v %s", err, out)
	}
	if _, ok := g.lan.LeaseFor(mac); !ok {
		t.Fatalf("dnsmasq holds no lease for the container's MAC %s:\n%s", mac, g.lan.Log())
	}
	lanNS := filepath.Base(filepath.Join("/var/run/netns", g.lan.LANNS))
	if out, err := exec.Command("ip", "netns", "exec", lanNS, "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+g.lan.HostAddr+":"+port+"/").CombinedOutput(); err != nil || !strings.Contains(string(out), "hello from nerdctl") {
		t.Errorf("published port from a LAN client: %v %s", err, out)
	}
	greet := func(host, port string) (string, error) { return greets(n.run, ctr, host, port) }
	if out, err := greet(g.lan.HostAddr, "8000"); err != nil {
		t.Errorf("the container cannot reach the host mirror: %v %s", err, out)
	}
	runtimeBlocked(t, n.run, plain, ctr, [][2]string{{g.lan.Internet, "80"}, {g.lan.Router, "9001"}})
	if out, err := n.run("rm", "-f", ctr); err != nil {
		t.Fatalf("nerdctl rm: %v %s", err, out)
	}
	waitFor(t, 5*time.Second, "nerdctl rm to release the lease", func() bool { _, ok := g.lan.LeaseFor(mac); return !ok })
	if out := ruleset(t); strings.Contains(out, "net="+name+" ") {
		t.Errorf("firewall entries of the removed container left:\n%s", out)
	}
}
