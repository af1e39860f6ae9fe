package offline

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/bridgeport"
	"github.com/lanwire/lanwire/pkg/chain"
	"github.com/lanwire/lanwire/pkg/egress"
	"github.com/lanwire/lanwire/pkg/guard"
	"github.com/lanwire/lanwire/pkg/nft"
)

// hostSide is where the container's frames enter the host: the host end of
// its veth, a port of Bridge.
type hostSide struct {
	Veth   string
	Bridge string
}

// findHostSide picks the container's host veth from prevResult: an
// interface outside any sandbox that is a veth on a bridge.
func findHostSide(res *current.Result) (hostSide, error) {
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox != "" {
			continue
		}
		if br := bridgeport.BridgeOf(ifc.Name); br != "" {
			return hostSide{Veth: ifc.Name, Bridge: br}, nil
		}
		l, err := netlinksafe.LinkByName(ifc.Name)
		if err != nil || l.Type() != "veth" {
			continue
		}
		if idx := l.Attrs().MasterIndex; idx > 0 {
			if m, err := netlink.LinkByIndex(idx); err == nil && m.Type() == "bridge" {
				return hostSide{Veth: ifc.Name, Bridge: m.Attrs().Name}, nil
			}
		}
		return hostSide{}, invalid("the container's host veth %s is not a bridge port: offline-egress guards containers at their bridge port (hostbridge-dhcp, or the bridge plugin, also with isGateway)", ifc.Name)
	}
	return hostSide{}, invalid("prevResult names no host-side veth of the container: chain offline-egress after hostbridge-dhcp or the bridge plugin (and give the conflist a cniVersion of 0.3.0 or later, whose results list interfaces)")
}

// containerMAC is the MAC of the container's interface in prevResult.
func containerMAC(res *current.Result, ifname string) (string, error) {
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox != "" && ifc.Name == ifname && ifc.Mac != "" {
			return ifc.Mac, nil
		}
	}
	return "", invalid("prevResult gives no MAC for the container's %s: chain offline-egress after hostbridge-dhcp or the bridge plugin", ifname)
}

// policy is the container's offline policy from the config.
func policy(c *Config, containerID string) *guard.Policy {
	p := &guard.Policy{Allow: c.allow, NoDHCP: !*c.AllowDHCP}
	if c.LogBlocked {
		p.LogPrefix = egress.LogPrefix(containerID)
	}
	return p
}

// port is the guard record of the container's port with this config's
// policy: hostbridge-dhcp's record when it made the port (the lease daemon
// keeps its addresses current), else one made from prevResult.
func port(c *Config, args *skel.CmdArgs, prev *current.Result) (guard.Port, error) {
	rec, err := hostBridgeRecord(c, args, prev)
	if err != nil {
		return guard.Port{}, err
	}
	if rec == nil {
		hs, err := findHostSide(prev)
		if err != nil {
			return guard.Port{}, err
		}
		mac, err := containerMAC(prev, args.IfName)
		if err != nil {
			return guard.Port{}, err
		}
		rec = &guard.Port{IfName: hs.Veth, Bridge: hs.Bridge, Network: c.Name, ContainerID: args.ContainerID, MAC: mac}
		for _, ip := range prev.IPs {
			rec.Addrs = append(rec.Addrs, ip.Address.IP)
		}
	}
	if rec.Daemon == "" {
		rec.Daemon = c.DaemonSocket
	}
	rec.Offline = policy(c, args.ContainerID)
	return *rec, nil
}

// hostBridgeRecord is the record hostbridge-dhcp made of this container's
// port in this network, found by the host-side interface prevResult names
// (nil when there is none: the bridge plugin made the port).
func hostBridgeRecord(c *Config, args *skel.CmdArgs, prev *current.Result) (*guard.Port, error) {
	rec, err := recordIn(c, args, prev)
	if rec == nil || !rec.HostBridge {
		return nil, err
	}
	return rec, nil
}

// recordIn is the record of this container's port in this network among
// the host-side interfaces prevResult names, nil when there is none.
func recordIn(c *Config, args *skel.CmdArgs, prev *current.Result) (*guard.Port, error) {
	for _, ifc := range prev.Interfaces {
		if ifc.Sandbox != "" || ifc.Name == "" {
			continue
		}
		rec, err := guard.Load(ifc.Name)
		if err != nil {
			return nil, types.NewError(types.ErrInternal, "reading the port's record", err.Error())
		}
		if rec != nil && rec.Network == c.Name && rec.ContainerID == args.ContainerID {
			return rec, nil
		}
	}
	return nil, nil
}

func firewallError(err error) error {
	return nft.CNIError("installing the offline-egress firewall", err)
}

// Add guards the container's bridge port and passes prevResult on, with
// the configured nameservers.
func Add(args *skel.CmdArgs) error {
	res, cniVersion, err := Lockdown(args)
	if err != nil {
		return err
	}
	return types.PrintResult(res, cniVersion)
}

// Lockdown is Add without the printing: it returns the result and the
// CNI version to write it in (the netavark plugin chains it in-process).
func Lockdown(args *skel.CmdArgs) (*current.Result, string, error) {
	c, err := Parse(args.StdinData)
	if err != nil {
		return nil, "", err
	}
	prev, err := chain.Chained(&c.PluginConf, "offline-egress")
	if err != nil {
		return nil, "", err
	}
	p, err := port(c, args, prev)
	if err != nil {
		return nil, "", err
	}
	if err := guard.Apply(p); err != nil {
		return nil, "", firewallError(err)
	}
	for _, d := range c.dns {
		prev.DNS.Nameservers = append(prev.DNS.Nameservers, d.String())
	}
	return prev, c.CNIVersion, nil
}

// Del removes the container's port from the guard when offline-egress made
// it (behind the bridge plugin); a port hostbridge-dhcp made stays offline
// until hostbridge-dhcp's DEL removes the veth and then the port. It needs
// no prevResult and succeeds when nothing is there.
func Del(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	rec, err := guard.Find(c.Name, args.ContainerID)
	if err != nil {
		return firewallError(err)
	}
	if rec == nil {
		// No index entry, as a kill -9 between a port's record and its
		// index leaves: the port prevResult names (the index's miss is
		// the only DEL that converts it).
		if prev, _ := chain.PrevResult(&c.PluginConf); prev != nil {
			if rec, err = recordIn(c, args, prev); err != nil {
				return err
			}
		}
	}
	if rec == nil {
		return nil
	}
	if rec.HostBridge {
		// hostbridge-dhcp's DEL, next, removes the veth and then the
		// whole port: the container stays offline until it has no port.
		return nil
	}
	if err := guard.Remove(rec.IfName); err != nil {
		return firewallError(err)
	}
	return nil
}

// Check verifies the container's port carries this config's policy and
// that every rule and entry of it is in the kernel.
func Check(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := chain.Chained(&c.PluginConf, "offline-egress")
	if err != nil {
		return err
	}
	want, err := port(c, args, prev)
	if err != nil {
		return err
	}
	rec, err := guard.Load(want.IfName)
	if err != nil {
		return err
	}
	if rec == nil || rec.Offline == nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("port %s of container %s is not offline", want.IfName, args.ContainerID), "re-add the container")
	}
	if err := samePolicy(rec.Offline, want.Offline); err != nil {
		return err
	}
	if err := guard.Check(*rec); err != nil {
		return types.NewError(types.ErrInternal, "the offline-egress firewall is not as it should be", err.Error())
	}
	return nil
}

func samePolicy(got, want *guard.Policy) error {
	g, w := fmt.Sprint(got.Allow, got.LogPrefix, got.NoDHCP), fmt.Sprint(want.Allow, want.LogPrefix, want.NoDHCP)
	if g != w {
		return types.NewError(types.ErrInternal, "the port's offline policy differs from the configuration", "installed: "+g+"; configured: "+w)
	}
	return nil
}

// GC removes the ports of this network's containers not in the valid list
// (hostbridge-dhcp's GC takes those it made), and clears entries no
// recorded port owns.
func GC(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, a := range c.ValidAttachments {
		valid[a.ContainerID] = true
	}
	if err := guard.GC(c.Name, func(id string) bool { return valid[id] }, false); err != nil {
		return firewallError(err)
	}
	return nil
}

// Status says whether nf_tables can be used.
func Status(args *skel.CmdArgs) error {
	if _, err := Parse(args.StdinData); err != nil {
		return err
	}
	return nftStatus("offline-egress")
}

// nftStatus is STATUS of a plugin that needs nf_tables.
func nftStatus(plugin string) error {
	c, err := nft.Open()
	if err == nil {
		_, err = c.ListTablesOfFamily(0)
		c.Close("")
	}
	if err != nil {
		return types.NewError(50, plugin+" cannot use nf_tables", err.Error())
	}
	return nil
}
