package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podmanEnv is a podman that uses only the test's own configuration:
// the CNI backend on our plugins and conflist, its own storage (vfs),
// cgroupfs, runc and a file events log (what Debian 12's podman 4.3 needs
// on these machines).
type podmanEnv struct {
	t   *testing.T
	dir string
	env []string
}

func newPodman(t *testing.T, netDir string) *podmanEnv {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed: `make deps` installs it (apt-get install podman runc)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed: `make deps` installs it")
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`[containers]
default_ulimits = []
[network]
network_backend = "cni"
cni_plugin_dirs = [%q, %q]
network_config_dir = %q
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
runtime = "runc"
`, binDir, upstreamDir, netDir, filepath.Join(dir, "events.log"))
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", filepath.Join(dir, "storage"), filepath.Join(dir, "run"))
	for name, body := range map[string]string{"containers.conf": conf, "storage.conf": storage} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &podmanEnv{t: t, dir: dir, env: append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"))}
	// An image made here: busybox-static as the whole root filesystem.
	tar := busyboxRootfs(t, dir, "hello from podman")
	if out, err := p.run("import", tar, "localhost/lanwire-busybox"); err != nil {
		t.Skipf("podman cannot import an image on this machine: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_, _ = p.run("rm", "-a", "-f", "-t", "0")
		_, _ = p.run("rmi", "-a", "-f")
	})
	return p
}

func (p *podmanEnv) run(args ...string) (string, error) {
	cmd := exec.Command("podman", args...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// podman (Debian's 4.3, CNI backend) runs a container on our conflist: it
// gets its lease from dnsmasq, the offline rules hold, the published port
// answers and `podman rm` releases the lease.
func TestPodman(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	netDir, name := g.runtimeNetwork(t, "podoff")
	p := newPodman(t, netDir)
	ctr := "web" + g.lan.ID
	out, err := p.run("run", "-d", "--name", ctr, "--network", name, "-p", "18690:80",
		"localhost/lanwire-busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	ip, _ := p.run("inspect", ctr, "--format", "{{(index .NetworkSettings.Networks \""+name+"\").IPAddress}}")
	ip = strings.TrimSpace(ip)
	mac, _ := p.run("inspect", ctr, "--format", "{{(index .NetworkSettings.Networks \""+name+"\").MacAddress}}")
	mac = strings.TrimSpace(mac)
	lease, ok := g.lan.LeaseFor(mac)
	if !ok || lease.IP != ip {
		t.Fatalf("dnsmasq lease for podman's container (%s, %s): %+v %v", ip, mac, lease, ok)
	}
	if lease.Hostname != ctr {
		t.Errorf("dnsmasq saw hostname %q, want the container name %q", lease.Hostname, ctr)
	}
	lanNS := filepath.Join("/var/run/netns", g.lan.LANNS)
	if out, err := exec.Command("ip", "netns", "exec", filepath.Base(lanNS), "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+g.lan.HostAddr+":18690/").CombinedOutput(); err != nil || !strings.Contains(string(out), "hello from podman") {
		t.Errorf("published port from a LAN client: %v %s", err, out)
	}
	greet := func(host, port string) (string, error) { return greets(p.run, ctr, host, port) }
	if out, err := greet(g.lan.HostAddr, "8000"); err != nil {
		t.Errorf("the container cannot reach the host mirror: %v %s", err, out)
	}
	for _, hp := range [][2]string{{g.lan.Internet, "80"}, {g.lan.Router, "9001"}, {g.lan.HostAddr, "8001"}} {
		if out, err := greet(hp[0], hp[1]); err == nil {
			t.Errorf("the offline container reached %s:%s: %s", hp[0], hp[1], out)
		}
	}
	if out, err := p.run("rm", "-f", "-t", "0", ctr); err != nil {
		t.Fatalf("podman rm: %v %s", err, out)
	}
	waitFor(t, 5*time.Second, "podman rm to release the lease", func() bool { _, ok := g.lan.LeaseFor(mac); return !ok })
	if out, _ := exec.Command("iptables-save").Output(); strings.Contains(string(out), "net="+name+" ") {
		t.Errorf("rules of the removed container left:\n%s", out)
	}
}
