package hostbridge

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/bridgeport"
	"github.com/lanwire/lanwire/pkg/chain"
	"github.com/lanwire/lanwire/pkg/guard"
	"github.com/lanwire/lanwire/pkg/lease"
	"github.com/lanwire/lanwire/pkg/leaseapi"
	"github.com/lanwire/lanwire/pkg/leasestore"
	"github.com/lanwire/lanwire/pkg/netconf"
	"github.com/lanwire/lanwire/pkg/nft"
)

// rollback runs undo steps in reverse unless committed.
type rollback struct{ steps []func() }

func (r *rollback) add(f func()) { r.steps = append(r.steps, f) }
func (r *rollback) commit()      { r.steps = nil }
func (r *rollback) run() {
	for i := len(r.steps) - 1; i >= 0; i-- {
		r.steps[i]()
	}
}

// lookupBridge finds the configured bridge or says how to create it.
func lookupBridge(name string) (*netlink.Bridge, error) {
	br, err := bridgeport.Lookup(name)
	switch {
	case errors.Is(err, bridgeport.ErrNotFound):
		if near := bridgeport.Nearest(name); near != "" {
			return nil, invalid("bridge %q does not exist; did you mean %q? (the bridges here: %s)", name, near, strings.Join(bridgeport.Bridges(), ", "))
		}
		return nil, invalid("bridge %q does not exist: hostbridge-dhcp attaches containers to an existing bridge on your LAN; create one with `ip link add %s type bridge && ip link set %s up` and attach it to the LAN (README: \"A real LAN\")", name, name, name)
	case errors.Is(err, bridgeport.ErrNotBridge):
		return nil, invalid("%v: \"bridge\" must name a Linux bridge (see `ip -d link show %s`)", err, name)
	case err != nil:
		return nil, err
	}
	if !bridgeport.IsUp(br) {
		return nil, invalid("bridge %q is down: bring it up with `ip link set %s up`", name, name)
	}
	// No uplink and no address a DHCP server on this host could answer
	// from: no lease can come, say so at once rather than after leaseTimeout.
	if uplinks, _ := bridgeport.Ports(name); len(uplinks) == 0 && !hasIPv4(br) {
		return nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("bridge %q has no uplink: no port but containers' connects it to a LAN, and it has no address a DHCP server on this host could serve from", name),
			fmt.Sprintf("attach %s to your LAN (README: \"A real LAN\"), then add the container again; `hostbridge-dhcp doctor --bridge %s` checks the rest", name, name))
	}
	return br, nil
}

// hasIPv4 reports whether the bridge has an IPv4 address.
func hasIPv4(br *netlink.Bridge) bool {
	addrs, err := netlinksafe.AddrList(br, netlink.FAMILY_V4)
	return err == nil && len(addrs) > 0
}

// Add attaches the container and returns its DHCP-granted configuration.
func Add(args *skel.CmdArgs) error {
	res, cniVersion, err := Attach(args)
	if err != nil {
		return err
	}
	return types.PrintResult(res, cniVersion)
}

// Attach is Add without the printing: it returns the result and the
// CNI version to write it in (the netavark plugin chains it in-process).
func Attach(args *skel.CmdArgs) (*current.Result, string, error) {
	c, err := Parse(args.StdinData)
	if err != nil {
		return nil, "", err
	}
	spec, err := buildSpec(c, args)
	if err != nil {
		return nil, "", err
	}
	key := keyOf(c, args)
	br, err := lookupBridge(c.Bridge)
	if err != nil {
		return nil, "", err
	}
	if !c.IgnoreConflicts {
		if err := checkConflicts(c); err != nil {
			return nil, "", err
		}
	}
	if err := ensureDaemon(c); err != nil {
		return nil, "", err
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil, "", types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("opening netns %q", args.Netns), err.Error())
	}
	defer netns.Close()
	mtu := c.MTU
	if mtu == 0 {
		mtu = br.Attrs().MTU
	}
	mac, _ := net.ParseMAC(spec.MAC)
	start := time.Now()

	// The FORWARD rule check (iptables processes) runs while the veth is made.
	_, statErr := os.Stat(filepath.Join("/sys/class/net", hostVethName(key)))
	portExisted := statErr == nil // a repeated ADD
	fwd := make(chan error, 1)
	go func() { fwd <- ensureForward(c.Bridge, hostVethName(key), c.DaemonSocket) }()

	undo := &rollback{}
	defer undo.run()
	mode := netconf.IPv6Mode{Off: c.IPv6 == IPv6Off, Autoconf: c.WantsSLAAC()}
	links, err := setupVeth(vethOpts{HostName: hostVethName(key), ContName: args.IfName, MAC: mac, MTU: mtu, Bridge: br, Netns: netns, IPv6: mode})
	if links.Created {
		undo.add(func() { _ = deleteLinks(args.Netns, args.IfName, hostVethName(key)) })
	}
	ferr := <-fwd
	if !portExisted {
		// The port's hold on the rule was taken even if inserting failed.
		undo.add(func() { _ = releaseForward(c.Bridge, hostVethName(key), c.DaemonSocket) })
	}
	if err != nil {
		return nil, "", err
	}
	if ferr != nil {
		return nil, "", ferr
	}
	if err := bridgeport.WaitForwarding(links.Host.Attrs().Name, c.LeaseTimeout.Duration); err != nil {
		return nil, "", types.NewError(types.ErrTryAgainLater, "new port never started forwarding on bridge "+c.Bridge, err.Error())
	}

	resp, err := call(c.DaemonSocket, c.LeaseTimeout.Duration+5*time.Second, leaseapi.Request{
		Method: leaseapi.MethodAcquire, Key: key, Spec: &spec, TimeoutMS: c.LeaseTimeout.Milliseconds(), NewInterface: links.Created,
	})
	if err != nil {
		return nil, "", apiError(c.DaemonSocket, err)
	}
	if links.Created {
		undo.add(func() {
			_, _ = call(c.DaemonSocket, 5*time.Second, leaseapi.Request{Method: leaseapi.MethodRelease, Key: key})
		})
	}
	info := resp.Lease.Info
	contMTU := 0
	if c.UseLeaseMTU && info.MTU > 0 {
		contMTU = info.MTU
	}
	var copied []lease.Route
	if !c.SkipRoutes {
		copied = bridgeRoutes(br)
	}
	var added []lease.Route
	err = netns.Do(func(ns.NetNS) error {
		if err := netconf.Apply(args.IfName, info, c.RouteMetric, contMTU); err != nil {
			return err
		}
		if i6 := resp.Lease.Info6; i6 != nil {
			if err := netconf.Apply6(args.IfName, *i6); err != nil {
				return err
			}
		}
		added = addRoutes(args.IfName, copied, c.RouteMetric)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("configuring %s with lease %s: %w", args.IfName, info.Address.String(), err)
	}
	ri, err := waitRouter(c, netns, args.IfName, start)
	if err != nil {
		return nil, "", err
	}
	result := buildResult(c, args, br, links, info, added, resp.Lease.Info6, ri)
	if err := guardPort(c, args, key, mac, info, result); err != nil {
		return nil, "", err
	}
	undo.commit()
	return result, c.CNIVersion, nil
}

// guardPort registers the container's bridge port with the guard: with
// spoofCheck its frames must carry its own MAC and addresses; the record
// also lets offline-egress and the lease daemon (which moves the addresses
// when a lease moves) find the port. An offline policy the port already
// has (a repeated ADD) is kept: offline-egress, next in the chain, sets it.
func guardPort(c *Config, args *skel.CmdArgs, key lease.Key, mac net.HardwareAddr, info lease.Info, res *current.Result) error {
	p := guard.Port{
		IfName: hostVethName(key), Bridge: c.Bridge, Network: c.Name, ContainerID: args.ContainerID,
		MAC: mac.String(), Spoof: c.Spoof(), HostBridge: true, Daemon: c.DaemonSocket,
	}
	if info.ServerID != nil {
		p.DHCP = []net.IP{info.ServerID}
	}
	for _, ip := range res.IPs {
		p.Addrs = append(p.Addrs, ip.Address.IP)
	}
	if old, err := guard.Load(p.IfName); err == nil && old != nil && old.Network == p.Network && old.ContainerID == p.ContainerID {
		p.Offline = old.Offline
	}
	if err := guard.Apply(p); err != nil {
		return nft.CNIError("guarding the container's bridge port", err)
	}
	return nil
}

// bridgeRoutes lists the host's non-default static routes through the bridge.
func bridgeRoutes(br *netlink.Bridge) []lease.Route {
	rs, err := netlinksafe.RouteList(br, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	var out []lease.Route
	for _, r := range rs {
		if r.Dst == nil || r.Protocol == netlink.RouteProtocol(2) /* kernel: the subnet route */ {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			continue
		}
		out = append(out, lease.Route{Dst: *r.Dst, GW: r.Gw})
	}
	return out
}

// addRoutes installs copied bridge routes in the container; a route whose
// gateway is not reachable from the container is skipped.
func addRoutes(ifname string, rs []lease.Route, metric int) []lease.Route {
	link, err := netlinksafe.LinkByName(ifname)
	if err != nil {
		return nil
	}
	var added []lease.Route
	for _, r := range rs {
		dst := r.Dst
		nr := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &dst, Gw: r.GW, Priority: metric}
		if r.GW == nil {
			nr.Scope = netlink.SCOPE_LINK
		}
		if netlink.RouteReplace(nr) == nil {
			added = append(added, r)
		}
	}
	return added
}

// buildResult reports the attachment: the interfaces, the DHCPv4 lease with
// its routes and DNS, the copied bridge routes (extra), and what IPv6 gave
// the container: the DHCPv6 address (i6, when taken) and DNS, the SLAAC
// address and the router's default route (ri).
func buildResult(c *Config, args *skel.CmdArgs, br *netlink.Bridge, links vethLinks, info lease.Info, extra []lease.Route, i6 *lease.Info6, ri netconf.RouterInfo) *current.Result {
	contIdx := 2
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: br.Attrs().Name, Mac: br.Attrs().HardwareAddr.String()},
			{Name: links.Host.Attrs().Name, Mac: links.Host.Attrs().HardwareAddr.String()},
			{Name: args.IfName, Mac: links.Cont.Attrs().HardwareAddr.String(), Sandbox: args.Netns},
		},
		IPs: []*current.IPConfig{{
			Interface: &contIdx,
			Address:   net.IPNet{IP: info.Address.IP, Mask: info.Address.Mask},
			Gateway:   info.Gateway,
		}},
		DNS: types.DNS{Domain: info.Domain, Search: info.Search},
	}
	for _, d := range info.DNS {
		res.DNS.Nameservers = append(res.DNS.Nameservers, d.String())
	}
	for _, r := range append(append([]lease.Route{}, info.Routes...), extra...) {
		rt := &types.Route{Dst: r.Dst, GW: r.GW}
		if c.RouteMetric > 0 {
			m := c.RouteMetric
			rt.Priority = m
		}
		res.Routes = append(res.Routes, rt)
	}
	if i6 != nil {
		res.IPs = append(res.IPs, &current.IPConfig{Interface: &contIdx, Address: i6.Prefix(), Gateway: ri.Gateway})
		for _, d := range i6.DNS {
			res.DNS.Nameservers = append(res.DNS.Nameservers, d.String())
		}
		res.DNS.Search = append(res.DNS.Search, i6.Search...)
	}
	if ri.SLAAC != nil {
		res.IPs = append(res.IPs, &current.IPConfig{Interface: &contIdx, Address: *ri.SLAAC, Gateway: ri.Gateway})
	}
	if ri.Gateway != nil {
		res.Routes = append(res.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: ri.Gateway})
	}
	return res
}

// Del releases the lease and removes the veth. It succeeds when the daemon is
// down (the release is queued for it), the netns is gone or nothing is known.
func Del(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	key := keyOf(c, args)
	var errs []error
	_, err = call(c.DaemonSocket, 10*time.Second, leaseapi.Request{Method: leaseapi.MethodRelease, Key: key})
	daemonUp := err == nil || !errors.Is(err, leaseapi.ErrUnreachable)
	switch {
	case err == nil:
	case !errors.Is(err, leaseapi.ErrUnreachable):
		// The daemon answered but could not release: say so (after the
		// links are gone) rather than queue a second release.
		errs = append(errs, fmt.Errorf("the lease daemon could not release %s: %w", key, err))
	case impossibleSocket(c.DaemonSocket):
		// No daemon can have listened there: ADD obtained no lease
		// through it, and there is nothing to release.
	default:
		cargs, _ := parseArgs(args.Args)
		mac, merr := macFor(c, args, cargs)
		p := leasestore.Pending{Key: key, Bridge: c.Bridge, Queued: time.Now()}
		if merr == nil {
			p.MAC = mac.String()
		}
		if qerr := leasestore.QueueRelease(leasestore.PendingDir(c.DaemonSocket), p); qerr != nil {
			errs = append(errs, fmt.Errorf("queueing the release for the lease daemon, which did not answer at %s (%v): %w", c.DaemonSocket, err, qerr))
		}
	}
	// With the daemon there to delete it, the port is only retired (down,
	// off the bridge, renamed: ~1 ms) and the kernel's ~20 ms deletion is
	// the daemon's, after DEL answered.
	retired := false
	if daemonUp {
		var rerr error
		if retired, rerr = bridgeport.Retire(hostVethName(key)); rerr != nil {
			// Half retired (not renamed) or not at all: delete it now.
			if retired {
				_ = bridgeport.Reap()
			}
			retired = false
		}
	}
	if !retired {
		if err := deleteLinks(args.Netns, args.IfName, hostVethName(key)); err != nil {
			errs = append(errs, err)
		}
	}
	// The port's guard goes after the port: never a moment unguarded.
	if err := guard.Remove(hostVethName(key)); err != nil {
		errs = append(errs, fmt.Errorf("removing the port's firewall entries: %w", err))
	}
	if err := releaseForward(c.Bridge, hostVethName(key), c.DaemonSocket); err != nil {
		errs = append(errs, fmt.Errorf("removing the FORWARD rule of bridge %s: %w", c.Bridge, err))
	}
	if retired {
		if _, err := call(c.DaemonSocket, 2*time.Second, leaseapi.Request{Method: leaseapi.MethodReap}); err != nil {
			// An older daemon, or one that just went away: delete it now.
			if err := bridgeport.Reap(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return types.NewError(types.ErrInternal, "removing the attachment of "+key.String(), errors.Join(errs...).Error())
	}
	return nil
}

// Check compares the held lease and the container's interface with
// prevResult. It never acquires anything.
func Check(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := chain.PrevResult(&c.PluginConf)
	if err != nil {
		return invalid("parsing prevResult: %v", err)
	}
	if prev == nil {
		return invalid("CHECK needs a prevResult")
	}
	key := keyOf(c, args)
	var want *current.IPConfig
	var mine []*current.IPConfig // every prevResult address on our interface
	for _, ip := range prev.IPs {
		if ip.Interface != nil && *ip.Interface < len(prev.Interfaces) && prev.Interfaces[*ip.Interface].Name == args.IfName {
			mine = append(mine, ip)
			if ip.Address.IP.To4() != nil {
				want = ip
			}
		}
	}
	if want == nil {
		return invalid("prevResult has no IPv4 address for %s", args.IfName)
	}
	resp, err := call(c.DaemonSocket, 5*time.Second, leaseapi.Request{Method: leaseapi.MethodCheck, Key: key})
	if err != nil {
		return apiError(c.DaemonSocket, err)
	}
	if resp.Lease == nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("the lease daemon holds no lease for %s", key), "the container must be re-added")
	}
	l := resp.Lease
	if l.Phase == lease.Expired {
		return types.NewError(types.ErrInternal, fmt.Sprintf("lease of %s on %s expired at %s; the daemon keeps asking the DHCP server", l.Info.Address.IP, args.IfName, l.Expiry.Format(time.RFC3339)), "")
	}
	if !l.Info.Address.IP.Equal(want.Address.IP) {
		return types.NewError(types.ErrInternal, fmt.Sprintf("lease address is now %s, prevResult says %s", l.Info.Address.IP, want.Address.IP), "")
	}
	if c.WantsDHCPv6() {
		if l.Info6 == nil {
			return types.NewError(types.ErrInternal, fmt.Sprintf("the lease daemon holds no DHCPv6 lease for %s", key), "the container must be re-added")
		}
		if l.Phase6 == lease.Expired {
			return types.NewError(types.ErrInternal, fmt.Sprintf("DHCPv6 lease of %s on %s expired; the daemon keeps asking the DHCPv6 server", l.Info6.Address, args.IfName), "")
		}
		found := false
		for _, ip := range mine {
			found = found || ip.Address.IP.Equal(l.Info6.Address)
		}
		if !found {
			return types.NewError(types.ErrInternal, fmt.Sprintf("DHCPv6 lease address is now %s, not in prevResult", l.Info6.Address), "")
		}
	}
	var contMAC string
	for _, ifc := range prev.Interfaces {
		if ifc.Name == args.IfName && ifc.Sandbox != "" {
			contMAC = ifc.Mac
		}
	}
	return ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("interface %s is missing from the container: %w", args.IfName, err)
		}
		if contMAC != "" && link.Attrs().HardwareAddr.String() != contMAC {
			return fmt.Errorf("interface %s has MAC %s, prevResult says %s", args.IfName, link.Attrs().HardwareAddr, contMAC)
		}
		for _, ip := range append([]*current.IPConfig{{Address: l.Info.Address}}, mine...) {
			ok, err := netconf.HasAddress(args.IfName, ip.Address)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("interface %s lost its address %s", args.IfName, ip.Address.String())
			}
		}
		routes, err := netlinksafe.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("listing routes of %s: %w", args.IfName, err)
		}
		routes6, err := netlinksafe.RouteList(link, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("listing routes of %s: %w", args.IfName, err)
		}
		for _, want := range prev.Routes {
			rs := routes
			if want.Dst.IP.To4() == nil {
				rs = routes6
			}
			if !haveRoute(rs, want) {
				return fmt.Errorf("route %s via %v is missing from %s", want.Dst.String(), want.GW, args.IfName)
			}
		}
		return nil
	})
}

func haveRoute(rs []netlink.Route, want *types.Route) bool {
	ones, _ := want.Dst.Mask.Size()
	for _, r := range rs {
		if r.Dst == nil {
			if ones == 0 && (want.GW == nil || want.GW.Equal(r.Gw)) {
				return true
			}
			continue
		}
		if r.Dst.String() == want.Dst.String() && (want.GW == nil || want.GW.Equal(r.Gw)) {
			return true
		}
	}
	return false
}

// Status reports whether the daemon answers and the bridge is up.
func Status(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := call(c.DaemonSocket, 3*time.Second, leaseapi.Request{Method: leaseapi.MethodStatus}); err != nil {
		return types.NewError(50, fmt.Sprintf("lease daemon not reachable at %s: start it with `hostbridge-dhcp daemon --socket %s` or `systemctl start hostbridge-dhcp.socket`", c.DaemonSocket, c.DaemonSocket), err.Error())
	}
	if _, err := lookupBridge(c.Bridge); err != nil {
		var te *types.Error
		if errors.As(err, &te) {
			return types.NewError(50, te.Msg, "")
		}
		return types.NewError(50, err.Error(), "")
	}
	return nil
}

// GC releases every lease of this network not in cni.dev/valid-attachments.
func GC(args *skel.CmdArgs) error {
	c, err := Parse(args.StdinData)
	if err != nil {
		return err
	}
	valid := make([]leaseapi.Attachment, 0, len(c.ValidAttachments))
	for _, a := range c.ValidAttachments {
		valid = append(valid, leaseapi.Attachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	if _, err := call(c.DaemonSocket, 30*time.Second, leaseapi.Request{Method: leaseapi.MethodGC, Network: c.Name, Valid: valid}); err != nil {
		return apiError(c.DaemonSocket, err)
	}
	ids := map[string]bool{}
	for _, a := range c.ValidAttachments {
		ids[a.ContainerID] = true
	}
	if err := guard.GC(c.Name, func(id string) bool { return ids[id] }, true); err != nil {
		return nft.CNIError("removing the firewall entries of stale containers", err)
	}
	return nil
}

// waitRouter waits, within leaseTimeout, for what router advertisements
// give the container: the default router (its IPv6 route, which a DHCPv6
// lease does not carry), and with SLAAC an autoconfigured address. When
// none comes ADD fails (error 11): a result would otherwise describe IPv6
// the container cannot use. IPv6 off waits for nothing.
func waitRouter(c *Config, netns ns.NetNS, ifname string, start time.Time) (netconf.RouterInfo, error) {
	var ri netconf.RouterInfo
	if c.IPv6 == IPv6Off {
		return ri, nil
	}
	done := func(ri netconf.RouterInfo) bool { return ri.Gateway != nil }
	if c.WantsSLAAC() {
		done = func(ri netconf.RouterInfo) bool { return ri.SLAAC != nil && ri.Gateway != nil }
	}
	wait := c.LeaseTimeout.Duration - time.Since(start)
	err := netns.Do(func(ns.NetNS) error {
		var err error
		ri, err = netconf.WaitRouterInfo(ifname, wait, done)
		return err
	})
	if err != nil {
		return ri, fmt.Errorf("reading IPv6 router information of %s: %w", ifname, err)
	}
	if done(ri) {
		return ri, nil
	}
	what := fmt.Sprintf("no IPv6 router on %s within %s", ifname, c.LeaseTimeout.Duration)
	if c.WantsSLAAC() && ri.Gateway != nil {
		what = fmt.Sprintf("no SLAAC address on %s within %s", ifname, c.LeaseTimeout.Duration)
	}
	return ri, types.NewError(types.ErrTryAgainLater, what,
		fmt.Sprintf("no router advertisement reached the container through bridge %s (a DHCPv6 lease gives an address, never a route): check that the LAN's router sends them (dnsmasq: --enable-ra; with \"slaac\", an autonomous prefix), that with net.bridge.bridge-nf-call-ip6tables=1 the FORWARD chain accepts the bridge's traffic, or use \"ipv6\": \"off\"", c.Bridge))
}
