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

// podman5 is Debian 13's podman 5 and netavark in a trixie root (made by
// `make deps`, scripts/trixie-root), entered with chroot on this host's
// kernel, bridges and /run; lanwire's netavark plugin is copied into it.
type podman5 struct {
	t    testing.TB
	root string
	conf string // containers.conf and storage.conf, inside the root
}

// trixieRoot is where `make deps` puts the root.
func trixieRoot() string {
	if r := os.Getenv("TRIXIE_ROOT"); r != "" {
		return r
	}
	return filepath.Join(binDir, "..", ".upstream", "trixie")
}

func newPodman5(t testing.TB, socket string) *podman5 {
	t.Helper()
	root, _ := filepath.Abs(trixieRoot())
	if _, err := os.Stat(filepath.Join(root, "usr/bin/podman")); err != nil {
		t.Skipf("no podman 5 root at %s: `make deps` makes it (scripts/trixie-root)", root)
	}
	p := &podman5{t: t, root: root}
	mount := func(args ...string) {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v %s", args, err, out)
		}
	}
	// The root's /run is its own, but for what it shares with the host:
	// /run/netns both ways (podman's namespaces must be the lease
	// daemon's too), lanwire's records and locks, and the daemon's socket.
	shared := []string{"/run/netns", "/run/lanwire", filepath.Dir(socket)}
	unmount := func() {
		// Shared mounts are made private before they go: an unmount would
		// otherwise propagate to the host's own namespaces.
		for i := len(shared) - 1; i >= 0; i-- {
			m := filepath.Join(root, shared[i])
			_ = exec.Command("mount", "--make-rprivate", m).Run()
			_ = exec.Command("umount", "-l", m).Run()
		}
		for _, m := range []string{"run", "dev", "sys", "proc"} {
			if exec.Command("umount", "-R", filepath.Join(root, m)).Run() != nil {
				_ = exec.Command("umount", "-lR", filepath.Join(root, m)).Run()
			}
		}
		_ = exec.Command("umount", root).Run()
	}
	unmount() // what a killed run may have left
	mount("--bind", root, root)
	t.Cleanup(unmount)
	mount("--bind", "/proc", filepath.Join(root, "proc"))
	mount("--rbind", "/sys", filepath.Join(root, "sys"))
	mount("--make-rslave", filepath.Join(root, "sys"))
	mount("--bind", "/dev", filepath.Join(root, "dev"))
	mount("-t", "tmpfs", "tmpfs", filepath.Join(root, "run"))
	for _, d := range shared {
		_ = os.MkdirAll(d, 0o755)
		_ = os.MkdirAll(filepath.Join(root, d), 0o755)
		mount("--bind", d, filepath.Join(root, d))
	}

	data, err := os.ReadFile(plugin("lanwire"))
	if err != nil {
		t.Fatal(err)
	}
	pluginDir := filepath.Join(root, "usr/libexec/netavark")
	_ = os.MkdirAll(pluginDir, 0o755)
	if err := os.WriteFile(filepath.Join(pluginDir, "lanwire"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("lanwire-test-%d", time.Now().UnixNano())
	p.conf = "/etc/" + id
	confDir := filepath.Join(root, p.conf)
	_ = os.MkdirAll(confDir, 0o755)
	runroot, graphroot := "/run/"+id, "/var/lib/"+id // (the root's own /run)
	t.Cleanup(func() {
		_, _ = p.run("rm", "-a", "-f", "-t", "0")
		_, _ = p.run("network", "prune", "-f")
		_ = os.RemoveAll(filepath.Join(root, graphroot))
		_ = os.RemoveAll(confDir)
	})
	conf := fmt.Sprintf(`[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "%s/events.log"
runtime = "runc"
[network]
network_config_dir = "%s/networks"
`, runroot, p.conf)
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", runroot, graphroot)
	_ = os.WriteFile(filepath.Join(confDir, "containers.conf"), []byte(conf), 0o644)
	_ = os.WriteFile(filepath.Join(confDir, "storage.conf"), []byte(storage), 0o644)

	tar := busyboxRootfs(t, t.TempDir(), "hello from podman 5")
	inRoot := filepath.Join("/tmp", id+".tar")
	tarData, _ := os.ReadFile(tar)
	_ = os.WriteFile(filepath.Join(root, inRoot), tarData, 0o644)
	defer os.Remove(filepath.Join(root, inRoot))
	if out, err := p.run("import", "--change", "ENV=PATH=/bin", inRoot, "localhost/lanwire-busybox"); err != nil {
		t.Fatalf("podman import: %v %s", err, out)
	}
	return p
}

func (p *podman5) run(args ...string) (string, error) {
	cmd := exec.Command("chroot", append([]string{p.root, "podman"}, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf+"/containers.conf",
		"CONTAINERS_STORAGE_CONF="+p.conf+"/storage.conf", "PODMAN_IGNORE_CGROUPSV1_WARNING=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// podman 5 (netavark) on lanwire's netavark plugin: `podman network create
// -d lanwire` with an allowlist, `podman run -p`: the container gets its
// lease from the LAN's server under its name, reaches the allowed host
// service and nothing else, a LAN client reaches its published port, and
// `podman rm` releases the lease and removes its firewall entries.
func TestPodman5(t *testing.T) {
	t.Parallel()
	g := newOfflineGround(t, "2m")
	l := g.lan
	// The daemon's socket under /run, which the root shares.
	sock := filepath.Join("/run", "lanwire-test-"+l.ID, "hb.sock")
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(sock)) })
	d := startDaemonWith(t, sock, "")
	p := newPodman5(t, d.Socket)

	name, plain := "lan"+l.ID, "lanplain"+l.ID
	common := []string{"-o", "bridge=" + l.Bridge, "-o", "daemonSocket=" + d.Socket, "-o", "autoStartDaemon=false"}
	if out, err := p.run(append(append([]string{"network", "create", "-d", "lanwire"}, common...), "-o", "allow=host:8000/tcp", name)...); err != nil {
		t.Fatalf("podman network create: %v %s", err, out)
	}
	if out, err := p.run(append(append([]string{"network", "create", "-d", "lanwire"}, common...), plain)...); err != nil {
		t.Fatalf("podman network create (the plain control): %v %s", err, out)
	}
	if out, err := p.run("network", "create", "-d", "lanwire", "-o", "bridge="+l.Bridge, "-o", "brige=x", "bad"+l.ID); err == nil || !strings.Contains(out, `unknown option "brige"`) {
		t.Errorf("podman network create with a misspelt option: %v %s", err, out)
	}

	ctr, plainCtr := "web"+l.ID, "plain"+l.ID
	if out, err := p.run("run", "-d", "--name", plainCtr, "--network", plain, "localhost/lanwire-busybox", "/bin/busybox", "sleep", "600"); err != nil {
		t.Fatalf("podman run (the plain control): %v %s", err, out)
	}
	if out, err := p.run("run", "-d", "--name", ctr, "--network", name, "-p", "18960:80",
		"localhost/lanwire-busybox", "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"); err != nil {
		t.Fatalf("podman run: %v %s", err, out)
	}
	ip, _ := p.run("inspect", ctr, "--format", "{{(index .NetworkSettings.Networks \""+name+"\").IPAddress}}")
	mac, _ := p.run("inspect", ctr, "--format", "{{(index .NetworkSettings.Networks \""+name+"\").MacAddress}}")
	ip, mac = strings.TrimSpace(ip), strings.TrimSpace(mac)
	lease, ok := l.LeaseFor(mac)
	if !ok || lease.IP != ip {
		t.Fatalf("dnsmasq's lease for podman 5's container (%s, %s): %+v %v\n%s", ip, mac, lease, ok, l.Log())
	}
	if lease.Hostname != ctr {
		t.Errorf("dnsmasq saw hostname %q, want the container name %q", lease.Hostname, ctr)
	}
	if out, err := exec.Command("ip", "netns", "exec", l.LANNS, "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+l.HostAddr+":18960/").CombinedOutput(); err != nil || !strings.Contains(string(out), "hello from podman 5") {
		t.Errorf("published port from a LAN client: %v %s", err, out)
	}
	// `podman exec` from a podman in a chroot enters the container's
	// mount namespace at that namespace's root, the host's, not the
	// image's; so the probes run from the host in the container's network
	// namespace (what is checked is the network, not the image), and the
	// container's files are read through its main process (whose root is
	// the image's: its httpd served the page above).
	pid := func(c string) string {
		out, _ := p.run("inspect", c, "--format", "{{.State.Pid}}")
		return strings.TrimSpace(out)
	}
	inCtr := func(args ...string) (string, error) {
		if len(args) < 3 || args[0] != "exec" {
			return p.run(args...)
		}
		cmd := append([]string{"busybox"}, args[2:]...)
		if args[2] == "timeout" && len(args) > 4 {
			cmd = append([]string{"timeout", args[3], "busybox"}, args[4:]...) // coreutils: 124 when it ends it
		}
		out, err := exec.Command("nsenter", append([]string{"-t", pid(args[1]), "-n", "--"}, cmd...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := greets(inCtr, ctr, l.HostAddr, "8000"); err != nil {
		t.Errorf("the container cannot reach the allowed host service: %v %s", err, out)
	}
	runtimeBlocked(t, inCtr, plainCtr, ctr, [][2]string{{l.Internet, "80"}, {l.Router, "9001"}, {l.HostAddr, "8001"}})
	if resolv, _ := os.ReadFile(filepath.Join("/proc", pid(ctr), "root/etc/resolv.conf")); !strings.Contains(string(resolv), "nameserver "+l.Router) {
		t.Errorf("the container's resolv.conf does not name the LAN's DNS server %s:\n%s", l.Router, resolv)
	}

	if out, err := p.run("rm", "-f", "-t", "0", ctr); err != nil {
		t.Fatalf("podman rm: %v %s", err, out)
	}
	waitFor(t, 5*time.Second, "podman rm to release the lease", func() bool { _, ok := l.LeaseFor(mac); return !ok })
	if out := ruleset(t); strings.Contains(out, "net="+name+" ") {
		t.Errorf("firewall entries of the removed container left:\n%s", out)
	}
}
