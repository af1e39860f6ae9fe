package portmap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/pkg/chain"
	"github.com/lanwire/lanwire/pkg/guard"
	"github.com/lanwire/lanwire/pkg/hostknob"
	"github.com/lanwire/lanwire/pkg/nft"
)

// Knobs is where the host settings the plugin turns on are remembered.
var Knobs = hostknob.Knobs{Dir: hostknob.DefaultDir}

// Config is portmap-lite's network configuration.
type Config struct {
	types.PluginConf
	// Localhost lets the host reach mappings through 127.0.0.1 (opt-in:
	// it turns on route_localnet on the container's bridge).
	Localhost bool `json:"localhost,omitempty"`
	// DaemonSocket is the lease daemon the plugin hands its firewall
	// socket to (by default the one hostbridge-dhcp's port names).
	DaemonSocket string `json:"daemonSocket,omitempty"`
	// ListenCheck refuses a host port a host process listens on (default
	// true). The netavark plugin turns it off: podman holds the ports it
	// publishes itself, and refuses those a host process holds.
	ListenCheck   *bool `json:"listenCheck,omitempty"`
	RuntimeConfig struct {
		PortMappings []Mapping `json:"portMappings,omitempty"`
	} `json:"runtimeConfig,omitempty"`

	mappings []Mapping
	// badMappings is why the portMappings were refused: ADD and CHECK
	// fail with it; DEL, GC and STATUS go on (what they remove is in the
	// record), so a container whose ADD was refused can be removed.
	badMappings error
}

func invalid(format string, a ...any) error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// Parse decodes and checks the config and the portMappings capability;
// every failure is CNI error 7, found before anything changes (invalid
// mappings are kept in badMappings for ADD and CHECK to refuse).
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
		c.badMappings = invalid("%v", err)
	}
	c.mappings = ms
	return &c, nil
}

// specs builds one Spec per family the container has an address in.
func specs(c *Config, prev *current.Result) []Spec {
	var out []Spec
	have := map[bool]bool{}
	for _, ip := range prev.IPs {
		v6 := ip.Address.IP.To4() == nil
		if (v6 && ip.Address.IP.IsLinkLocalUnicast()) || have[v6] {
			continue
		}
		have[v6] = true
		out = append(out, Spec{Addr: ip.Address, Mappings: c.mappings, Localhost: c.Localhost && !v6, MasqAll: !isLocal(ip.Gateway)})
	}
	return out
}

func firewallError(err error) error { return nft.CNIError("changing the portmap-lite rules", err) }

// isLocal reports whether ip is one of this host's addresses (the kernel
// routes it locally).
func isLocal(ip net.IP) bool {
	if ip == nil {
		return false
	}
	rs, err := netlink.RouteGet(ip)
	return err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL
}

// hostSide names the host interface the container is reached through (its
// bridge, else its host veth) and its bridge ports (for hairpin mode).
func hostSide(prev *current.Result) (dev string, ports []string) {
	for _, ifc := range prev.Interfaces {
		if ifc.Sandbox != "" {
			continue
		}
		l, err := netlinksafe.LinkByName(ifc.Name)
		if err != nil {
			continue
		}
		switch l.Type() {
		case "bridge":
			dev = ifc.Name
		case "veth":
			if l.Attrs().MasterIndex > 0 {
				ports = append(ports, ifc.Name)
			} else if dev == "" {
				dev = ifc.Name
			}
		}
	}
	return dev, ports
}

// daemonFor is the lease daemon to hand the firewall socket to.
func daemonFor(c *Config, ports []string) string {
	if c.DaemonSocket != "" {
		return c.DaemonSocket
	}
	for _, p := range ports {
		if rec, err := guard.Load(p); err == nil && rec != nil && rec.Daemon != "" {
			return rec.Daemon
		}
	}
	return guard.DefaultDaemon
}

// lock serializes portmap-lite's changes.
func lock() (func(), error) { return nft.Lock(filepath.Join(Dir, "lock")) }

// Add publishes the container's mappings, refusing ports another container
// or a host process holds, and passes prevResult on.
func Add(args *skel.CmdArgs) error {
	res, cniVersion, err := Publish(args)
	if err != nil {
		return err
	}
	return types.PrintResult(res, cniVersion)
}

// Publish is Add without the printing: it returns the result and the
// CNI version to write it in (the netavark plugin chains it in-process).
func Publish(args *skel.CmdArgs) (*current.Result, string, error) {
	c, err := Parse(args.StdinData)
	if err != nil {
		return nil, "", err
	}
	if c.badMappings != nil {
		return nil, "", c.badMappings
	}
	prev, err := chain.Chained(&c.PluginConf, "portmap-lite")
	if err != nil {
		return nil, "", err
	}
	if len(c.mappings) == 0 {
		return prev, c.CNIVersion, nil
	}
	ss := specs(c, prev)
	if len(ss) == 0 {
		return nil, "", invalid("prevResult has no IP address to publish ports to")
	}
	dev, ports := hostSide(prev)
	if c.Localhost && dev == "" {
		return nil, "", invalid("\"localhost\": true needs the container's host interface (a bridge or veth) in prevResult")
	}
	unlock, err := lock()
	if err != nil {
		return nil, "", firewallError(err)
	}
	defer unlock()
	if err := checkFree(c.Name, args.ContainerID, c.mappings, c.ListenCheck == nil || *c.ListenCheck); err != nil {
		return nil, "", err
	}
	rec := Record{Network: c.Name, ContainerID: args.ContainerID, Mappings: c.mappings, Specs: ss, Dev: dev,
		Localhost: c.Localhost, Daemon: daemonFor(c, ports), Ports: ports}
	user := "portmap:" + Owner(c.Name, args.ContainerID)
	old, err := loadRecord(c.Name, args.ContainerID)
	if err != nil {
		return nil, "", firewallError(err)
	}
	turnedOn, err := hostSettings(&rec, old, user)
	undo := func() {
		if old == nil {
			_ = Knobs.Release(user, nil, rec.knobs()...)
		}
		_ = hairpinOff(turnedOn)
	}
	if err != nil {
		undo()
		return nil, "", types.NewError(types.ErrInternal, "preparing the host to publish ports", err.Error())
	}
	if err := apply(old, &rec); err != nil {
		undo()
		return nil, "", firewallError(err)
	}
	if err := saveRecord(rec); err != nil {
		_ = apply(&rec, old)
		undo()
		return nil, "", types.NewError(types.ErrInternal, "recording the published ports", err.Error())
	}
	flushUDP(c.mappings)
	return prev, c.CNIVersion, nil
}

// hostSettings turns on what published ports need, each put back when the
// last container needing it goes: forwarding on the interface LAN clients
// arrive by (its own switch, not the global ip_forward), hairpin mode on
// the container's bridge ports (so it reaches its own published ports), and
// with "localhost", route_localnet.
// Equivalent to: `sysctl net.ipv4.conf.DEV.forwarding=1; bridge link set dev VETH hairpin on`.
// The shared settings are counted per user (hostknob); a bridge port is
// one container's, so r.Hairpin records the ports whose hairpin mode was
// off (those old had already turned on stay in it). It returns the ports
// this call turned on, for a failed ADD to turn off again.
func hostSettings(r *Record, old *Record, user string) (turnedOn []string, err error) {
	if err := Knobs.Need("1", user, r.knobs()...); err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	if old != nil {
		for _, p := range old.Hairpin {
			mine[p] = true
		}
	}
	r.Hairpin = nil
	for _, p := range r.Ports {
		cur, err := os.ReadFile(hairpinFile(p))
		if err != nil {
			return turnedOn, fmt.Errorf("reading the hairpin mode of %s: %w", p, err)
		}
		if strings.TrimSpace(string(cur)) != "0" {
			if mine[p] {
				r.Hairpin = append(r.Hairpin, p)
			}
			continue
		}
		if err := os.WriteFile(hairpinFile(p), []byte("1"), 0o644); err != nil {
			return turnedOn, fmt.Errorf("turning hairpin mode on for %s: %w", p, err)
		}
		turnedOn = append(turnedOn, p)
		r.Hairpin = append(r.Hairpin, p)
	}
	return turnedOn, nil
}

func hairpinFile(port string) string { return "/sys/class/net/" + port + "/brport/hairpin_mode" }

// hairpinOff turns hairpin mode off on the ports that are still there.
// Equivalent to: `bridge link set dev VETH hairpin off`.
func hairpinOff(ports []string) error {
	var errs []error
	for _, p := range ports {
		if err := os.WriteFile(hairpinFile(p), []byte("0"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("turning hairpin mode off for %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// knobs are the shared host settings record r turns on.
func (r Record) knobs() []string {
	var out []string
	if r.Dev != "" {
		out = append(out, "/proc/sys/net/ipv4/conf/"+r.Dev+"/forwarding")
		if r.Localhost {
			out = append(out, "/proc/sys/net/ipv4/conf/"+r.Dev+"/route_localnet")
		}
	}
	return out
}

// apply moves the table from old's entries (nil: none) to new's, in one
// transaction; the first container creates the table, the last deletes it.
func apply(old, new *Record) error {
	var oldE, newE []Element
	owner, daemon := "", guard.DefaultDaemon
	if old != nil {
		oldE, owner, daemon = old.Elements(), Owner(old.Network, old.ContainerID), old.Daemon
	}
	if new != nil {
		newE, owner, daemon = new.Elements(), Owner(new.Network, new.ContainerID), new.Daemon
	}
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close(daemon)
	t := Layout()
	has, err := c.TableExists(t.Ref())
	if err != nil {
		return err
	}
	others := othersPublish(owner)
	switch {
	case new == nil && !others:
		if !has {
			return nil
		}
		// Left, empty, for the lease daemon to delete once unused for a
		// while (Tidy), as guard does with its tables; at once without it.
		if !c.HandOff(daemon) {
			c.Delete(t)
			return c.Flush()
		}
		queue(c, t, oldE, nil, nil)
		if err := c.Flush(); err != nil {
			c.Delete(t)
			return c.Flush()
		}
		return nil
	case !has:
		if others {
			return rebuild(c, new, owner)
		}
		if err := c.Create(t); err != nil {
			return err
		}
		oldE = nil
	}
	queue(c, t, oldE, newE, new)
	if err := c.Flush(); err != nil {
		// The kernel and the records disagree (an entry removed by hand, a
		// flushed table): start the table over from the records.
		if rerr := rebuild(c, new, owner); rerr != nil {
			return fmt.Errorf("%v; rebuilding the table: %w", err, rerr)
		}
	}
	return nil
}

// queue queues the removal of old's entries new does not have, the
// addition of new's old did not, and the localnet guard of new's interface.
func queue(c *nft.Conn, t nft.Table, oldE, newE []Element, new *Record) {
	in := func(es []Element) map[string]bool {
		m := map[string]bool{}
		for _, e := range es {
			m[e.Set+string(e.Key)+string(e.KeyEnd)+string(e.Val)] = true
		}
		return m
	}
	inNew := in(newE)
	for _, e := range oldE {
		if !inNew[e.Set+string(e.Key)+string(e.KeyEnd)+string(e.Val)] {
			_ = c.SetDeleteElements(t.SetRef(e.Set), []nftables.SetElement{{Key: e.Key, KeyEnd: e.KeyEnd}})
		}
	}
	// All of new's entries, not only those old lacks: adding one that is
	// there changes nothing, and one removed by hand comes back.
	for _, e := range newE {
		{
			_ = c.SetAddElements(t.SetRef(e.Set), []nftables.SetElement{{Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val,
				Comment: Comment(new.Network, new.ContainerID, e.Mapping)}})
		}
	}
	if new != nil && new.Localhost && new.Dev != "" {
		_ = c.SetAddElements(t.SetRef(setLocalnet), []nftables.SetElement{{Key: nft.IfName(new.Dev), Comment: "route_localnet is on"}})
	}
}

// rebuild replaces the table with one holding every record's entries
// (new in place of owner's record), in one transaction.
func rebuild(c *nft.Conn, new *Record, owner string) error {
	t := Layout()
	if ok, _ := c.TableExists(t.Ref()); ok {
		c.Delete(t)
	}
	var rs []Record
	for _, r := range records() {
		if Owner(r.Network, r.ContainerID) != owner {
			rs = append(rs, r)
		}
	}
	if new != nil {
		rs = append(rs, *new)
	}
	if len(rs) > 0 {
		if err := c.Create(t); err != nil {
			return err
		}
	}
	for i := range rs {
		queue(c, t, nil, rs[i].Elements(), &rs[i])
	}
	return c.Flush()
}

// checkFree refuses a mapping whose host port another container's mapping
// or a listening host process already holds.
func checkFree(network, id string, ms []Mapping, listening bool) error {
	for _, m := range ms {
		held, err := holders(m, network, id)
		if err != nil {
			return types.NewError(types.ErrInternal, "checking which ports are taken", err.Error())
		}
		if len(held) > 0 {
			return types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf("port %d/%s is already allocated to container %s (network %s)", m.HostPort, m.Protocol, held[0].ID, held[0].Network), "")
		}
		for _, v6 := range []bool{false, true} {
			if !listening || !m.applies(v6) {
				continue
			}
			if addr, busy := hostListening(m, v6); busy {
				return types.NewError(types.ErrInvalidNetworkConfig,
					fmt.Sprintf("port %d/%s is already allocated: a host process listens on %s", m.HostPort, m.Protocol, addr), "")
			}
		}
	}
	return nil
}

// hostListening tries to bind the mapping's host address and port as a
// listener would (TCP with SO_REUSEADDR, IPv6 on :: also taking IPv4); a
// failure with "address in use" means a host process holds it. Plain
// socket calls: Go's net package would first probe the host's IPv6 and
// MPTCP support and read somaxconn, in every plugin call.
func hostListening(m Mapping, v6 bool) (string, bool) {
	ip := m.ip()
	if ip == nil {
		ip = net.IPv4zero
		if v6 {
			ip = net.IPv6unspecified
		}
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(m.HostPort))
	family, typ := unix.AF_INET, unix.SOCK_STREAM
	if v6 {
		family = unix.AF_INET6
	}
	if m.Protocol == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return addr, false
	}
	defer unix.Close(fd)
	if typ == unix.SOCK_STREAM {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	var sa unix.Sockaddr
	if v6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
		s6 := &unix.SockaddrInet6{Port: m.HostPort}
		copy(s6.Addr[:], ip.To16())
		sa = s6
	} else {
		s4 := &unix.SockaddrInet4{Port: m.HostPort}
		copy(s4.Addr[:], ip.To4())
		sa = s4
	}
	return addr, isAddrInUse(unix.Bind(fd, sa))
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

// remove unpublishes a container's record: its entries, claims and host
// settings.
func remove(r *Record) error {
	err := apply(r, nil)
	dropRecord(r.Network, r.ContainerID)
	// Hairpin mode as earlier versions counted it (a knob per port) is
	// released with the shared settings; a port none holds costs a lookup.
	knobs := r.knobs()
	if r.Hairpin == nil {
		for _, p := range r.Ports {
			knobs = append(knobs, hairpinFile(p))
		}
	}
	return errors.Join(err, hairpinOff(r.Hairpin),
		Knobs.Release("portmap:"+Owner(r.Network, r.ContainerID), nft.DaemonUp(r.Daemon), knobs...))
}

// Del removes the container's mappings and their UDP conntrack entries. It
// needs no prevResult and succeeds when they are already gone.
func Del(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	unlock, err := lock()
	if err != nil {
		return firewallError(err)
	}
	defer unlock()
	r, err := loadRecord(c.Name, args.ContainerID)
	if err != nil {
		return firewallError(err)
	}
	ms := c.mappings
	if r != nil {
		ms = append(ms, r.Mappings...)
		err = remove(r)
	}
	flushUDP(ms)
	if err != nil {
		return firewallError(err)
	}
	return nil
}

// Check verifies the table's rules and the container's entries.
func Check(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	if c.badMappings != nil {
		return c.badMappings
	}
	prev, err := chain.Chained(&c.PluginConf, "portmap-lite")
	if err != nil {
		return err
	}
	if len(c.mappings) == 0 {
		return nil
	}
	want := Record{Network: c.Name, ContainerID: args.ContainerID, Mappings: c.mappings, Specs: specs(c, prev)}
	conn, err := nft.Open()
	if err != nil {
		return err
	}
	defer conn.Close(daemonFor(c, nil))
	t := Layout()
	if ok, err := conn.TableExists(t.Ref()); err != nil || !ok {
		return types.NewError(types.ErrInternal, "portmap-lite's table "+Table+" is missing", fmt.Sprint(err))
	}
	if diff, err := conn.Verify(t); err != nil || diff != "" {
		return types.NewError(types.ErrInternal, "portmap-lite's rules are not as they should be", diff+fmt.Sprint(err))
	}
	have := map[string][]nftables.SetElement{}
	for _, e := range want.Elements() {
		if _, ok := have[e.Set]; !ok {
			es, err := conn.GetSetElements(t.SetRef(e.Set))
			if err != nil {
				return err
			}
			have[e.Set] = es
		}
		found := false
		for _, g := range have[e.Set] {
			found = found || (bytes.Equal(g.Key, e.Key) && bytes.Equal(g.Val, e.Val) && !g.IntervalEnd)
		}
		if !found {
			what := "an entry of set " + e.Set
			if e.Mapping != "" {
				what = "the DNAT of " + e.Mapping
			}
			return types.NewError(types.ErrInternal, fmt.Sprintf("%s for container %s is missing", what, args.ContainerID), "")
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
	unlock, err := lock()
	if err != nil {
		return firewallError(err)
	}
	defer unlock()
	var errs []error
	for _, r := range records() {
		if r.Network == c.Name && !valid[r.ContainerID] {
			errs = append(errs, remove(&r))
		}
	}
	errs = append(errs, repair())
	if err := errors.Join(errs...); err != nil {
		return firewallError(err)
	}
	return nil
}

// Tidy deletes the table when no container has published a port for
// grace (the lease daemon calls it; see guard.Tidy).
func Tidy(grace time.Duration) error {
	if !unused(grace) {
		return nil
	}
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close("")
	t := Layout()
	if ok, _ := c.TableExists(t.Ref()); !ok {
		return nil
	}
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	if !unused(grace) {
		return nil
	}
	c.Delete(t)
	return c.Flush()
}

// unused reports whether no container has had a record for grace.
func unused(grace time.Duration) bool {
	return nft.Idle(filepath.Join(Dir, "records"), grace) && !othersPublish("")
}

// repair rebuilds the table from the records when its rules differ from
// portmap-lite's (changed by hand).
func repair() error {
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close(guard.DefaultDaemon)
	t := Layout()
	has, err := c.TableExists(t.Ref())
	if err != nil || (!has && len(records()) == 0) {
		return err
	}
	if has {
		if diff, err := c.Verify(t); err != nil || diff == "" {
			return err
		}
	}
	return rebuild(c, nil, "")
}

// Status says whether nf_tables can be used.
func Status(args *skel.CmdArgs) error {
	if _, err := Parse(args.StdinData); err != nil {
		return err
	}
	c, err := nft.Open()
	if err == nil {
		_, err = c.ListTablesOfFamily(0)
		c.Close("")
	}
	if err != nil {
		return types.NewError(50, "portmap-lite cannot use nf_tables", err.Error())
	}
	return nil
}
