package portmap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/chains"
)

// Config is portmap-lite's network configuration.
type Config struct {
	types.PluginConf
	// Localhost lets the host reach mappings through 127.0.0.1 (opt-in:
	// it turns on route_localnet on the container's bridge).
	Localhost     bool `json:"localhost,omitempty"`
	RuntimeConfig struct {
		PortMappings []Mapping `json:"portMappings,omitempty"`
	} `json:"runtimeConfig,omitempty"`

	mappings []Mapping
}

func invalid(format string, a ...any) error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// Parse decodes and checks the config and the portMappings capability;
// every failure is CNI error 7, found before anything changes.
func Parse(stdin []byte) (*Config, error) {
	var c Config
	if err := json.NewDecoder(bytes.NewReader(stdin)).Decode(&c); err != nil {
		return nil, invalid("parsing portmap-lite configuration: %v", err)
	}
	if c.Name == "" {
		return nil, invalid("network configuration has no \"name\"")
	}
	ms, err := Validate(c.RuntimeConfig.PortMappings)
	if err != nil {
		return nil, invalid("%v", err)
	}
	c.mappings = ms
	if c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return nil, invalid("parsing prevResult: %v", err)
		}
	}
	return &c, nil
}

// specs builds one Spec per family the container has an address in.
func specs(c *Config, args *skel.CmdArgs, prev *current.Result) []Spec {
	chain := ChainName(c.Name, args.ContainerID)
	var out []Spec
	have := map[chains.Family]bool{}
	for _, ip := range prev.IPs {
		f := chains.V4
		if ip.Address.IP.To4() == nil {
			if ip.Address.IP.IsLinkLocalUnicast() {
				continue
			}
			f = chains.V6
		}
		if have[f] {
			continue
		}
		have[f] = true
		out = append(out, Spec{Network: c.Name, ContainerID: args.ContainerID, Chain: chain, Family: f,
			Addr: ip.Address, Mappings: c.mappings, Localhost: c.Localhost, MasqAll: !isLocal(ip.Gateway)})
	}
	return out
}

func firewallError(err error) error { return chains.CNIError("changing the portmap-lite rules", err) }

func prevResult(c *Config) (*current.Result, error) {
	if c.PrevResult == nil {
		return nil, invalid("portmap-lite is a chained plugin and needs a prevResult: put it after hostbridge-dhcp (or bridge) in a conflist")
	}
	res, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return nil, invalid("converting prevResult: %v", err)
	}
	return res, nil
}

// isLocal reports whether ip is one of this host's addresses.
func isLocal(ip net.IP) bool {
	if ip == nil {
		return false
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// hostDev names the host interface the container is reached through: its
// bridge, else its host veth.
func hostDev(prev *current.Result) string {
	dev := ""
	for _, ifc := range prev.Interfaces {
		if ifc.Sandbox != "" {
			continue
		}
		l, err := netlinksafe.LinkByName(ifc.Name)
		if err != nil {
			continue
		}
		if l.Type() == "bridge" {
			return ifc.Name
		}
		if l.Type() == "veth" && dev == "" {
			dev = ifc.Name
		}
	}
	return dev
}

// enableHairpin lets the container reach its own published ports: DNAT on
// a bridge sends the packet back out of the port it came in by, which the
// bridge allows only in hairpin mode.
// Equivalent to: `bridge link set dev VETH hairpin on`.
func enableHairpin(prev *current.Result) error {
	for _, ifc := range prev.Interfaces {
		if ifc.Sandbox != "" {
			continue
		}
		p := "/sys/class/net/" + ifc.Name + "/brport/hairpin_mode"
		if _, err := os.Stat(p); err != nil {
			continue // not a bridge port
		}
		if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("turning on hairpin mode of %s: %w", ifc.Name, err)
		}
	}
	return nil
}

// enableForwarding lets IPv4 packets arriving on dev be forwarded (a LAN
// client's connection DNATed to a container behind the same bridge). It is
// the interface's own switch, not the global ip_forward.
// Equivalent to: `sysctl net.ipv4.conf.DEV.forwarding=1`.
func enableForwarding(dev string) error {
	p := "/proc/sys/net/ipv4/conf/" + dev + "/forwarding"
	if b, err := os.ReadFile(p); err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	return os.WriteFile(p, []byte("1"), 0o644)
}

// Add installs the container's mappings, refusing ports another container
// or a host process holds, and passes prevResult on.
func Add(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := prevResult(c)
	if err != nil {
		return err
	}
	if len(c.mappings) == 0 {
		return types.PrintResult(prev, c.CNIVersion)
	}
	ss := specs(c, args, prev)
	if len(ss) == 0 {
		return invalid("prevResult has no IP address to publish ports to")
	}
	// The host interface the container is reached through; none for
	// host-less attachments such as macvlan.
	dev := hostDev(prev)
	if dev != "" {
		if err := enableForwarding(dev); err != nil {
			return types.NewError(types.ErrInternal, "enabling forwarding on "+dev, err.Error())
		}
	}
	if err := enableHairpin(prev); err != nil {
		return types.NewError(types.ErrInternal, "letting the container reach its own ports", err.Error())
	}
	if c.Localhost && dev == "" {
		return invalid("\"localhost\": true needs the container's host interface (a bridge or veth) in prevResult")
	}
	if c.Localhost {
		if err := allowLocalhost(dev); err != nil {
			return types.NewError(types.ErrInternal, "enabling 127.0.0.1 access to published ports", err.Error())
		}
	}
	unlock, err := Layout(chains.V4).TakeLock()
	if err != nil {
		return firewallError(err)
	}
	defer unlock()
	chain := ChainName(c.Name, args.ContainerID)
	if err := checkFree(c.Name, args.ContainerID, c.mappings); err != nil {
		return err
	}
	fams := make([]chains.Family, len(ss))
	byFamily := map[chains.Family]Spec{}
	for i, sp := range ss {
		fams[i] = sp.Family
		byFamily[sp.Family] = sp
	}
	tables, errs := chains.OpenAll(fams...)
	for i, err := range errs {
		if err != nil {
			return types.NewError(types.ErrInternal, fmt.Sprintf("cannot publish ports over %s", fams[i]), err.Error())
		}
	}
	undo := func() { _ = chains.RemoveAll(tables, Layout, chain) }
	if err := chains.Each(tables, func(t *chains.Tables) error {
		sp := byFamily[t.Family]
		return t.Install(Layout(t.Family), sp.Chain, sp.Dispatch(), sp.Rules())
	}); err != nil {
		undo()
		return firewallError(err)
	}
	if err := setClaims(c.Name, args.ContainerID, chain, c.mappings); err != nil {
		undo()
		return types.NewError(types.ErrInternal, "recording the published ports", err.Error())
	}
	flushUDP(c.mappings)
	return types.PrintResult(prev, c.CNIVersion)
}

// checkFree refuses a mapping whose host port another container's mapping
// or a listening host process already holds.
func checkFree(network, id string, ms []Mapping) error {
	for _, m := range ms {
		held, err := holders(m, network, id, chainAlive)
		if err != nil {
			return types.NewError(types.ErrInternal, "checking which ports are taken", err.Error())
		}
		if len(held) > 0 {
			return types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf("port %d/%s is already allocated to container %s (network %s)", m.HostPort, m.Protocol, held[0].ID, held[0].Network), "")
		}
		for _, f := range []chains.Family{chains.V4, chains.V6} {
			if !m.applies(f) {
				continue
			}
			if addr, busy := hostListening(m, f); busy {
				return types.NewError(types.ErrInvalidNetworkConfig,
					fmt.Sprintf("port %d/%s is already allocated: a host process listens on %s", m.HostPort, m.Protocol, addr), "")
			}
		}
	}
	return nil
}

// chainAlive reports whether a container's chain exists in either family.
func chainAlive(chain string) bool {
	for _, f := range []chains.Family{chains.V4, chains.V6} {
		if t, err := chains.Open(f); err == nil {
			if ok, err := t.ChainExists(Table, chain); err == nil && ok {
				return true
			}
		}
	}
	return false
}

// hostListening tries to bind the mapping's host address and port; a
// failure with "address in use" means a host process holds it.
func hostListening(m Mapping, f chains.Family) (string, bool) {
	host := m.HostIP
	if host == "" {
		host = "0.0.0.0"
		if f == chains.V6 {
			host = "::"
		}
	}
	addr := net.JoinHostPort(host, strconv.Itoa(m.HostPort))
	var err error
	if m.Protocol == "udp" {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", addr); err == nil {
			pc.Close()
		}
	} else {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			ln.Close()
		}
	}
	return addr, err != nil && isAddrInUse(err)
}

// flushUDP removes conntrack entries of the UDP host ports, so a client's
// stream reaches the new container at once instead of the old one's entry.
// Equivalent to: `conntrack -D -p udp --orig-port-dst PORT`.
func flushUDP(ms []Mapping) {
	for _, m := range ms {
		if m.Protocol != "udp" {
			continue
		}
		for _, fam := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			f := &netlink.ConntrackFilter{}
			_ = f.AddProtocol(17)
			_ = f.AddPort(netlink.ConntrackOrigDstPort, uint16(m.HostPort))
			if ip := m.ip(); ip != nil {
				if (ip.To4() != nil) != (fam == netlink.FAMILY_V4) {
					continue
				}
				_ = f.AddIP(netlink.ConntrackOrigDstIP, ip)
			}
			_, _ = netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f)
		}
	}
}

// allowLocalhost turns on route_localnet on the interface the container is
// reached through, and drops packets from outside addressed to 127.0.0.0/8
// there, which route_localnet would otherwise let in.
// Equivalent to: `sysctl net.ipv4.conf.BR.route_localnet=1; iptables -t raw -I PREROUTING -i BR -d 127.0.0.0/8 -j DROP`.
func allowLocalhost(dev string) error {
	t, err := chains.Open(chains.V4)
	if err != nil {
		return err
	}
	rule := []string{"-i", dev, "-d", "127.0.0.0/8", "-m", "comment", "--comment", "lanwire portmap-lite: no loopback from " + dev, "-j", "DROP"}
	ok, err := t.Exists("raw", "PREROUTING", rule...)
	if err != nil {
		return err
	}
	if !ok {
		if err := t.Insert("raw", "PREROUTING", 1, rule...); err != nil {
			return fmt.Errorf("guarding %s against loopback-addressed packets: %w", dev, err)
		}
	}
	return os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/route_localnet", []byte("1"), 0o644)
}

// Del removes the container's mappings and their UDP conntrack entries. It
// needs no prevResult and succeeds when they are already gone.
func Del(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	chain := ChainName(c.Name, args.ContainerID)
	unlock, err := Layout(chains.V4).TakeLock()
	if err != nil {
		return firewallError(err)
	}
	defer unlock()
	err = chains.RemoveAll(chains.Usable(), Layout, chain)
	// The mappings it held: from the claims, and from the capability
	// arguments DEL is given again.
	flushUDP(append(dropClaims(chain), c.mappings...))
	if err != nil {
		return firewallError(err)
	}
	return nil
}

// Check verifies the hooks, the dispatch rules and the DNAT targets.
func Check(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := prevResult(c)
	if err != nil {
		return err
	}
	if len(c.mappings) == 0 {
		return nil
	}
	for _, s := range specs(c, args, prev) {
		t, err := chains.Open(s.Family)
		if err != nil {
			return err
		}
		if err := t.Check(Layout(s.Family), s.Chain, s.Dispatch(), s.Rules()); err != nil {
			return err
		}
	}
	return nil
}

// GC removes the mappings of this network's containers not in the valid list.
func GC(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, a := range c.ValidAttachments {
		valid[a.ContainerID] = true
	}
	unlock, err := Layout(chains.V4).TakeLock()
	if err != nil {
		return firewallError(err)
	}
	defer unlock()
	stale := func(comment string) bool {
		network, id, _, ok := ParseComment(comment)
		return ok && network == c.Name && !valid[id]
	}
	var mu sync.Mutex
	err = chains.Each(chains.Usable(), func(t *chains.Tables) error {
		removed, err := t.RemoveStale(Layout(t.Family), stale)
		mu.Lock()
		defer mu.Unlock()
		for _, chain := range removed {
			dropClaims(chain)
		}
		return err
	})
	// Claims whose chain no longer exists at all.
	for _, chain := range claimedChains() {
		if !chainAlive(chain) {
			dropClaims(chain)
		}
	}
	if err != nil {
		return firewallError(err)
	}
	return nil
}

// Status says whether iptables can be used.
func Status(args *skel.CmdArgs) error {
	if _, err := Parse(args.StdinData); err != nil {
		return err
	}
	return chains.Status("portmap-lite")
}
