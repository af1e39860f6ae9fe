// Package testlan builds a fake LAN out of network namespaces for tests and
// demos: a host bridge with a unique name, a LAN netns that routes to a fake
// internet and runs dnsmasq as the DHCP server, and a fresh netns per
// container. Everything it makes carries the LAN's ID and goes away in Close.
package testlan

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options shape a LAN.
type Options struct {
	// LeaseTime is dnsmasq's lease length, e.g. "2m" (its minimum).
	LeaseTime string
	// NoDHCP leaves dnsmasq stopped; StartDHCP starts it.
	NoDHCP bool
	// HostIP gives the host an address on the bridge (.254), for
	// services "on the host".
	HostIP bool
	// DnsmasqArgs are appended to dnsmasq's command line.
	DnsmasqArgs []string
	// RA makes dnsmasq send router advertisements for the LAN's IPv6
	// prefix, so containers configure themselves with SLAAC.
	RA bool
	// DHCPv6 makes dnsmasq hand out addresses of the LAN's IPv6 prefix
	// (::100 to ::1ff) over DHCPv6. With RA too, the advertisements carry
	// the M flag and an autonomous prefix (DHCPv6 and SLAAC both work).
	DHCPv6 bool
	// Wide makes the LAN a /20 whose DHCP range holds about 3,500
	// addresses (for benchmarks with many containers); else a /24 with
	// the range .100-.199.
	Wide bool
}

// LAN is one fake LAN. Its fields are what a test needs to look at it.
type LAN struct {
	ID       string `json:"id"`
	Dir      string `json:"dir"`
	Bridge   string `json:"bridge"`
	Uplink   string `json:"uplink"` // host end of the LAN netns's veth
	LANNS    string `json:"lanNetns"`
	InetNS   string `json:"inetNetns"`
	Subnet   string `json:"subnet"` // e.g. 10.77.3.0/24
	Router   string `json:"router"` // the LAN netns: gateway, DHCP and DNS server
	HostAddr string `json:"hostAddr,omitempty"`
	// Subnet6 and Router6 are the LAN's IPv6 prefix (a ULA) and the
	// router's address in it; HostAddr6 the host's, with HostIP.
	Subnet6    string `json:"subnet6"`
	Router6    string `json:"router6"`
	HostAddr6  string `json:"hostAddr6,omitempty"`
	Internet   string `json:"internet"`  // an address in the fake internet
	Internet6  string `json:"internet6"` // its IPv6 address
	LeaseFile  string `json:"leaseFile"`
	LogFile    string `json:"logFile"`
	DnsmasqPID int    `json:"dnsmasqPID,omitempty"`

	opts       Options
	mu         sync.Mutex
	dnsmasq    *exec.Cmd
	containers []string
}

// Internet addresses (documentation ranges, only inside the namespaces).
const (
	internetRouter  = "198.51.100.1"
	internetHost    = "198.51.100.10"
	internetRouter6 = "2001:db8:1::1"
	internetHost6   = "2001:db8:1::10"
)

func newID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// New builds a LAN. On failure it removes what it made.
func New(opts Options) (*LAN, error) {
	if opts.LeaseTime == "" {
		opts.LeaseTime = "2m"
	}
	id := newID()
	dir, err := os.MkdirTemp("", "lanwire-lan-"+id+"-")
	if err != nil {
		return nil, err
	}
	b, _ := hex.DecodeString(id)
	// 10.64.0.0/10 split into /24s by the ID: apart from each other and
	// from the host's own networks (checked below).
	third, second := int(b[1]), 64+int(b[0])%64
	prefix := 24
	if opts.Wide {
		third, prefix = third&0xf0, 20
	}
	l := &LAN{
		ID: id, Dir: dir, opts: opts,
		Bridge: "lwt" + id + "br", Uplink: "lwt" + id + "up",
		LANNS: "lwt" + id + "-lan", InetNS: "lwt" + id + "-inet",
		Subnet:   fmt.Sprintf("10.%d.%d.0/%d", second, third, prefix),
		Router:   fmt.Sprintf("10.%d.%d.1", second, third),
		Internet: internetHost, Internet6: internetHost6,
		LeaseFile: filepath.Join(dir, "dnsmasq.leases"),
		LogFile:   filepath.Join(dir, "dnsmasq.log"),
	}
	// Canonical text (no leading zeros in a group), so that prefixes built
	// from it compare as strings with addresses Go or dnsmasq print.
	ula := fmt.Sprintf("fd%02x:%x:4c57", b[0], uint16(b[1])<<8|uint16(b[2]))
	l.Subnet6, l.Router6 = ula+"::/64", ula+"::1"
	if opts.HostIP {
		l.HostAddr = fmt.Sprintf("10.%d.%d.254", second, third)
		l.HostAddr6 = ula + "::fe"
	}
	if err := CheckSafe(l.Subnet); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := l.build(); err != nil {
		l.Close()
		return nil, fmt.Errorf("building test LAN %s: %w", id, err)
	}
	if !opts.NoDHCP {
		if err := l.StartDHCP(); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// CheckSafe refuses a prefix that holds this machine's resolver, default
// gateway, uplink network or a package host range.
func CheckSafe(prefix string) error {
	_, pn, err := net.ParseCIDR(prefix)
	if err != nil {
		return err
	}
	var guarded []string
	if f, err := os.Open("/etc/resolv.conf"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if fs := strings.Fields(s.Text()); len(fs) >= 2 && fs[0] == "nameserver" {
				guarded = append(guarded, fs[1])
			}
		}
		f.Close()
	}
	if out, err := exec.Command("ip", "-4", "route", "show", "default").Output(); err == nil {
		fs := strings.Fields(string(out))
		for i := 0; i+1 < len(fs); i++ {
			if fs[i] == "via" {
				guarded = append(guarded, fs[i+1])
			}
		}
	}
	guarded = append(guarded, "192.0.2.1", "203.0.113.1")
	for _, g := range guarded {
		if ip := net.ParseIP(g); ip != nil && pn.Contains(ip) {
			return fmt.Errorf("refusing test prefix %s: it holds %s (resolver, gateway or package host)", prefix, g)
		}
	}
	for _, forbidden := range []string{"192.0.2.0/24", "203.0.113.0/24"} {
		_, fn, _ := net.ParseCIDR(forbidden)
		if fn.Contains(pn.IP) || pn.Contains(fn.IP) {
			return fmt.Errorf("refusing test prefix %s: it overlaps %s", prefix, forbidden)
		}
	}
	return nil
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *LAN) inNS(ns string, args ...string) error {
	return run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

func (l *LAN) build() error {
	_, sn, _ := net.ParseCIDR(l.Subnet)
	ones, _ := sn.Mask.Size()
	steps := [][]string{
		{"ip", "link", "add", l.Bridge, "type", "bridge"},
		{"ip", "link", "set", l.Bridge, "up"},
		{"ip", "netns", "add", l.LANNS},
		{"ip", "netns", "add", l.InetNS},
		{"ip", "link", "add", l.Uplink, "type", "veth", "peer", "name", "eth0", "netns", l.LANNS},
		{"ip", "link", "set", l.Uplink, "master", l.Bridge, "up"},
		{"ip", "-n", l.LANNS, "link", "set", "lo", "up"},
		{"ip", "-n", l.LANNS, "addr", "add", fmt.Sprintf("%s/%d", l.Router, ones), "dev", "eth0"},
		{"ip", "-n", l.LANNS, "addr", "add", l.Router6 + "/64", "dev", "eth0", "nodad"},
		// The router's link-local address usable at once, so its first
		// router advertisements are not held back by DAD.
		{"ip", "netns", "exec", l.LANNS, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"},
		{"ip", "-n", l.LANNS, "link", "set", "eth0", "up"},
		{"ip", "-n", l.LANNS, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", l.InetNS},
		{"ip", "-n", l.LANNS, "addr", "add", internetRouter + "/24", "dev", "wan0"},
		{"ip", "-n", l.LANNS, "addr", "add", internetRouter6 + "/64", "dev", "wan0", "nodad"},
		{"ip", "-n", l.LANNS, "link", "set", "wan0", "up"},
		{"ip", "-n", l.InetNS, "link", "set", "lo", "up"},
		{"ip", "-n", l.InetNS, "addr", "add", internetHost + "/24", "dev", "eth0"},
		{"ip", "-n", l.InetNS, "addr", "add", internetHost6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "-n", l.InetNS, "link", "set", "eth0", "up"},
		{"ip", "-n", l.InetNS, "route", "add", "default", "via", internetRouter},
		{"ip", "-n", l.InetNS, "-6", "route", "add", "default", "via", internetRouter6},
		{"ip", "netns", "exec", l.LANNS, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
	}
	if l.HostAddr != "" {
		steps = append(steps, []string{"ip", "addr", "add", fmt.Sprintf("%s/%d", l.HostAddr, ones), "dev", l.Bridge},
			[]string{"ip", "addr", "add", l.HostAddr6 + "/64", "dev", l.Bridge, "nodad"})
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	return nil
}

// StartDHCP starts dnsmasq in the LAN netns.
func (l *LAN) StartDHCP() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dnsmasq != nil {
		return nil
	}
	_, sn, _ := net.ParseCIDR(l.Subnet)
	base := sn.IP.To4()
	start := fmt.Sprintf("%d.%d.%d.100", base[0], base[1], base[2])
	end := fmt.Sprintf("%d.%d.%d.199", base[0], base[1], base[2])
	mask := net.IP(sn.Mask).String()
	if l.opts.Wide {
		start = fmt.Sprintf("%d.%d.%d.1", base[0], base[1], base[2]+1)
		end = fmt.Sprintf("%d.%d.%d.250", base[0], base[1], base[2]+14)
	}
	args := []string{"netns", "exec", l.LANNS, "dnsmasq",
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--interface=eth0", "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range=" + start + "," + end + "," + mask + "," + l.opts.LeaseTime,
		"--dhcp-leasefile=" + l.LeaseFile, "--log-dhcp", "--log-facility=" + l.LogFile,
		"--no-ping", "--pid-file=", "--user=root", "--group=root", "--dhcp-authoritative",
		"--domain=lan.test", "--address=/mirror.lan.test/" + l.Router,
	}
	if l.opts.Wide {
		args = append(args, "--dhcp-lease-max=4000")
	}
	p6 := strings.TrimSuffix(l.Subnet6, "::/64")
	switch {
	case l.opts.DHCPv6 && l.opts.RA:
		// Advertisements with both the M flag and an autonomous prefix:
		// containers can take a DHCPv6 address, a SLAAC one, or both.
		args = append(args, "--enable-ra", "--dhcp-range="+p6+"::100,"+p6+"::1ff,slaac,64,"+l.opts.LeaseTime)
	case l.opts.DHCPv6:
		args = append(args, "--dhcp-range="+p6+"::100,"+p6+"::1ff,64,"+l.opts.LeaseTime)
	case l.opts.RA:
		args = append(args, "--enable-ra", "--dhcp-range=::,constructor:eth0,ra-only,64,2m")
	}
	args = append(args, l.opts.DnsmasqArgs...)
	cmd := exec.Command("ip", args...)
	out, err := os.OpenFile(filepath.Join(l.Dir, "dnsmasq.out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting dnsmasq: %w", err)
	}
	l.dnsmasq = cmd
	l.DnsmasqPID = cmd.Process.Pid
	// Wait until it listens on the DHCP port.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		o, _ := exec.Command("ip", "netns", "exec", l.LANNS, "ss", "-uln", "sport", "= :67").Output()
		if strings.Contains(string(o), ":67") {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("dnsmasq did not start listening; see %s", filepath.Join(l.Dir, "dnsmasq.out"))
}

// MoveRange renumbers the LAN, as an administrator moving the DHCP range
// to another subnet does: the router gets an address in a new /24 and
// dnsmasq restarts serving only that subnet (it then NAKs the old one).
func (l *LAN) MoveRange() error {
	_, sn, _ := net.ParseCIDR(l.Subnet)
	b := sn.IP.To4()
	subnet := fmt.Sprintf("%d.%d.%d.0/24", b[0], b[1], b[2]^0x80)
	router := fmt.Sprintf("%d.%d.%d.1", b[0], b[1], b[2]^0x80)
	if err := CheckSafe(subnet); err != nil {
		return err
	}
	if err := run("ip", "-n", l.LANNS, "addr", "add", router+"/24", "dev", "eth0"); err != nil {
		return err
	}
	l.StopDHCP()
	l.Subnet, l.Router = subnet, router
	return l.StartDHCP()
}

// StopProcess ends cmd's process with SIGTERM and waits for it, with
// SIGKILL after grace.
func StopProcess(cmd *exec.Cmd, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// StopDHCP stops dnsmasq (its lease file stays).
func (l *LAN) StopDHCP() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dnsmasq != nil {
		StopProcess(l.dnsmasq, 3*time.Second)
		l.dnsmasq = nil
		l.DnsmasqPID = 0
	} else if l.DnsmasqPID > 0 {
		if p, err := os.FindProcess(l.DnsmasqPID); err == nil {
			_ = p.Kill()
		}
		l.DnsmasqPID = 0
	}
}

// NewContainer makes a fresh netns and returns its path.
func (l *LAN) NewContainer() (string, error) {
	l.mu.Lock()
	name := fmt.Sprintf("lwt%s-c%d", l.ID, len(l.containers))
	l.containers = append(l.containers, name)
	l.mu.Unlock()
	if err := run("ip", "netns", "add", name); err != nil {
		return "", err
	}
	if err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return filepath.Join("/var/run/netns", name), nil
}

// DeleteContainer removes a container netns made by NewContainer.
func (l *LAN) DeleteContainer(path string) error {
	return run("ip", "netns", "del", filepath.Base(path))
}

// Lease is one line of dnsmasq's lease file.
type Lease struct {
	Expiry   string
	MAC      string
	IP       string
	Hostname string
	ClientID string
}

// Leases reads dnsmasq's lease file.
func (l *LAN) Leases() ([]Lease, error) {
	data, err := os.ReadFile(l.LeaseFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Lease
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[0] != "duid" {
			out = append(out, Lease{Expiry: f[0], MAC: f[1], IP: f[2], Hostname: f[3], ClientID: f[4]})
		}
	}
	return out, nil
}

// LeaseFor returns dnsmasq's lease for mac, if it holds one.
func (l *LAN) LeaseFor(mac string) (Lease, bool) {
	ls, _ := l.Leases()
	for _, x := range ls {
		if strings.EqualFold(x.MAC, mac) {
			return x, true
		}
	}
	return Lease{}, false
}

// Log returns dnsmasq's log so far.
func (l *LAN) Log() string {
	b, _ := os.ReadFile(l.LogFile)
	return string(b)
}

// Save writes the LAN's description to path (for the human entry point).
func (l *LAN) Save(path string) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Load reads a LAN description written by Save.
func Load(path string) (*LAN, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l LAN
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Close removes everything the LAN made: dnsmasq, the container and LAN
// namespaces, the bridge and its uplink, and its FORWARD rules.
func (l *LAN) Close() error {
	l.StopDHCP()
	var errs []error
	// Links first: deleting a namespace destroys its veth pairs
	// asynchronously, so a host end seen a moment ago may be gone by the
	// time it is deleted. A link that is gone is not an error.
	for _, link := range []string{l.Uplink, l.Bridge} {
		if err := run("ip", "link", "del", link); err != nil && exec.Command("ip", "link", "show", link).Run() == nil {
			errs = append(errs, err)
		}
	}
	// Container and LAN namespaces by prefix: also those a crashed run left.
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && strings.HasPrefix(f[0], "lwt"+l.ID+"-") {
				if err := run("ip", "netns", "del", f[0]); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	removeForwardRules(l.Bridge)
	os.RemoveAll(l.Dir)
	return errors.Join(errs...)
}

// removeForwardRules deletes the built-in chain rules naming bridge that
// the plugins leave per bridge: hostbridge-dhcp's FORWARD accept and
// portmap-lite's loopback guard in raw PREROUTING.
func removeForwardRules(bridge string) {
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, tc := range [][2]string{{"filter", "FORWARD"}, {"raw", "PREROUTING"}} {
			out, err := exec.Command(tool, "-t", tc[0], "-S", tc[1]).Output()
			if err != nil {
				continue
			}
			prefix := "-A " + tc[1] + " "
			for _, line := range strings.Split(string(out), "\n") {
				if !strings.HasPrefix(line, prefix) || !strings.Contains(line, " "+bridge+" ") {
					continue
				}
				args := append([]string{"-t", tc[0], "-D", tc[1]}, SplitRule(strings.TrimPrefix(line, prefix))...)
				_ = exec.Command(tool, args...).Run()
			}
		}
	}
}

// SplitRule splits an iptables -S line, keeping quoted strings whole.
func SplitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQ := false
	for _, r := range s {
		switch {
		case r == '"':
			inQ = !inQ
		case r == ' ' && !inQ:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
