package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanwire/lanwire/integration/testlan"
)

// cniErr is a plugin's error JSON.
type cniErr struct {
	Code uint   `json:"code"`
	Msg  string `json:"msg"`
	Det  string `json:"details"`
}

func (e cniErr) String() string { return fmt.Sprintf("%d %s: %s", e.Code, e.Msg, e.Det) }

// cnitoolErr runs cnitool and parses the error a plugin answered.
func cnitoolErr(t *testing.T, dir string, env []string, args ...string) (cniErr, string) {
	t.Helper()
	cmd := exec.Command(cnitool, args...)
	cmd.Env = append(append(os.Environ(), "NETCONFPATH="+dir, "CNI_PATH="+binDir+":"+upstreamDir), env...)
	out, err := cmd.CombinedOutput()
	var e cniErr
	if err != nil {
		// cnitool prints the plugin's message; the CNI error JSON is its
		// own when the plugin is run directly.
		e.Msg = string(out)
	}
	return e, string(out)
}

// Mistakes a newcomer makes are caught early, and named: each of the
// issue's list, as a user meets it.
func TestNewcomerMistakes(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{HostIP: true})
	d := startDaemon(t)
	write := func(dir, name, conf string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name+".conflist"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a chain without cniVersion", func(t *testing.T) {
		dir := t.TempDir()
		conf := fmt.Sprintf(`{"name":"nover","plugins":[{"type":"hostbridge-dhcp","bridge":%q,"daemonSocket":%q,"autoStartDaemon":false},{"type":"offline-egress"}]}`, l.Bridge, d.Socket)
		write(dir, "nover", conf)
		c := container(t, l)
		_, out := cnitoolErr(t, dir, nil, "add", "nover", c)
		if !strings.Contains(out, `no "cniVersion"`) || !strings.Contains(out, `"cniVersion": "1.1.0"`) {
			t.Errorf("ADD does not say the conflist lacks a cniVersion:\n%s", out)
		}
		_, _ = cnitoolErr(t, dir, nil, "del", "nover", c)
		r, code, dout := doctorRun(t, "--conflist", filepath.Join(dir, "nover.conflist"), "--socket", d.Socket)
		if code == 0 {
			t.Errorf("doctor passed a chain without cniVersion:\n%s", dout)
		}
		wantFailed(t, r, code, dout, "conflist cniVersion", `"cniVersion": "1.1.0"`)
	})

	t.Run("a daemonSocket in a directory that does not exist", func(t *testing.T) {
		// The network names the running daemon's state directory but
		// another socket: no second daemon on the same leases.
		sock := filepath.Join(t.TempDir(), "nodir", "hb.sock")
		n := newNetwork(t, l, d, map[string]any{"daemonSocket": sock, "autoStartDaemon": true, "daemonStateDir": d.StateDir})
		a := attach{ID: "wrongsock", Netns: container(t, l)}
		_, err := n.Add(a)
		te := cniError(t, err)
		if te.Code != 7 || !strings.Contains(te.Msg, d.Socket) || !strings.Contains(te.Msg, "pid") {
			t.Errorf("got %d %q, want error 7 naming the running daemon's pid and socket %s", te.Code, te.Msg, d.Socket)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Error("a second daemon was started on the same state directory")
		}
		// A second daemon started by hand on that state directory refuses.
		out, err := exec.Command(plugin("hostbridge-dhcp"), "daemon", "--socket", sock, "--state-dir", d.StateDir).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "another lease daemon") || !strings.Contains(string(out), d.Socket) {
			t.Errorf("a second daemon on %s: %v\n%s", d.StateDir, err, out)
		}
		// leases --conflist finds the socket the network names.
		cl := newNetwork(t, l, d, nil)
		listed, err := exec.Command(plugin("hostbridge-dhcp"), "leases", "--conflist", filepath.Join(cl.Dir, cl.Name+".conflist")).CombinedOutput()
		if err != nil {
			t.Errorf("leases --conflist: %v\n%s", err, listed)
		}
	})

	t.Run("a daemonSocket under a regular file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "afile")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		n := newNetwork(t, l, d, map[string]any{"daemonSocket": filepath.Join(file, "hb.sock"), "autoStartDaemon": true})
		a := attach{ID: "filesock", Netns: container(t, l)}
		_, err := n.Add(a)
		te := cniError(t, err)
		if te.Code != 7 || !strings.Contains(te.Msg, "cannot be a socket") || strings.Contains(te.Msg, "systemctl") {
			t.Errorf("got %d %q, want error 7 saying the path cannot hold a socket", te.Code, te.Msg)
		}
		if err := n.Del(a); err != nil {
			t.Errorf("DEL after an ADD that obtained nothing: %v", err)
		}
		if got := links(t, a.Netns); len(got) != 1 {
			t.Errorf("links left: %v", got)
		}
	})

	t.Run("not root", func(t *testing.T) {
		n := newNetwork(t, l, d, nil)
		c := container(t, l)
		var conf map[string]any
		_ = json.Unmarshal(n.list.Plugins[0].Bytes, &conf)
		conf["cniVersion"], conf["name"] = "1.1.0", n.Name
		data, _ := json.Marshal(conf)
		cmd := exec.Command(plugin("hostbridge-dhcp"))
		cmd.Env = append(os.Environ(), "CNI_COMMAND=ADD", "CNI_CONTAINERID=notroot", "CNI_NETNS="+c, "CNI_IFNAME=eth0", "CNI_PATH="+binDir)
		cmd.Stdin = strings.NewReader(string(data))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := cmd.Output()
		var e cniErr
		_ = json.Unmarshal(out, &e)
		if !strings.Contains(e.Msg, "must run as root") || strings.Contains(e.Msg, "start it with") {
			t.Errorf("ADD as uid 65534 with the daemon running: %s, want it to say the plugin must run as root", e)
		}
	})

	t.Run("a bridge without an uplink", func(t *testing.T) {
		br := "lwt" + l.ID + "nu"
		if out, err := exec.Command("ip", "link", "add", br, "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
		_ = exec.Command("ip", "link", "set", br, "up").Run()
		n := newNetwork(t, l, d, map[string]any{"bridge": br})
		a := attach{ID: "nouplink", Netns: container(t, l)}
		start := time.Now()
		_, err := n.Add(a)
		took := time.Since(start)
		te := cniError(t, err)
		if te.Code != 11 || !strings.Contains(te.Msg, "has no uplink") {
			t.Errorf("got %d %q, want error 11 saying the bridge has no uplink", te.Code, te.Msg)
		}
		if took > 5*time.Second {
			t.Errorf("ADD took %s to say so, not at once", took)
		}
	})

	t.Run("a typo in the bridge's name", func(t *testing.T) {
		typo := l.Bridge[:len(l.Bridge)-1] + "x"
		n := newNetwork(t, l, d, map[string]any{"bridge": typo})
		a := attach{ID: "typo", Netns: container(t, l)}
		_, err := n.Add(a)
		te := cniError(t, err)
		if te.Code != 7 || !strings.Contains(te.Msg, fmt.Sprintf("did you mean %q", l.Bridge)) || strings.Contains(te.Msg+te.Details, "master") {
			t.Errorf("got %d %q %q, want error 7 offering %s and never moving an uplink", te.Code, te.Msg, te.Details, l.Bridge)
		}
	})
}
