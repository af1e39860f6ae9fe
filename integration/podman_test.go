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
	t   testing.TB
	dir string
	env []string
}

func newPodman(t testing.TB, netDir string, pluginDirs ...string) *podmanEnv {
	t.Helper()
	needTool(t, "podman", "`make deps` installs it (apt-get install podman runc)")
	needTool(t, "runc", "`make deps` installs it (apt-get install runc)")
	dir := t.TempDir()
	conf := fmt.Sprintf(`[containers]
default_ulimits = []
[network]
network_backend = "cni"
cni_plugin_dirs = [%s]
network_config_dir = %q
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
runtime = "runc"
`, quoted(append([]string{binDir, upstreamDir}, pluginDirs...)), netDir, filepath.Join(dir, "events.log"))
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
		t.Fatalf("podman import: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_, _ = p.run("rm", "-a", "-f", "-t", "0")
		_, _ = p.run("rmi", "-a", "-f")
	})
	return p
}

// quoted is a TOML array's items.
func quoted(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
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
	netDir, name, plainNet := g.runtimeNetwork(t, "podoff")
	p := newPodman(t, netDir)
	ctr := "web" + g.lan.ID
	plain := "plain" + g.lan.ID
	if out, err := p.run("run", "-d", "--name", plain, "--network", plainNet, "localhost/lanwire-busybox", "sleep", "600"); err != nil {
		t.Fatalf("podman run (the plain control): %v\n%s", err, out)
	}
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
	runtimeBlocked(t, p.run, plain, ctr, [][2]string{{g.lan.Internet, "80"}, {g.lan.Router, "9001"}, {g.lan.HostAddr, "8001"}})
	if out, err := p.run("rm", "-f", "-t", "0", ctr); err != nil {
		t.Fatalf("podman rm: %v %s", err, out)
	}
	waitFor(t, 5*time.Second, "podman rm to release the lease", func() bool { _, ok := g.lan.LeaseFor(mac); return !ok })
	if out := ruleset(t); strings.Contains(out, "net="+name+" ") {
		t.Errorf("firewall entries of the removed container left:\n%s", out)
	}
}
