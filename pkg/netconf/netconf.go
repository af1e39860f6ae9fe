// Package netconf puts a DHCP lease on an interface and takes it off again:
// address, routes and gratuitous ARP, inside the current network namespace.
// Callers enter the container's namespace first (ns.WithNetNSPath).
package netconf

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/lease"
)

// Apply configures ifname with info: the address (kept if already there),
// the lease's routes with metric, and the MTU when mtu > 0.
// Equivalent to: `ip addr replace ADDR dev IF; ip route replace ... dev IF metric M`.
func Apply(ifname string, info lease.Info, metric, mtu int) error {
	link, err := netlinksafe.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("finding %s: %w", ifname, err)
	}
	if mtu > 0 && link.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("setting MTU %d on %s: %w", mtu, ifname, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("setting %s up: %w", ifname, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: info.Address.IP, Mask: info.Address.Mask}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding address %s to %s: %w", info.Address.String(), ifname, err)
	}
	for _, r := range info.Routes {
		if err := netlink.RouteReplace(route(link, info, r, metric)); err != nil {
			return fmt.Errorf("adding route %s via %v on %s: %w", r.Dst.String(), r.GW, ifname, err)
		}
	}
	return nil
}

func route(link netlink.Link, info lease.Info, r lease.Route, metric int) *netlink.Route {
	return routeFor(link.Attrs().Index, info, r, metric)
}

// routeFor is the kernel route of a lease's route on the link with index
// idx: on-link (scope link) without a gateway, and marked onlink when the
// gateway is outside the lease's subnet (as option 121 may give).
func routeFor(idx int, info lease.Info, r lease.Route, metric int) *netlink.Route {
	dst := r.Dst
	nr := &netlink.Route{LinkIndex: idx, Dst: &dst, Priority: metric}
	if r.GW == nil {
		nr.Scope = netlink.SCOPE_LINK
		return nr
	}
	nr.Gw = r.GW
	subnet := net.IPNet{IP: info.Address.IP.Mask(info.Address.Mask), Mask: info.Address.Mask}
	if !subnet.Contains(r.GW) {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

// Remove takes info's routes and address off ifname; what is already gone is
// not an error. Equivalent to: `ip route del ...; ip addr del ADDR dev IF`.
func Remove(ifname string, info lease.Info, metric int) error {
	link, err := netlinksafe.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("finding %s: %w", ifname, err)
	}
	var errs []error
	for _, r := range info.Routes {
		if err := netlink.RouteDel(route(link, info, r, metric)); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("removing route %s: %w", r.Dst.String(), err))
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: info.Address.IP, Mask: info.Address.Mask}}
	if err := netlink.AddrDel(link, addr); err != nil && !gone(err) {
		errs = append(errs, fmt.Errorf("removing address %s: %w", info.Address.String(), err))
	}
	return errors.Join(errs...)
}

// Change moves ifname from old to new: the new address first, then the old
// one and its stale routes removed, the new routes restored and a
// gratuitous ARP sent for the new address.
func Change(ifname string, old, new lease.Info, metric, mtu int) error {
	if err := Apply(ifname, new, metric, mtu); err != nil {
		return err
	}
	if !old.Address.IP.Equal(new.Address.IP) || old.Address.Mask.String() != new.Address.Mask.String() {
		stale := old
		stale.Routes = staleRoutes(old.Routes, new.Routes)
		if err := Remove(ifname, stale, metric); err != nil {
			return err
		}
		// Removing the old address may take routes with it: restore them.
		if err := Apply(ifname, new, metric, mtu); err != nil {
			return err
		}
	} else {
		for _, r := range staleRoutes(old.Routes, new.Routes) {
			if link, err := netlinksafe.LinkByName(ifname); err == nil {
				_ = netlink.RouteDel(route(link, old, r, metric))
			}
		}
	}
	return GratuitousARP(ifname, new.Address.IP)
}

// staleRoutes are the routes of old that new does not have.
func staleRoutes(old, new []lease.Route) []lease.Route {
	var out []lease.Route
	for _, r := range old {
		if !hasRoute(new, r) {
			out = append(out, r)
		}
	}
	return out
}

func hasRoute(rs []lease.Route, r lease.Route) bool {
	for _, x := range rs {
		if x.Dst.String() == r.Dst.String() && x.GW.Equal(r.GW) {
			return true
		}
	}
	return false
}

// HasAddress reports whether ifname holds addr.
func HasAddress(ifname string, addr net.IPNet) (bool, error) {
	link, err := netlinksafe.LinkByName(ifname)
	if err != nil {
		return false, fmt.Errorf("finding %s: %w", ifname, err)
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return false, fmt.Errorf("listing addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(addr.IP) && a.Mask.String() == addr.Mask.String() {
			return true, nil
		}
	}
	return false, nil
}

func gone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
}
