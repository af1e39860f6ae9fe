// Command demo runs lanwire's main job on a self-contained demo LAN built in
// network namespaces and tells it as a story (`make demo`):
//
//	demo [--bin DIR] [--conflist FILE]   run it (root)
//	demo --clean                         remove what an interrupted run left
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/egress"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

const runDir = "/run/lanwire-demo"

// state is what --clean needs to undo an interrupted run.
type state struct {
	LANFile     string          `json:"lanFile"`
	PIDs        []int           `json:"pids"`
	BinDir      string          `json:"binDir"`
	Conflist    json.RawMessage `json:"conflist,omitempty"`
	Attachments []attachment    `json:"attachments,omitempty"`
}

// attachment is one container the demo attached.
type attachment struct {
	ID    string         `json:"id"`
	Netns string         `json:"netns"`
	Caps  map[string]any `json:"caps,omitempty"`
}

var (
	st      state
	failed  int
	started = time.Now()
)

func ok(format string, a ...any) { fmt.Printf("  ✓ "+format+"\n", a...) }
func bad(format string, a ...any) {
	failed++
	fmt.Printf("  ✗ "+format+"\n", a...)
}
func say(format string, a ...any) { fmt.Printf("\n"+format+"\n", a...) }

func saveState() {
	b, _ := json.Marshal(st)
	_ = os.WriteFile(filepath.Join(runDir, "state.json"), b, 0o644)
}

func main() {
	bin := flag.String("bin", "bin", "directory of the lanwire binaries")
	conflist := flag.String("conflist", "conflist/offline-ports.conflist", "the conflist to attach containers with")
	clean := flag.Bool("clean", false, "remove what an interrupted demo left")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the demo builds network namespaces: run it as root (sudo make demo)")
		os.Exit(1)
	}
	if *clean {
		cleanup()
		fmt.Println("demo state removed")
		return
	}
	cleanup() // a previous interrupted run
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Println("\ninterrupted: cleaning up")
		cleanup()
		os.Exit(130)
	}()
	binDir, _ := filepath.Abs(*bin)
	if err := run(binDir, *conflist); err != nil {
		bad("%v", err)
	}
	say("Cleaning up")
	cleanup()
	ok("namespaces, links, rules and the lease daemon removed")
	fmt.Printf("\n%s in %s\n", map[bool]string{true: "The demo went through", false: fmt.Sprintf("%d step(s) failed", failed)}[failed == 0], time.Since(started).Round(time.Second))
	if failed > 0 {
		os.Exit(1)
	}
}

// cleanup detaches the demo's containers, stops what it started and
// removes its LAN, from the state file, so it also works after an
// interrupted run.
func cleanup() {
	var s state
	if b, err := os.ReadFile(filepath.Join(runDir, "state.json")); err == nil && json.Unmarshal(b, &s) == nil {
		if list, err := libcni.ConfListFromBytes(s.Conflist); err == nil {
			cni := libcni.NewCNIConfigWithCacheDir([]string{s.BinDir}, filepath.Join(runDir, "cache"), nil)
			for _, a := range s.Attachments {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_ = cni.DelNetworkList(ctx, list, &libcni.RuntimeConf{ContainerID: a.ID, NetNS: a.Netns, IfName: "eth0", CapabilityArgs: a.Caps})
				cancel()
			}
		}
		for _, pid := range s.PIDs {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		if l, err := testlan.Load(s.LANFile); err == nil {
			_ = l.Close()
		}
	}
	st.Attachments = nil
	os.RemoveAll(runDir)
}

func run(binDir, conflistPath string) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	say("1. A LAN with its own DHCP server")
	l, err := testlan.New(testlan.Options{HostIP: true, RA: true, DHCPv6: true, LeaseTime: "2m",
		DnsmasqArgs: []string{"--dhcp-option=option:T1,15", "--dhcp-option=option:T2,30"}})
	if err != nil {
		return fmt.Errorf("building the demo LAN: %w", err)
	}
	st.LANFile, st.BinDir = filepath.Join(runDir, "lan.json"), binDir
	_ = l.Save(st.LANFile)
	saveState()
	ok("bridge %s, router with DHCP and DNS at %s (%s; IPv6 %s by DHCPv6 and router advertisements)", l.Bridge, l.Router, l.Subnet, l.Subnet6)
	ok("a fake internet at %s and %s, reached through the router", l.Internet, l.Internet6)

	// The package mirror on the host, and a web site on the internet.
	mirror := http.NewServeMux()
	mirror.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "lanwire demo mirror: packages/index") })
	for _, a := range []string{l.HostAddr, "[" + l.HostAddr6 + "]"} {
		if err := serve("", a+":8000", mirror); err != nil {
			return err
		}
	}
	internet := http.NewServeMux()
	internet.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "the internet") })
	if err := serve("/var/run/netns/"+l.InetNS, ":80", internet); err != nil {
		return err
	}
	ok("a package mirror on the host at http://%s:8000/", l.HostAddr)

	say("2. The lease daemon")
	sock := filepath.Join(runDir, "hostbridge-dhcp.sock")
	daemon := exec.Command(filepath.Join(binDir, "hostbridge-dhcp"), "daemon", "--socket", sock, "--state-dir", filepath.Join(runDir, "leases"))
	logf, _ := os.Create(filepath.Join(runDir, "daemon.log"))
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		return fmt.Errorf("starting the lease daemon: %w", err)
	}
	st.PIDs = append(st.PIDs, daemon.Process.Pid)
	saveState()
	defer func() { _ = daemon.Process.Signal(syscall.SIGTERM); _ = daemon.Wait() }()
	if !waitFor(5*time.Second, func() bool { _, err := status(sock); return err == nil }) {
		return fmt.Errorf("the lease daemon did not answer on %s", sock)
	}
	ok("hostbridge-dhcp daemon answers on %s", sock)

	say("3. Two containers through %s", conflistPath)
	list, err := loadConflist(conflistPath, l, sock)
	if err != nil {
		return err
	}
	st.Conflist = list.Bytes
	saveState()
	cni := libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(runDir, "cache"), nil)
	web, webRes, err := attach(cni, list, l, "demo-web", map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}})
	if err != nil {
		return err
	}
	builder, builderRes, err := attach(cni, list, l, "demo-builder", nil)
	if err != nil {
		return err
	}
	added := time.Now()
	for _, x := range []struct {
		name string
		res  *current.Result
	}{{"web", webRes}, {"builder", builderRes}} {
		ip := x.res.IPs[0]
		exp := ""
		if ls, err := leases(sock); err == nil {
			for _, le := range ls {
				if le.Info.Address.IP.Equal(ip.Address.IP) {
					exp = fmt.Sprintf(", lease until %s (renewal at T1 in %s)", le.Expiry.Format("15:04:05"), le.Info.RenewTime)
				}
			}
		}
		ok("%s got %s from the LAN's DHCP server, gateway %s, DNS %v%s", x.name, ip.Address.String(), ip.Gateway, x.res.DNS.Nameservers, exp)
	}
	var dhcp6, slaac6, gw6 string
	for _, ip := range builderRes.IPs {
		if ip.Address.IP.To4() != nil {
			continue
		}
		if ones, _ := ip.Address.Mask.Size(); ones == 128 {
			dhcp6 = ip.Address.String()
		} else {
			slaac6 = ip.Address.String()
		}
		gw6 = fmt.Sprint(ip.Gateway)
	}
	if dhcp6 != "" && slaac6 != "" {
		ok("builder (\"ipv6\": \"auto\") got %s over DHCPv6 and %s by SLAAC, IPv6 gateway %s", dhcp6, slaac6, gw6)
	} else {
		bad("builder's IPv6: DHCPv6 %q, SLAAC %q", dhcp6, slaac6)
	}

	httpd := exec.Command("ip", "netns", "exec", filepath.Base(web), "busybox", "httpd", "-f", "-p", "80", "-h", writeSite())
	if err := httpd.Start(); err != nil {
		return fmt.Errorf("starting the web container's server: %w", err)
	}
	st.PIDs = append(st.PIDs, httpd.Process.Pid)
	saveState()
	defer func() { _ = httpd.Process.Kill(); _ = httpd.Wait() }()

	say("4. Offline, but for the mirror")
	if out, err := wget(builder, "http://"+l.HostAddr+":8000/"); err == nil {
		ok("builder fetches from the mirror: %q", strings.TrimSpace(out))
	} else {
		bad("builder cannot reach the mirror: %v", err)
	}
	for _, u := range []string{"http://" + l.Internet + "/", "http://[" + l.Internet6 + "]/"} {
		if _, err := wget(builder, u); err != nil {
			ok("builder cannot reach the internet at %s", u)
		} else {
			bad("builder reached the internet at %s", u)
		}
	}
	if _, err := wget(builder, "http://"+l.Router+":53/"); err != nil {
		ok("builder cannot reach the LAN router either")
	} else {
		bad("builder reached the LAN router")
	}
	prefix := strings.TrimSpace(egress.LogPrefix("demo-builder"))
	if line := kernelLog(prefix); line != "" {
		ok("the blocked attempt is in the kernel log: %s", line)
	} else {
		bad("no blocked attempt in the kernel log (dmesg | grep %q)", prefix)
	}

	say("5. A published port")
	if out, err := wget("/var/run/netns/"+l.LANNS, "http://"+l.HostAddr+":8080/"); err == nil {
		ok("a LAN client gets http://%s:8080/ from the web container: %q", l.HostAddr, strings.TrimSpace(out))
	} else {
		bad("a LAN client cannot reach the published port: %v", err)
	}
	if _, err := wget(web, "http://"+l.Internet+"/"); err != nil {
		ok("while the web container itself still cannot reach the internet")
	} else {
		bad("the web container reached the internet")
	}

	say("6. Leases that never lapse")
	renewed := waitFor(40*time.Second, func() bool {
		ls, err := leases(sock)
		if err != nil || len(ls) < 2 {
			return false
		}
		for _, le := range ls {
			if !le.Acquired.After(added.Add(5 * time.Second)) {
				return false
			}
		}
		return true
	})
	if renewed {
		ok("both leases renewed at T1, %s after they were taken, through the offline firewall", time.Since(added).Round(time.Second))
	} else {
		bad("the leases were not renewed (see %s)", filepath.Join(runDir, "daemon.log"))
	}
	for _, a := range st.Attachments {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := cni.DelNetworkList(ctx, list, &libcni.RuntimeConf{ContainerID: a.ID, NetNS: a.Netns, IfName: "eth0", CapabilityArgs: a.Caps})
		cancel()
		if err != nil {
			bad("DEL %s: %v", a.ID, err)
		}
	}
	st.Attachments = nil
	saveState()
	ok("DEL released both leases: dnsmasq holds %d", countLeases(l))
	return nil
}

func status(sock string) (*leaseapi.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := leaseapi.Call(ctx, sock, leaseapi.Request{Method: leaseapi.MethodStatus})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

func leases(sock string) ([]leaseapi.Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := leaseapi.Call(ctx, sock, leaseapi.Request{Method: leaseapi.MethodList})
	if err != nil {
		return nil, err
	}
	return resp.Leases, nil
}

// loadConflist reads the conflist and points it at the demo bridge and daemon.
func loadConflist(path string, l *testlan.LAN, sock string) (*libcni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var changes []string
	for _, p := range raw["plugins"].([]any) {
		pm := p.(map[string]any)
		if pm["type"] != "hostbridge-dhcp" {
			continue
		}
		pm["bridge"], pm["daemonSocket"], pm["autoStartDaemon"] = l.Bridge, sock, false
		changes = append(changes, fmt.Sprintf(`"bridge": %q (the demo LAN's)`, l.Bridge),
			fmt.Sprintf(`"daemonSocket": %q and "autoStartDaemon": false (the demo's own daemon)`, sock))
		if _, set := pm["ipv6"]; !set {
			pm["ipv6"] = "auto"
			changes = append(changes, `"ipv6": "auto" (the demo LAN serves DHCPv6 and SLAAC)`)
		}
	}
	data, _ = json.MarshalIndent(raw, "", "  ")
	effective := filepath.Join(runDir, filepath.Base(path))
	if err := os.WriteFile(effective, data, 0o644); err != nil {
		return nil, err
	}
	ok("%s, run with %s", path, strings.Join(changes, ", "))
	ok("as run (%s, removed with the demo):", effective)
	for _, line := range strings.Split(string(data), "\n") {
		fmt.Println("      " + line)
	}
	return libcni.ConfListFromBytes(data)
}

func attach(cni *libcni.CNIConfig, list *libcni.NetworkConfigList, l *testlan.LAN, id string, caps map[string]any) (string, *current.Result, error) {
	netns, err := l.NewContainer()
	if err != nil {
		return "", nil, err
	}
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0", CapabilityArgs: caps,
		Args: [][2]string{{"HOSTNAME", strings.TrimPrefix(id, "demo-")}}}
	st.Attachments = append(st.Attachments, attachment{ID: id, Netns: netns, Caps: caps})
	saveState()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		return "", nil, fmt.Errorf("ADD %s: %w", id, err)
	}
	by := fmt.Sprintf("CNI_PATH=%s NETCONFPATH=%s CNI_ARGS=HOSTNAME=%s", st.BinDir, runDir, strings.TrimPrefix(id, "demo-"))
	if caps != nil {
		c, _ := json.Marshal(caps)
		by += fmt.Sprintf(" CAP_ARGS='%s'", c)
	}
	fmt.Printf("    (the same by hand: %s cnitool add %s %s)\n", by, list.Name, netns)
	r, err := current.NewResultFromResult(res)
	return netns, r, err
}

func serve(netns, addr string, h http.Handler) error {
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if netns == "" {
			ln, err = net.Listen("tcp", addr)
		} else {
			err = ns.WithNetNSPath(netns, func(ns.NetNS) error { ln, err = net.Listen("tcp", addr); return err })
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("serving on %s: %w", addr, err)
	}
	go func() { _ = http.Serve(ln, h) }()
	return nil
}

// wget fetches a URL from inside netns with busybox, as a container would.
func wget(netns, url string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", filepath.Base(netns), "timeout", "3", "busybox", "wget", "-q", "-O", "-", url).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v %s", err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func writeSite() string {
	dir := filepath.Join(runDir, "www")
	_ = os.MkdirAll(dir, 0o755)
	_ = os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello from the web container\n"), 0o644)
	return dir
}

func kernelLog(prefix string) string {
	var line string
	waitFor(3*time.Second, func() bool {
		out, _ := exec.Command("dmesg").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, prefix) {
				line = l
			}
		}
		return line != ""
	})
	if i := strings.Index(line, prefix); i >= 0 {
		line = line[i:]
	}
	if len(line) > 110 {
		line = line[:110] + "..."
	}
	return line
}

func countLeases(l *testlan.LAN) int {
	time.Sleep(300 * time.Millisecond)
	ls, _ := l.Leases()
	return len(ls)
}

func waitFor(d time.Duration, f func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return f()
}
