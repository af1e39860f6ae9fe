package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/lanwire/lanwire/integration/testlan"
)

// cri is a containerd 2 with its CRI, driven by crictl as a kubelet
// drives it, on a conflist directory of its own.
type cri struct {
	t    *testing.T
	dir  string
	sock string
	bin  string // containerd 2's binaries and crictl
	cmd  *exec.Cmd
}

// containerd2Dir is where `make deps` builds containerd 2, its runc shim,
// ctr and crictl (CONTAINERD2).
func containerd2Dir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CONTAINERD2")
	if dir == "" {
		t.Skip("CONTAINERD2 is not set: `make deps` builds containerd 2 and crictl, `make test` sets it")
	}
	for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "crictl"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Skipf("%s is missing from CONTAINERD2=%s: `make deps` builds it", b, dir)
		}
	}
	needTool(t, "runc", "`make deps` installs it (apt-get install runc)")
	return dir
}

// criImages builds a sandbox ("pause") image and a busybox image in a
// registry on loopback and carries them to containerd the offline way:
// `offline-image save` into one tar, `ctr images import`.
func criImages(t *testing.T, dir string) (pause, app, tar string) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	base, err := tarball.LayerFromFile(busyboxRootfs(t, dir, "hello from a CRI pod"), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	r := &imageRegistry{host: host}
	sleeper := image(t, "amd64", base)
	cf, _ := sleeper.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Entrypoint, cf.Config.Cmd = []string{"/bin/sleep", "2147483647"}, nil
	if sleeper, err = mutate.ConfigFile(sleeper, cf); err != nil {
		t.Fatal(err)
	}
	r.push(t, "pause:1", mutate.ConfigMediaType(sleeper, types.OCIConfigJSON))
	r.push(t, "busybox:1", image(t, "amd64", base))
	pause, app, tar = host+"/pause:1", host+"/busybox:1", filepath.Join(dir, "images.tar")
	if code, stderr := saveImage(t, nil, pause, app, "-o", tar); code != 0 {
		t.Fatalf("offline-image save: exit %d %s", code, stderr)
	}
	return pause, app, tar
}

// startCRI starts containerd 2 with the CRI on conflists in netDir and
// sandbox image pause, with lanwire's and the upstream plugins.
func startCRI(t *testing.T, bin, netDir, pause string) *cri {
	t.Helper()
	return startCRIWith(t, bin, netDir, pause, binDir, upstreamDir)
}

// startCRIWith is startCRI with the plugins from pluginDirs.
func startCRIWith(t *testing.T, bin, netDir, pause string, pluginDirs ...string) *cri {
	t.Helper()
	dir := t.TempDir()
	c := &cri{t: t, dir: dir, sock: filepath.Join(dir, "containerd.sock"), bin: bin}
	conf := fmt.Sprintf(`version = 3
root = %q
state = %q
[grpc]
  address = %q
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q
[plugins.'io.containerd.cri.v1.runtime']
  # A sandbox's oom_score_adj of -998 is refused where this process may not
  # go below its own (a container, a CI job).
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%s]
    conf_dir = %q
    max_conf_num = 1
    use_internal_loopback = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "runc"
        SystemdCgroup = false
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, pause, quoted(pluginDirs), netDir)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ep := "unix://" + c.sock
	if err := os.WriteFile(filepath.Join(dir, "crictl.yaml"), []byte("runtime-endpoint: "+ep+"\nimage-endpoint: "+ep+"\ntimeout: 60\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(filepath.Join(bin, "containerd"), "--config", filepath.Join(dir, "config.toml"))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	// The runc shim is found on PATH.
	c.cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting containerd 2: %v", err)
	}
	t.Cleanup(c.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := c.crictl("version")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd 2's CRI did not answer within 20s: %v %s\ncontainerd's log:\n%s", err, out, c.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c
}

func (c *cri) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
	return tail(string(b), 30)
}

func (c *cri) stop() {
	if c.cmd == nil {
		return
	}
	// Pods left by a failed test go first (their DEL releases the leases).
	if ids, err := c.crictl("pods", "-q"); err == nil {
		for _, id := range strings.Fields(ids) {
			_, _ = c.crictl("stopp", id)
			_, _ = c.crictl("rmp", "-f", id)
		}
	}
	testlan.StopProcess(c.cmd, 15*time.Second)
	c.cmd = nil
}

func (c *cri) crictl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bin, "crictl"), args...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE="+filepath.Join(c.dir, "crictl.yaml"))
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		return out.String() + stderr.String(), fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(out.String()), nil
}

func (c *cri) ctr(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(c.bin, "ctr"), append([]string{"--address", c.sock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	return string(out), err
}

// networkReady is the NetworkReady condition of `crictl info`.
func (c *cri) networkReady() (bool, string) {
	out, err := c.crictl("info")
	if err != nil {
		c.t.Fatalf("crictl info: %v", err)
	}
	var info struct {
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  bool   `json:"status"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		c.t.Fatalf("crictl info: %v\n%s", err, out)
	}
	for _, cond := range info.Status.Conditions {
		if cond.Type == "NetworkReady" {
			return cond.Status, cond.Message
		}
	}
	c.t.Fatalf("crictl info has no NetworkReady condition:\n%s", out)
	return false, ""
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// containerd 2's CRI, driven as a kubelet drives it (crictl runp, create,
// start, stopp, rmp), on a lanwire conflist of CNI 1.1.0: the pod gets its
// lease from the LAN's DHCP server, is offline but for its allowlist,
// publishes its port to the LAN; the CRI calls STATUS and reports the
// network not ready while the lease daemon is down; stopping the pod
// releases the lease.
func TestContainerd2CRI(t *testing.T) {
	t.Parallel()
	bin := containerd2Dir(t)
	g := newOfflineGround(t, "2m")
	netDir := t.TempDir()
	name := "cri" + g.lan.ID
	conflist := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
 {"type":"hostbridge-dhcp","bridge":%q,"daemonSocket":%q,"autoStartDaemon":false},
 {"type":"offline-egress","allow":[{"to":"host","ports":["8000/tcp"]}]},
 {"type":"portmap-lite","capabilities":{"portMappings":true}}]}`, name, g.lan.Bridge, g.d.Socket)
	if err := os.WriteFile(filepath.Join(netDir, "10-lanwire.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pause, app, tar := criImages(t, dir)
	c := startCRI(t, bin, netDir, pause)
	if out, err := c.ctr("images", "import", "--local", "--snapshotter", "native", tar); err != nil {
		t.Fatalf("ctr images import of offline-image's tar: %v %s", err, out)
	}
	if ok, msg := c.networkReady(); !ok {
		t.Fatalf("the CRI reports the network not ready with the lease daemon up: %s\n%s", msg, c.log())
	}

	pod := writeJSON(t, filepath.Join(dir, "pod.json"), map[string]any{
		"metadata":      map[string]any{"name": "web", "namespace": "default", "uid": "uid-" + g.lan.ID, "attempt": 0},
		"hostname":      "web" + g.lan.ID,
		"log_directory": filepath.Join(dir, "logs"),
		"port_mappings": []map[string]any{{"protocol": 0, "container_port": 80, "host_port": 18720}},
		"linux":         map[string]any{},
	})
	ctr := writeJSON(t, filepath.Join(dir, "ctr.json"), map[string]any{
		"metadata": map[string]any{"name": "httpd"},
		"image":    map[string]any{"image": app},
		"command":  []string{"httpd", "-f", "-p", "80", "-h", "/www"},
		"log_path": "httpd.log",
		"linux":    map[string]any{},
	})
	podID, err := c.crictl("runp", pod)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.log())
	}
	ctrID, err := c.crictl("create", podID, ctr, pod)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.log())
	}
	if _, err := c.crictl("start", ctrID); err != nil {
		t.Fatalf("%v\n%s", err, c.log())
	}

	// The lease: the daemon holds it for the pod, dnsmasq gave it.
	var mac, ip string
	for _, l := range g.d.Leases() {
		if l.Key.ContainerID == podID && l.Key.Network == name {
			mac, ip = l.Spec.MAC, l.Info.Address.IP.String()
		}
	}
	if mac == "" {
		t.Fatalf("the lease daemon holds no lease for pod %s: %+v", podID, g.d.Leases())
	}
	if dl, ok := g.lan.LeaseFor(mac); !ok || dl.IP != ip {
		t.Errorf("dnsmasq's lease for the pod (%s, %s): %+v %v", mac, ip, dl, ok)
	}
	if out, _ := c.crictl("inspectp", "-o", "go-template", "--template", "{{.status.network.ip}}", podID); out != ip {
		t.Errorf("the CRI reports the pod's address as %q, the lease is %s", out, ip)
	}
	// The published port, from a LAN client.
	waitFor(t, 10*time.Second, "the pod's published port from a LAN client", func() bool {
		out, err := exec.Command("ip", "netns", "exec", g.lan.LANNS, "timeout", "3", "busybox", "wget", "-q", "-O", "-",
			"http://"+g.lan.HostAddr+":18720/").CombinedOutput()
		return err == nil && strings.Contains(string(out), "hello from a CRI pod")
	})
	// Offline: the host service on its allowlist, not the internet.
	inPod := func(args ...string) (string, error) { return c.crictl(append([]string{"exec", ctrID}, args...)...) }
	if out, err := inPod("timeout", "3", "nc", g.lan.HostAddr, "8000"); err != nil || !strings.Contains(out, "hello from") {
		t.Errorf("the pod cannot reach the host service on its allowlist: %v %s", err, out)
	}
	if out, err := inPod("timeout", "3", "nc", g.lan.Internet, "80"); err == nil {
		t.Errorf("the offline pod reached the internet: %s", out)
	}

	// STATUS: the lease daemon down (and not started by the plugin).
	g.d.Stop()
	ok, msg := c.networkReady()
	g.d.Start()
	if ok || !strings.Contains(msg, "lease daemon not reachable") {
		t.Errorf("with the lease daemon down the CRI reports NetworkReady %v (%q), want false with the plugin's message", ok, msg)
	}
	waitFor(t, 10*time.Second, "the network ready again with the daemon back", func() bool { ok, _ := c.networkReady(); return ok })

	// Stopping the pod releases the lease.
	if _, err := c.crictl("stopp", podID); err != nil {
		t.Fatalf("%v\n%s", err, c.log())
	}
	waitFor(t, 10*time.Second, "stopping the pod to release its lease", func() bool { _, ok := g.lan.LeaseFor(mac); return !ok })
	if _, err := c.crictl("rmp", podID); err != nil {
		t.Errorf("%v", err)
	}
	if out := ruleset(t); strings.Contains(out, "net="+name+" ") {
		t.Errorf("firewall entries of the removed pod left:\n%s", out)
	}
}
