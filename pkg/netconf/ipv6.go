package netconf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/pkg/lease"
)

// Apply6 puts a DHCPv6 address on ifname as a /128 without DAD (the server
// vouched for it); the on-link prefix and the default route come from the
// router's advertisements.
// Equivalent to: `ip -6 addr replace ADDR/128 dev IF nodad`.
func Apply6(ifname string, info lease.Info6) error {
	link, err := netlinksafe.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("finding %s: %w", ifname, err)
	}
	p := info.Prefix()
	addr := &netlink.Addr{IPNet: &p, Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding address %s to %s: %w", p.String(), ifname, err)
	}
	return nil
}

// Remove6 takes a DHCPv6 address off ifname; an address or link already
// gone is not an error.
func Remove6(ifname string, info lease.Info6) error {
	link, err := netlinksafe.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("finding %s: %w", ifname, err)
	}
	p := info.Prefix()
	if err := netlink.AddrDel(link, &netlink.Addr{IPNet: &p}); err != nil && !gone(err) {
		return fmt.Errorf("removing address %s: %w", p.String(), err)
	}
	return nil
}

// Change6 moves ifname from old's address to new's: the new one first.
func Change6(ifname string, old, new lease.Info6) error {
	if err := Apply6(ifname, new); err != nil {
		return err
	}
	if !old.Address.Equal(new.Address) {
		return Remove6(ifname, old)
	}
	return nil
}

// IPv6Mode says how an interface takes IPv6: Off turns IPv6 off on it (no
// link-local address, nothing sent or accepted); the others take router
// advertisements (for the on-link prefix and the default route), and SLAAC
// only with Autoconf.
type IPv6Mode struct {
	Off      bool
	Autoconf bool
}

// SetIPv6Mode writes ifname's IPv6 sysctls for mode, before the link comes
// up. Off disables IPv6 on ifname alone (lo keeps ::1, so programs that
// listen on [::] still start), as Docker does on IPv4-only networks: the
// container neither answers on the LAN over link-local IPv6 nor sends
// duplicate address detection and MLD reports that the bridge floods to
// every port. With IPv6 on, duplicate address detection is skipped so the
// link-local address is usable at once (the MAC is unique on the bridge),
// addresses are made from the MAC (EUI-64, not stable-privacy), so the
// link-local address is the one the port's guard allows, and router
// solicitations go on (1 s, then up to 4 s apart) until a router answers.
// Equivalent to: `sysctl net.ipv6.conf.IF.disable_ipv6=1` (Off), or
// `sysctl net.ipv6.conf.IF.disable_ipv6=0 accept_ra=1 autoconf=0|1 accept_dad=0 addr_gen_mode=0 router_solicitations=-1 ...`.
func SetIPv6Mode(ifname string, mode IPv6Mode) error {
	for _, kv := range ipv6Sysctls(mode) {
		p := "/proc/sys/net/ipv6/conf/" + ifname + "/" + kv[0]
		if err := os.WriteFile(p, []byte(kv[1]), 0o644); err != nil {
			if mode.Off {
				continue // no IPv6 in the kernel, or a read-only /proc/sys: ADD goes on without
			}
			return fmt.Errorf("setting %s: %w (is IPv6 disabled in the container's namespace?)", p, err)
		}
	}
	return nil
}

// ipv6Sysctls are the per-interface sysctls of mode, in the order they are
// written: disable_ipv6 last, so the others are in place before IPv6 is on.
func ipv6Sysctls(mode IPv6Mode) [][2]string {
	if mode.Off {
		return [][2]string{{"accept_ra", "0"}, {"autoconf", "0"}, {"disable_ipv6", "1"}}
	}
	autoconf := "0"
	if mode.Autoconf {
		autoconf = "1"
	}
	return [][2]string{{"accept_ra", "1"}, {"autoconf", autoconf}, {"accept_dad", "0"}, {"addr_gen_mode", "0"}, {"use_tempaddr", "0"},
		// Solicit until a router answers, every second at first: a
		// router that has just advertised waits before it answers.
		{"router_solicitations", "-1"}, {"router_solicitation_interval", "1"}, {"router_solicitation_max_interval", "4"},
		{"disable_ipv6", "0"}}
}

// RouterInfo is what router advertisements gave an interface.
type RouterInfo struct {
	// SLAAC is an autoconfigured global address (nil if none).
	SLAAC *net.IPNet
	// Gateway is the default router's (link-local) address, nil if none.
	Gateway net.IP
}

// ReadRouterInfo looks at ifname's SLAAC addresses and IPv6 default route.
func ReadRouterInfo(ifname string) (RouterInfo, error) {
	var ri RouterInfo
	link, err := netlinksafe.LinkByName(ifname)
	if err != nil {
		return ri, fmt.Errorf("finding %s: %w", ifname, err)
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return ri, fmt.Errorf("listing addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		// SLAAC addresses are the kernel's, with finite lifetimes and a
		// prefix shorter than /128 (a DHCPv6 address is a permanent /128).
		ones, _ := a.Mask.Size()
		if a.IP.IsGlobalUnicast() && ones < 128 && a.Flags&unix.IFA_F_PERMANENT == 0 &&
			a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			ri.SLAAC = &net.IPNet{IP: a.IP, Mask: a.Mask}
			break
		}
	}
	routes, err := netlinksafe.RouteList(link, netlink.FAMILY_V6)
	if err != nil {
		return ri, fmt.Errorf("listing routes of %s: %w", ifname, err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			ri.Gateway = r.Gw
			break
		}
	}
	return ri, nil
}

// WaitRouterInfo polls ifname until done(info) or wait has passed, and
// returns the last reading.
func WaitRouterInfo(ifname string, wait time.Duration, done func(RouterInfo) bool) (RouterInfo, error) {
	deadline := time.Now().Add(wait)
	for {
		ri, err := ReadRouterInfo(ifname)
		if err != nil || done(ri) || time.Now().After(deadline) {
			return ri, err
		}
		time.Sleep(25 * time.Millisecond)
	}
}
