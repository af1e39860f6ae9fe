// Package doctor says why a container gets no lease on a bridge: it checks
// the bridge, the host firewall, the lease daemon and a real DHCP exchange,
// and gives the command that fixes each problem it finds.
package doctor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/bridgeport"
	"github.com/lanwire/lanwire/pkg/chain"
	"github.com/lanwire/lanwire/pkg/lease"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// Check is the outcome of one check.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
	// Offers are the answers to the probe.
	Offers []lease.Offer `json:"offers,omitempty"`
}

// Options say what to examine.
type Options struct {
	Bridge   string
	Conflist string
	Socket   string
	CNIPath  []string
	Timeout  time.Duration // of the DHCP probe
	// IPv6 adds a DHCPv6 SOLICIT to the probe.
	IPv6 bool
}

// Report is every check, in order.
type Report struct {
	Bridge string  `json:"bridge"`
	Checks []Check `json:"checks"`
}

// OK is true when every check passed.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

func (r *Report) add(c Check) { r.Checks = append(r.Checks, c) }

// Run performs the checks.
func Run(o Options) Report {
	var r Report
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Conflist != "" {
		bridge, socket, ipv6 := checkConflist(&r, o)
		if ipv6 == "dhcpv6" || ipv6 == "auto" {
			o.IPv6 = true // the network takes DHCPv6 leases: probe for them too
		}
		if o.Bridge == "" {
			o.Bridge = bridge
		}
		if o.Socket == "" {
			o.Socket = socket
		}
	}
	if o.Socket == "" {
		o.Socket = leaseapi.DefaultSocket
	}
	r.Bridge = o.Bridge
	if o.Bridge == "" {
		r.add(Check{Name: "bridge", Detail: "no bridge named", Fix: "hostbridge-dhcp doctor --bridge BR (or --conflist FILE)"})
		return r
	}
	bridgeOK := checkBridge(&r, o.Bridge)
	checkFirewall(&r, o.Bridge)
	checkDaemon(&r, o.Socket)
	if bridgeOK {
		for _, c := range probe(o.Bridge, o.Timeout, o.IPv6) {
			r.add(c)
		}
	} else {
		r.add(Check{Name: "DHCP probe", Detail: "skipped: the bridge is not usable", Fix: "fix the bridge first"})
	}
	return r
}

func sysfs(parts ...string) string {
	b, err := os.ReadFile(filepath.Join(append([]string{"/sys/class/net"}, parts...)...))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func checkBridge(r *Report, name string) bool {
	br, err := bridgeport.Lookup(name)
	if err != nil {
		fix := fmt.Sprintf("ip link add %s type bridge && ip link set %s up, then attach it to your LAN (README: \"A real LAN\")", name, name)
		if near := bridgeport.Nearest(name); near != "" {
			fix = fmt.Sprintf("did you mean bridge %q? (or create %s: %s)", near, name, fix)
		}
		if strings.Contains(err.Error(), "not a bridge") {
			fix = fmt.Sprintf("point the network at a bridge: %q is not one (ip -d link show %s)", name, name)
		}
		r.add(Check{Name: "bridge exists", Detail: err.Error(), Fix: fix})
		return false
	}
	r.add(Check{Name: "bridge exists", OK: true, Detail: fmt.Sprintf("%s is a bridge (MTU %d)", name, br.Attrs().MTU)})
	if !bridgeport.IsUp(br) {
		r.add(Check{Name: "bridge is up", Detail: name + " is down", Fix: "ip link set " + name + " up"})
		return false
	}
	r.add(Check{Name: "bridge is up", OK: true})

	uplinks, containers := bridgeport.Ports(name)
	if len(uplinks) == 0 {
		r.add(Check{Name: "bridge has an uplink", Detail: fmt.Sprintf("%s has no port besides %d container veth(s): nothing connects it to the LAN", name, len(containers)),
			Fix: fmt.Sprintf("attach %s to your LAN; see the README's \"A real LAN\" (moving an interface and its address onto a bridge cuts remote sessions: do it from a console, or with an automatic rollback)", name)})
	} else {
		r.add(Check{Name: "bridge has an uplink", OK: true, Detail: fmt.Sprintf("uplink %s; %d container port(s)", strings.Join(uplinks, ", "), len(containers))})
	}

	stp := sysfs(name, "bridge", "stp_state")
	delay, _ := strconv.Atoi(sysfs(name, "bridge", "forward_delay")) // centiseconds
	var blocked []string
	for _, p := range uplinks {
		if st := sysfs(p, "brport", "state"); st != "" && st != "3" {
			blocked = append(blocked, p)
		}
	}
	switch {
	case stp != "0" && stp != "" && delay > 200:
		r.add(Check{Name: "STP forward delay", Detail: fmt.Sprintf("STP is on with a forward delay of %.0fs: every new port drops frames that long, longer than a DHCP client waits", float64(delay)/100),
			Fix: fmt.Sprintf("ip link set %s type bridge stp_state 0   (or: ip link set %s type bridge forward_delay 200)", name, name)})
	case len(blocked) > 0:
		r.add(Check{Name: "STP forward delay", Detail: "uplink port(s) not forwarding: " + strings.Join(blocked, ", "),
			Fix: fmt.Sprintf("bridge link show master %s   (check STP and the uplink's carrier)", name)})
	default:
		detail := "STP off"
		if stp != "0" && stp != "" {
			detail = fmt.Sprintf("STP on, forward delay %.0fs", float64(delay)/100)
		}
		r.add(Check{Name: "STP forward delay", OK: true, Detail: detail})
	}
	return true
}

// checkFirewall: when bridged frames cross iptables (br_netfilter), does
// the FORWARD chain let the bridge's traffic through?
func checkFirewall(r *Report, bridge string) {
	global := readProc("net/bridge/bridge-nf-call-iptables")
	own := sysfs(bridge, "bridge", "nf_call_iptables")
	if global != "1" && own != "1" {
		r.add(Check{Name: "bridged traffic and iptables", OK: true, Detail: "br_netfilter does not pass this bridge's frames to iptables"})
		return
	}
	ipt, err := iptables.New()
	if err != nil {
		r.add(Check{Name: "bridged traffic and iptables", Detail: "bridged frames cross iptables but iptables cannot be read: " + err.Error(), Fix: "apt-get install iptables"})
		return
	}
	rules, err := ipt.List("filter", "FORWARD")
	if err != nil {
		r.add(Check{Name: "bridged traffic and iptables", Detail: err.Error()})
		return
	}
	policy := "ACCEPT"
	for _, l := range rules {
		if strings.HasPrefix(l, "-P FORWARD ") {
			policy = strings.TrimPrefix(l, "-P FORWARD ")
			continue
		}
		f := strings.Fields(l)
		if !hasPair(f, "-i", bridge) && !hasPair(f, "-o", bridge) {
			continue
		}
		target := f[len(f)-1]
		switch target {
		case "ACCEPT":
			r.add(Check{Name: "bridged traffic and iptables", OK: true, Detail: fmt.Sprintf("bridge-nf-call-iptables is on; FORWARD accepts %s's traffic: %s", bridge, l)})
			return
		case "DROP", "REJECT":
			r.add(Check{Name: "bridged traffic and iptables", Detail: fmt.Sprintf("bridge-nf-call-iptables is on and FORWARD drops %s's traffic: %s", bridge, l),
				Fix: fmt.Sprintf("iptables -I FORWARD -i %s -o %s -j ACCEPT   (or remove the rule: iptables -D %s)", bridge, bridge, strings.TrimPrefix(l, "-A "))})
			return
		}
	}
	if policy == "DROP" {
		r.add(Check{Name: "bridged traffic and iptables", Detail: fmt.Sprintf("bridge-nf-call-iptables is on and the FORWARD policy is DROP (as on a host with Docker): %s's frames are dropped", bridge),
			Fix: fmt.Sprintf("iptables -I FORWARD -i %s -o %s -j ACCEPT   (hostbridge-dhcp adds this on its next ADD)", bridge, bridge)})
		return
	}
	r.add(Check{Name: "bridged traffic and iptables", OK: true, Detail: "bridge-nf-call-iptables is on; the FORWARD policy is " + policy})
}

func hasPair(f []string, flag, val string) bool {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == flag && f[i+1] == val {
			return true
		}
	}
	return false
}

func readProc(name string) string {
	b, err := os.ReadFile(filepath.Join("/proc/sys", name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func checkDaemon(r *Report, socket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := leaseapi.Call(ctx, socket, leaseapi.Request{Method: leaseapi.MethodStatus})
	if err == nil && resp.Status == nil {
		err = fmt.Errorf("%s answered without a status: is it a lanwire lease daemon?", socket)
	}
	if err != nil {
		r.add(Check{Name: "lease daemon", Detail: fmt.Sprint(err),
			Fix: fmt.Sprintf("systemctl start hostbridge-dhcp.socket   (or: hostbridge-dhcp daemon --socket %s)", socket)})
		return
	}
	st := resp.Status
	detail := fmt.Sprintf("protocol v%d, pid %d, %d lease(s)", st.Version, st.PID, st.Leases)
	if !st.OldestRenew.IsZero() {
		detail += fmt.Sprintf(", oldest renewal %s ago", time.Since(st.OldestRenew).Round(time.Second))
	}
	r.add(Check{Name: "lease daemon", OK: true, Detail: detail})
}

// probe attaches a throw-away namespace to the bridge and broadcasts
// DISCOVER (and, with ipv6, SOLICIT) from it, then removes everything. It
// never requests an address.
func probe(bridge string, timeout time.Duration, ipv6 bool) []Check {
	c := Check{Name: "DHCP probe"}
	checks := func() []Check { return []Check{c} }
	br, err := bridgeport.Lookup(bridge)
	if err != nil {
		c.Detail = err.Error()
		return checks()
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	host, peer := "lwdp"+id, "lwdq"+id // never a container veth: p, q are not hex
	mac := net.HardwareAddr{0x02, 0x4c, 0x57, b[0], b[1], b[2]}
	netns, err := ns.TempNetNS()
	if err != nil {
		c.Detail = "creating a probe namespace: " + err.Error()
		return checks()
	}
	defer netns.Close()
	la := netlink.NewLinkAttrs()
	la.Name = host
	la.MasterIndex = br.Attrs().Index
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peer, PeerHardwareAddr: mac, PeerNamespace: netlink.NsFd(int(netns.Fd()))}
	if err := netlink.LinkAdd(veth); err != nil {
		c.Detail = "creating the probe port: " + err.Error()
		return checks()
	}
	defer func() { _ = netlink.LinkDel(veth) }()
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+host+"/disable_ipv6", []byte("1"), 0o644)
	if l, err := netlink.LinkByName(host); err == nil {
		_ = netlink.LinkSetUp(l)
	}
	var pc *lease.ProbeConn
	err = netns.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(peer)
		if err != nil {
			return err
		}
		// No duplicate address detection: the link-local address is usable
		// at once for the DHCPv6 probe.
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+peer+"/accept_dad", []byte("0"), 0o644)
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		pc, err = lease.OpenProbe(peer, mac)
		return err
	})
	if err != nil {
		c.Detail = "setting up the probe port: " + err.Error()
		return checks()
	}
	defer pc.Close()
	start := time.Now()
	if err := bridgeport.WaitForwarding(host, timeout); err != nil {
		c.Detail = err.Error()
		c.Fix = fmt.Sprintf("ip link set %s type bridge forward_delay 200   (or stp_state 0)", bridge)
		return checks()
	}
	fwd := time.Since(start)
	offers, err := pc.Probe(lease.Spec{Hostname: "lanwire-doctor", VendorClass: "lanwire-doctor"}, timeout)
	if err != nil {
		c.Detail = err.Error()
		return checks()
	}
	if len(offers) == 0 {
		c.Detail = fmt.Sprintf("no DHCP server answered a DISCOVER on %s within %s", bridge, timeout)
		c.Fix = "make sure a DHCP server is reachable through the bridge's uplink (is it running? is the uplink on the right LAN or VLAN?)"
	} else {
		c.OK = true
		c.Offers = offers
		var parts []string
		for _, o := range offers {
			parts = append(parts, fmt.Sprintf("%s offered %s, router %v, DNS %v, lease %s, after %s",
				o.Server, o.Info.Address.String(), o.Info.Gateway, o.Info.DNS, o.Info.LeaseTime, o.Elapsed.Round(time.Millisecond)))
		}
		c.Detail = fmt.Sprintf("port forwarding after %s; %s", fwd.Round(time.Millisecond), strings.Join(parts, "; "))
	}
	if !ipv6 {
		return checks()
	}
	return []Check{c, probe6(netns, peer, mac, bridge, timeout)}
}

// probe6 sends SOLICIT from the probe namespace's interface.
func probe6(netns ns.NetNS, ifname string, mac net.HardwareAddr, bridge string, timeout time.Duration) Check {
	c := Check{Name: "DHCPv6 probe"}
	var pc *lease.Conn6
	err := netns.Do(func(ns.NetNS) error {
		var err error
		pc, err = lease.OpenConn6(ifname, mac, 3*time.Second) // waits for the link-local address
		return err
	})
	if err != nil {
		c.Detail = "opening a DHCPv6 socket: " + err.Error()
		return c
	}
	defer pc.Close()
	offers, _ := pc.Probe(timeout)
	if len(offers) == 0 {
		c.Detail = fmt.Sprintf("no DHCPv6 server answered a SOLICIT on %s within %s", bridge, timeout)
		c.Fix = "make sure a DHCPv6 server serves the LAN (or use \"ipv6\": \"slaac\" where the router only advertises a prefix)"
		return c
	}
	c.OK = true
	o := offers[0]
	c.Detail = fmt.Sprintf("server %s advertised %v, DNS %v, after %s", o.ServerDUID, o.Addresses, o.DNS, o.Elapsed.Round(time.Millisecond))
	return c
}

// checkConflist parses a conflist, checks its plugins exist in the CNI path
// and returns its hostbridge-dhcp bridge, socket and ipv6 mode.
func checkConflist(r *Report, o Options) (bridge, socket, ipv6 string) {
	list, err := libcni.ConfListFromFile(o.Conflist)
	if err != nil {
		r.add(Check{Name: "conflist parses", Detail: err.Error(), Fix: "fix the JSON of " + o.Conflist})
		return "", "", ""
	}
	r.add(Check{Name: "conflist parses", OK: true, Detail: fmt.Sprintf("network %q, %d plugin(s)", list.Name, len(list.Plugins))})
	var missing []string
	for _, p := range list.Plugins {
		found := false
		for _, dir := range o.CNIPath {
			if st, err := os.Stat(filepath.Join(dir, p.Network.Type)); err == nil && !st.IsDir() {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, p.Network.Type)
		}
		if p.Network.Type == "hostbridge-dhcp" {
			var hb struct {
				Bridge       string `json:"bridge"`
				DaemonSocket string `json:"daemonSocket"`
				IPv6         string `json:"ipv6"`
			}
			if err := json.Unmarshal(p.Bytes, &hb); err == nil {
				bridge, socket, ipv6 = hb.Bridge, hb.DaemonSocket, hb.IPv6
			}
		}
	}
	if len(list.Plugins) > 1 {
		if msg := chain.VersionProblem(list.CNIVersion); msg != "" {
			r.add(Check{Name: "conflist cniVersion", Detail: msg, Fix: `add "cniVersion": "1.1.0" at the top of ` + o.Conflist})
		} else {
			r.add(Check{Name: "conflist cniVersion", OK: true, Detail: list.CNIVersion})
		}
	}
	if len(missing) > 0 {
		r.add(Check{Name: "plugins installed", Detail: fmt.Sprintf("not in %s: %s", strings.Join(o.CNIPath, ":"), strings.Join(missing, ", ")),
			Fix: "make install   (or set CNI_PATH to where the plugins are)"})
	} else {
		r.add(Check{Name: "plugins installed", OK: true, Detail: "all in " + strings.Join(o.CNIPath, ":")})
	}
	switch {
	case bridge == "":
		r.add(Check{Name: "conflist bridge", Detail: "the conflist has no hostbridge-dhcp plugin with a bridge", Fix: "add {\"type\": \"hostbridge-dhcp\", \"bridge\": \"br0\"}"})
	case o.Bridge != "" && o.Bridge != bridge:
		r.add(Check{Name: "conflist bridge", Detail: fmt.Sprintf("the conflist uses bridge %q, not %q", bridge, o.Bridge), Fix: "set \"bridge\": \"" + o.Bridge + "\" in " + o.Conflist})
	default:
		r.add(Check{Name: "conflist bridge", OK: true, Detail: bridge})
	}
	return bridge, socket, ipv6
}

// Print writes the report with a check mark or a cross per check and, for
// each cross, the command that fixes it.
func (r Report) Print(w io.Writer) {
	for _, c := range r.Checks {
		mark := "✓"
		if !c.OK {
			mark = "✗"
		}
		line := mark + " " + c.Name
		if c.Detail != "" {
			line += ": " + c.Detail
		}
		fmt.Fprintln(w, line)
		if !c.OK && c.Fix != "" {
			fmt.Fprintln(w, "    fix: "+c.Fix)
		}
	}
	if r.OK() {
		fmt.Fprintln(w, "all checks passed")
	} else {
		fmt.Fprintln(w, "some checks failed: see the fixes above")
	}
}
