// Package integration runs the real plugin binaries, as a runtime does
// (libcni and cnitool), in real network namespaces against a real dnsmasq.
// It needs root.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/forward"
	"github.com/lanwire/lanwire/pkg/guard"
	"github.com/lanwire/lanwire/pkg/hostknob"
	"github.com/lanwire/lanwire/pkg/leaseapi"
	"github.com/lanwire/lanwire/pkg/portmap"
)

var (
	binDir      string // the plugin binaries
	upstreamDir string // containernetworking/plugins binaries
	cnitool     string
)

// upstreamVersion is the containernetworking/plugins release tests chain with.
const upstreamVersion = "v1.9.1"

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("integration tests need root: run them with `make test` as root")
		os.Exit(1)
	}
	binDir = os.Getenv("LANWIRE_BIN")
	tmp, err := os.MkdirTemp("", "lanwire-it-")
	if err != nil {
		panic(err)
	}
	if binDir == "" {
		binDir = filepath.Join(tmp, "bin")
		out, err := exec.Command("go", "build", "-o", binDir+"/", "../plugins/...").CombinedOutput()
		if err != nil {
			fmt.Printf("building plugins: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	upstreamDir = os.Getenv("UPSTREAM_BIN")
	if upstreamDir == "" {
		upstreamDir = filepath.Join(tmp, "upstream")
		var pkgs []string
		for _, p := range []string{"main/bridge", "ipam/host-local", "meta/portmap"} {
			pkgs = append(pkgs, "github.com/containernetworking/plugins/plugins/"+p+"@"+upstreamVersion)
		}
		cmd := exec.Command("go", append([]string{"install"}, pkgs...)...)
		cmd.Env = append(os.Environ(), "GOBIN="+upstreamDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("installing upstream plugins: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	cnitool = os.Getenv("CNITOOL")
	if cnitool == "" {
		cnitool, _ = exec.LookPath("cnitool")
	}
	// Plugins read NETCONFPATH for the bridge-conflict check: an empty dir
	// unless a test says otherwise.
	empty := filepath.Join(tmp, "net.d")
	_ = os.MkdirAll(empty, 0o755)
	os.Setenv("NETCONFPATH", empty)
	code := m.Run()
	os.RemoveAll(tmp)
	// Empty tables a daemon killed by a test left lingering: what the next
	// daemon to start would delete.
	_ = guard.Tidy(0)
	_ = portmap.Tidy(0)
	_ = forward.Tidy(0)
	if left := leftovers(); left != "" && code == 0 {
		fmt.Printf("FAIL: the tests passed but left lanwire state behind (a DEL or a test's cleanup that does not clean up):\n%s", left)
		code = 1
	}
	os.Exit(code)
}

func plugin(name string) string { return filepath.Join(binDir, name) }

// newLAN builds a test LAN that is removed when the test ends.
func newLAN(t testing.TB, opts testlan.Options) *testlan.LAN {
	t.Helper()
	l, err := testlan.New(opts)
	if err != nil {
		t.Fatalf("test LAN: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq log of LAN %s:\n%s", l.ID, tail(l.Log(), 40))
		}
		if err := l.Close(); err != nil {
			t.Errorf("removing test LAN: %v", err)
		}
	})
	return l
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// container makes a fresh netns on the LAN.
func container(t testing.TB, l *testlan.LAN) string {
	t.Helper()
	p, err := l.NewContainer()
	if err != nil {
		t.Fatalf("container netns: %v", err)
	}
	return p
}

// testLinger is how long the tests' daemons leave lanwire's empty tables
// after the last container (the product's default is guard.Linger): short,
// so that a test finds the host as it was soon after its last DEL.
const testLinger = time.Second

// pollInterval is how often a daemon looks for vanished namespaces and
// unused tables (the daemon's default).
const pollInterval = 2 * time.Second

// daemonProc is a lease daemon the test started.
type daemonProc struct {
	t        testing.TB
	Socket   string
	StateDir string
	LogPath  string
	Linger   time.Duration // --tables-linger; 0: the daemon's default
	cmd      *exec.Cmd
}

func startDaemon(t testing.TB) *daemonProc { t.Helper(); return startDaemonIn(t, "") }

// startDaemonIn starts a daemon keeping its leases in stateDir (a fresh
// directory when empty).
func startDaemonIn(t testing.TB, stateDir string) *daemonProc {
	t.Helper()
	return startDaemonWith(t, "", stateDir)
}

// startDaemonWith starts a daemon on socket with its leases in stateDir
// (fresh ones when empty).
func startDaemonWith(t testing.TB, socket, stateDir string) *daemonProc {
	t.Helper()
	dir := t.TempDir()
	if stateDir == "" {
		stateDir = filepath.Join(dir, "state")
	}
	if socket == "" {
		socket = filepath.Join(dir, "run", "hb.sock")
	}
	d := &daemonProc{t: t, Socket: socket, StateDir: stateDir, LogPath: filepath.Join(dir, "daemon.log"), Linger: testLinger}
	d.Start()
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(d.LogPath)
			t.Logf("daemon log:\n%s", tail(string(b), 60))
		}
	})
	return d
}

// Start runs the daemon and waits for its socket.
func (d *daemonProc) Start() {
	d.t.Helper()
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	args := []string{"daemon", "--socket", d.Socket, "--state-dir", d.StateDir}
	if d.Linger != 0 {
		args = append(args, "--tables-linger", d.Linger.String())
	}
	cmd := exec.Command(plugin("hostbridge-dhcp"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("starting daemon: %v", err)
	}
	d.cmd = cmd
	waitFor(d.t, 5*time.Second, "daemon socket", func() bool {
		_, err := d.Call(leaseapi.Request{Method: leaseapi.MethodStatus})
		return err == nil
	})
}

// Stop ends the daemon with SIGTERM (leases are kept).
func (d *daemonProc) Stop() {
	if d.cmd == nil {
		return
	}
	testlan.StopProcess(d.cmd, 10*time.Second)
	d.cmd = nil
}

// Kill ends the daemon with SIGKILL.
func (d *daemonProc) Kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
	d.cmd = nil
}

// Call sends one API request.
func (d *daemonProc) Call(req leaseapi.Request) (*leaseapi.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return leaseapi.Call(ctx, d.Socket, req)
}

// Leases lists the daemon's leases.
func (d *daemonProc) Leases() []leaseapi.Lease {
	d.t.Helper()
	resp, err := d.Call(leaseapi.Request{Method: leaseapi.MethodList})
	if err != nil {
		d.t.Fatalf("listing leases: %v", err)
	}
	return resp.Leases
}

// network is a conflist on disk plus a libcni handle for it.
type network struct {
	t     testing.TB
	Dir   string // NETCONFPATH for cnitool
	Name  string
	list  *libcni.NetworkConfigList
	cni   *libcni.CNIConfig
	bytes []byte
}

// newNetwork writes a conflist whose only plugin is hostbridge-dhcp on the
// LAN's bridge, talking to d. extra is merged into the plugin object.
func newNetwork(t testing.TB, l *testlan.LAN, d *daemonProc, extra map[string]any) *network {
	t.Helper()
	conf := map[string]any{
		"type": "hostbridge-dhcp", "bridge": l.Bridge, "daemonSocket": d.Socket, "autoStartDaemon": false,
	}
	for k, v := range extra {
		if v == nil {
			delete(conf, k)
			continue
		}
		conf[k] = v
	}
	return newNetworkList(t, "lan"+l.ID, []map[string]any{conf})
}

func newNetworkList(t testing.TB, name string, plugins []map[string]any) *network {
	t.Helper()
	dir := t.TempDir()
	data, _ := json.MarshalIndent(map[string]any{"cniVersion": "1.1.0", "name": name, "plugins": plugins}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, name+".conflist"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		t.Fatalf("conflist: %v", err)
	}
	cacheDir := filepath.Join(t.TempDir(), "cache")
	return &network{t: t, Dir: dir, Name: name, list: list, bytes: data,
		cni: libcni.NewCNIConfigWithCacheDir([]string{binDir, upstreamDir}, cacheDir, &boundedExec{})}
}

type attach struct {
	ID     string
	Netns  string
	IfName string
	Args   [][2]string
	Caps   map[string]any
}

func (a attach) rt() *libcni.RuntimeConf {
	ifn := a.IfName
	if ifn == "" {
		ifn = "eth0"
	}
	return &libcni.RuntimeConf{ContainerID: a.ID, NetNS: a.Netns, IfName: ifn, Args: a.Args, CapabilityArgs: a.Caps}
}

// Add runs ADD; a DEL is registered as cleanup so a failing test leaves
// nothing behind (DEL is idempotent).
func (n *network) Add(a attach) (*current.Result, error) {
	n.t.Cleanup(func() { _ = n.Del(a) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := n.cni.AddNetworkList(ctx, n.list, a.rt())
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (n *network) MustAdd(a attach) *current.Result {
	n.t.Helper()
	r, err := n.Add(a)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", a.ID, err)
	}
	return r
}

func (n *network) Del(a attach) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return n.cni.DelNetworkList(ctx, n.list, a.rt())
}

func (n *network) Check(a attach) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.cni.CheckNetworkList(ctx, n.list, a.rt())
}

// cniError returns the CNI error in err, failing the test if there is none.
func cniError(t testing.TB, err error) *types.Error {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("want a CNI error, got %v", err)
	}
	return te
}

// nsRun runs a command in a netns and returns its combined output.
func nsRun(netns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", filepath.Base(netns)}, args...)...).CombinedOutput()
	return string(out), err
}

// links lists a netns's link names (all of the host's when netns is "").
func links(t testing.TB, netns string) []string {
	t.Helper()
	args := []string{"-o", "link", "show"}
	if netns != "" {
		args = append([]string{"-n", filepath.Base(netns)}, args...)
	}
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// bridgePorts lists the links enslaved to bridge.
func bridgePorts(t testing.TB, bridge string) []string {
	t.Helper()
	out, _ := exec.Command("ip", "-o", "link", "show", "master", bridge).Output()
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stateFiles lists the daemon's lease files.
func stateFiles(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	return m
}

// runCnitool runs cnitool as a user would.
func runCnitool(t testing.TB, n *network, env []string, args ...string) (string, string, error) {
	t.Helper()
	if cnitool == "" {
		t.Fatal("cnitool not found: `make test` installs it (go install github.com/containernetworking/cni/cnitool)")
	}
	cmd := exec.Command(cnitool, args...)
	cmd.Env = append(os.Environ(), "NETCONFPATH="+n.Dir, "CNI_PATH="+binDir+":"+upstreamDir)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// leftovers describes lanwire state still on the host after every test
// ended: port and portmap records, host settings held, lanwire's tables.
func leftovers() string {
	var out []string
	for _, dir := range []string{guard.Dir + "/ports", portmap.Dir + "/records", hostknob.DefaultDir + "/user", forward.Dir} {
		if es, _ := os.ReadDir(dir); len(es) > 0 {
			var names []string
			for _, e := range es {
				names = append(names, e.Name())
			}
			out = append(out, fmt.Sprintf("  %s: %s", dir, strings.Join(names, " ")))
		}
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if b, err := exec.Command(tool, "-S", "FORWARD").Output(); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "lanwire hostbridge-dhcp") {
					out = append(out, "  "+tool+" "+line)
				}
			}
		}
	}
	if b, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, " lanwire") {
				out = append(out, "  "+line)
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}

// boundedExec runs plugins as libcni's RawExec does, but a plugin that
// outlives its call's deadline (or a child of it holding its output open,
// as the upstream dhcp IPAM can) cannot hang the test: Wait gives up 5 s
// after the deadline killed the plugin.
type boundedExec struct {
	invoke.RawExec
	version.PluginDecoder

	// times, when set, collects each call's duration by "plugin COMMAND".
	mu    sync.Mutex
	times map[string][]time.Duration
}

// took returns the durations of plugin's calls of command so far.
func (e *boundedExec) took(plugin, command string) []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]time.Duration(nil), e.times[plugin+" "+command]...)
}

func (e *boundedExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	c := exec.CommandContext(ctx, path)
	c.Env, c.Stdin, c.Stdout, c.Stderr = environ, bytes.NewReader(stdin), &stdout, &stderr
	c.WaitDelay = 5 * time.Second
	start := time.Now()
	err := c.Run()
	if e.times != nil {
		command := ""
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
				command = v
			}
		}
		e.mu.Lock()
		k := filepath.Base(path) + " " + command
		e.times[k] = append(e.times[k], time.Since(start))
		e.mu.Unlock()
	}
	if err != nil {
		var te types.Error
		if json.Unmarshal(stdout.Bytes(), &te) == nil && te.Msg != "" {
			return nil, &te
		}
		return nil, fmt.Errorf("%s: %w: %s%s", filepath.Base(path), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}
