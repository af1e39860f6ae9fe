package offline

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/chains"
	"github.com/lanwire/lanwire/pkg/egress"
)

// hostSide is where the container's packets enter the host.
type hostSide struct {
	Veth   string
	Bridge string // empty when the veth is routed, not bridged
}

// findHostSide picks the container's host veth from prevResult: an
// interface outside any sandbox that is a veth.
func findHostSide(res *current.Result) (hostSide, error) {
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox != "" {
			continue
		}
		l, err := netlinksafe.LinkByName(ifc.Name)
		if err != nil || l.Type() != "veth" {
			continue
		}
		hs := hostSide{Veth: ifc.Name}
		if idx := l.Attrs().MasterIndex; idx > 0 {
			m, err := netlink.LinkByIndex(idx)
			if err != nil {
				return hs, fmt.Errorf("finding the bridge of %s: %w", ifc.Name, err)
			}
			if m.Type() == "bridge" {
				hs.Bridge = m.Attrs().Name
			}
		}
		return hs, nil
	}
	return hostSide{}, types.NewError(types.ErrInvalidNetworkConfig,
		"prevResult names no host-side veth of the container: chain offline-egress after hostbridge-dhcp or the bridge plugin", "")
}

// ensureBridgeNetfilter makes bridged frames of bridge cross iptables. It
// sets the bridge's own nf_call_iptables/ip6tables, never the global
// sysctls; when br_netfilter is not loaded it loads it and puts the global
// switches (which loading turns on) back off, so other bridges are untouched.
// Equivalent to: `ip link set BR type bridge nf_call_iptables 1 nf_call_ip6tables 1`.
func ensureBridgeNetfilter(bridge string) error {
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			return fmt.Errorf("offline-egress needs the br_netfilter kernel module to filter bridged traffic; load it with `modprobe br_netfilter` (%v: %s)", err, strings.TrimSpace(string(out)))
		}
		for _, s := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
			_ = os.WriteFile("/proc/sys/net/bridge/"+s, []byte("0"), 0o644)
		}
	}
	for _, attr := range []string{"nf_call_iptables", "nf_call_ip6tables"} {
		p := filepath.Join("/sys/class/net", bridge, "bridge", attr)
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "1" {
			continue
		}
		if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("turning on %s of bridge %s: %w", attr, bridge, err)
		}
	}
	return nil
}

// spec builds the firewall spec of the container described by prev.
func spec(c *Config, args *skel.CmdArgs, prev *current.Result, hs hostSide) egress.Spec {
	s := egress.Spec{
		Chain:     egress.ChainName(c.Name, args.ContainerID),
		Comment:   egress.Comment(c.Name, args.ContainerID),
		HostIf:    hs.Veth,
		Bridged:   hs.Bridge != "",
		Allow:     c.allow,
		DNS:       c.dns,
		AllowDHCP: *c.AllowDHCP,
	}
	for _, ip := range prev.IPs {
		s.Subnets = append(s.Subnets, &net.IPNet{IP: ip.Address.IP.Mask(ip.Address.Mask), Mask: ip.Address.Mask})
	}
	if c.LogBlocked {
		s.LogPrefix = egress.LogPrefix(args.ContainerID)
	}
	return s
}

func hasV6(prev *current.Result) bool {
	for _, ip := range prev.IPs {
		if ip.Address.IP.To4() == nil {
			return true
		}
	}
	return false
}

func prevResult(c *Config) (*current.Result, error) {
	if c.PrevResult == nil {
		return nil, invalid("offline-egress is a chained plugin and needs a prevResult: put it after hostbridge-dhcp (or bridge) in a conflist")
	}
	res, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return nil, invalid("converting prevResult: %v", err)
	}
	return res, nil
}

// egressLayout is offline-egress's layout, the same for both families.
func egressLayout(chains.Family) chains.Layout { return egress.Layout }

func firewallError(err error) error {
	return chains.CNIError("installing the offline-egress firewall", err)
}

// Add installs the container's firewall and passes prevResult on, with the
// configured nameservers.
func Add(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := prevResult(c)
	if err != nil {
		return err
	}
	hs, err := findHostSide(prev)
	if err != nil {
		return err
	}
	if hs.Bridge != "" {
		if err := ensureBridgeNetfilter(hs.Bridge); err != nil {
			return types.NewError(types.ErrInternal, "cannot filter bridged traffic", err.Error())
		}
	}
	s := spec(c, args, prev, hs)
	ts, errs := chains.OpenAll(chains.V4, chains.V6)
	if errs[0] != nil {
		return types.NewError(types.ErrInternal, "offline-egress cannot enforce IPv4: install iptables", errs[0].Error())
	}
	err6 := errs[1]
	if err6 != nil && hasV6(prev) {
		return types.NewError(types.ErrInternal, "the container has IPv6 but offline-egress cannot enforce IPv6 (fail closed): install ip6tables", err6.Error())
	}
	tables := ts[:1]
	if err6 == nil {
		tables = ts
	}
	unlock, err := egress.Layout.TakeLock()
	if err != nil {
		return firewallError(err)
	}
	defer unlock()
	undo := func() { _ = chains.RemoveAll(tables, egressLayout, s.Chain) }
	// Both families at once: each is its own iptables processes.
	if err := chains.Each(tables, func(t *chains.Tables) error {
		return t.InstallShared(egress.Layout, s.Chain, [][]string{s.DispatchRule()}, s.Shared(t.Family))
	}); err != nil {
		undo()
		return firewallError(err)
	}
	if err6 != nil {
		// No ip6tables and no IPv6 address: make sure the container cannot
		// bring IPv6 up unfiltered through SLAAC.
		if err := disableIPv6(args.Netns, args.IfName); err != nil {
			undo()
			return types.NewError(types.ErrInternal, "ip6tables is missing and IPv6 could not be turned off in the container (fail closed)", err.Error())
		}
	}
	for _, d := range c.dns {
		prev.DNS.Nameservers = append(prev.DNS.Nameservers, d.String())
	}
	return types.PrintResult(prev, c.CNIVersion)
}

func disableIPv6(netnsPath, ifname string) error {
	return ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		for _, k := range []string{"all", "default", ifname} {
			p := filepath.Join("/proc/sys/net/ipv6/conf", k, "disable_ipv6")
			if _, err := os.Stat(p); err != nil {
				continue // IPv6 not in this kernel
			}
			if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

// Del removes exactly this container's chain and dispatch rules. It needs
// no prevResult and succeeds when they are already gone.
func Del(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	chain := egress.ChainName(c.Name, args.ContainerID)
	unlock, err := egress.Layout.TakeLock()
	if err != nil {
		return firewallError(err)
	}
	defer unlock()
	if err := chains.RemoveAll(chains.Usable(), egressLayout, chain); err != nil {
		return firewallError(err)
	}
	return nil
}

// Check verifies every rule of the container is in place.
func Check(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := prevResult(c)
	if err != nil {
		return err
	}
	hs, err := findHostSide(prev)
	if err != nil {
		return err
	}
	s := spec(c, args, prev, hs)
	t4, err := chains.Open(chains.V4)
	if err != nil {
		return err
	}
	dispatch := [][]string{s.DispatchRule()}
	if err := t4.CheckShared(egress.Layout, s.Chain, dispatch, s.Shared(chains.V4)); err != nil {
		return err
	}
	if t6, err := chains.Open(chains.V6); err == nil {
		return t6.CheckShared(egress.Layout, s.Chain, dispatch, s.Shared(chains.V6))
	} else if hasV6(prev) {
		return err
	}
	return nil
}

// GC removes the chains of this network's containers not in the valid
// list, then any shared chain of rules no container goes to any more.
func GC(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, a := range c.ValidAttachments {
		valid[a.ContainerID] = true
	}
	unlock, err := egress.Layout.TakeLock()
	if err != nil {
		return firewallError(err)
	}
	defer unlock()
	stale := func(comment string) bool {
		network, id, ok := egress.ParseComment(comment)
		return ok && network == c.Name && !valid[id]
	}
	err = chains.Each(chains.Usable(), func(t *chains.Tables) error {
		_, err := t.RemoveStale(egress.Layout, stale)
		return errors.Join(err, t.SweepShared(egress.Layout))
	})
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
	return chains.Status("offline-egress")
}
