package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// The Kubernetes install, as far as this machine allows (no kubelet): the
// node image `make image` builds runs under containerd 2 as the DaemonSet
// runs it, against a temporary "host" directory. Its install step puts the
// plugins into the host's CNI directory; its lease daemon (host network,
// privileged, the host's /run/cni, state, netns and /run/lanwire mounted)
// serves a pod that the CRI attaches with the installed plugins: the pod
// gets its lease from the containerized daemon, which releases it when the
// pod stops.
func TestKubernetesImage(t *testing.T) {
	t.Parallel()
	bin := containerd2Dir(t)
	host := t.TempDir()
	cniBin, sockDir, stateDir := filepath.Join(host, "opt/cni/bin"), filepath.Join(host, "run/cni"), filepath.Join(host, "var/lib/cni/hostbridge-dhcp")
	for _, d := range []string{cniBin, sockDir, stateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	image := filepath.Join(dir, "lanwire-image.tar")
	if out, err := exec.Command(plugin("lanwire-image"), "-bin", binDir, "-tag", "lanwire:test", "-o", image).CombinedOutput(); err != nil {
		t.Fatalf("lanwire-image: %v %s", err, out)
	}

	g := newOfflineGround(t, "2m")
	name := "k8s" + g.lan.ID
	socket := filepath.Join(sockDir, "hostbridge-dhcp.sock")
	netDir := t.TempDir()
	conflist := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
 {"type":"hostbridge-dhcp","bridge":%q,"daemonSocket":%q,"autoStartDaemon":false},
 {"type":"offline-egress","allow":[{"to":"host","ports":["8000/tcp"]}]}]}`, name, g.lan.Bridge, socket)
	if err := os.WriteFile(filepath.Join(netDir, "10-lanwire.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	pause, _, tar := criImages(t, dir)
	c := startCRIWith(t, bin, netDir, pause, cniBin)
	for _, tr := range []string{tar, image} {
		if out, err := c.ctr("images", "import", "--local", "--snapshotter", "native", tr); err != nil {
			t.Fatalf("ctr images import %s: %v %s", tr, err, out)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := c.ctr(append([]string{"run", "--snapshotter", "native"}, args...)...)
		if err != nil {
			t.Fatalf("ctr run %v: %v %s", args, err, out)
		}
		return out
	}
	bind := func(src, dst, opts string) string {
		return fmt.Sprintf("type=bind,src=%s,dst=%s,options=rbind:%s", src, dst, opts)
	}

	// The init container: install into the host's CNI directory.
	run("--rm", "--mount", bind(cniBin, "/host/opt/cni/bin", "rw"), "docker.io/library/lanwire:test", "install-"+g.lan.ID,
		"/lanwire/hostbridge-dhcp", "install", "--to", "/host/opt/cni/bin")
	for _, p := range []string{"hostbridge-dhcp", "offline-egress", "portmap-lite", "lanwire"} {
		if got, want := sha256File(t, filepath.Join(cniBin, p)), sha256File(t, plugin(p)); got != want {
			t.Errorf("the installed %s differs from the built one", p)
		}
	}

	// The daemon container, as the DaemonSet runs it.
	daemon := "daemon-" + g.lan.ID
	run("-d", "--net-host", "--privileged",
		"--mount", bind(sockDir, "/run/cni", "rw"),
		"--mount", bind(stateDir, "/var/lib/cni/hostbridge-dhcp", "rw"),
		"--mount", bind("/var/run/netns", "/var/run/netns", "rslave"),
		"--mount", bind("/run/lanwire", "/run/lanwire", "rw"),
		"docker.io/library/lanwire:test", daemon,
		"/lanwire/hostbridge-dhcp", "daemon", "--socket", "/run/cni/hostbridge-dhcp.sock", "--state-dir", "/var/lib/cni/hostbridge-dhcp")
	t.Cleanup(func() {
		_, _ = c.ctr("task", "kill", "-s", "SIGTERM", daemon)
		for i := 0; i < 50; i++ {
			if out, _ := c.ctr("task", "ls"); !strings.Contains(out, daemon) || strings.Contains(out, "STOPPED") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = c.ctr("task", "delete", "-f", daemon)
		_, _ = c.ctr("container", "delete", daemon)
	})
	d := &daemonProc{t: t, Socket: socket}
	waitFor(t, 10*time.Second, "the containerized lease daemon to answer", func() bool {
		_, err := d.Call(leaseapi.Request{Method: leaseapi.MethodStatus})
		return err == nil
	})
	if ok, msg := c.networkReady(); !ok {
		t.Fatalf("the CRI reports the network not ready with the daemon container up: %s", msg)
	}

	pod := writeJSON(t, filepath.Join(dir, "pod.json"), map[string]any{
		"metadata":      map[string]any{"name": "k8s", "namespace": "default", "uid": "uid-k8s-" + g.lan.ID},
		"hostname":      "k8s" + g.lan.ID,
		"log_directory": filepath.Join(dir, "logs"),
		"linux":         map[string]any{},
	})
	podID, err := c.crictl("runp", pod)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.log())
	}
	var mac string
	for _, l := range d.Leases() {
		if l.Key.ContainerID == podID {
			mac = l.Spec.MAC
		}
	}
	if _, ok := g.lan.LeaseFor(mac); mac == "" || !ok {
		t.Fatalf("no lease for the pod from the containerized daemon (MAC %q): %+v", mac, d.Leases())
	}
	if _, err := c.crictl("stopp", podID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the containerized daemon to release the pod's lease", func() bool { _, ok := g.lan.LeaseFor(mac); return !ok })
	_, _ = c.crictl("rmp", podID)
}
