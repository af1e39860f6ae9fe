package hostbridge

import (
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/bridgeport"
	"github.com/lanwire/lanwire/pkg/netconf"
)

// vethOpts describes the veth pair of one attachment.
type vethOpts struct {
	HostName string // host end, enslaved to Bridge
	ContName string // container end (CNI_IFNAME)
	MAC      net.HardwareAddr
	MTU      int
	Bridge   *netlink.Bridge
	Netns    ns.NetNS
	IPv6     netconf.IPv6Mode // set on the container end before it comes up
}

// vethLinks are the two ends as they were set up.
type vethLinks struct {
	Host    netlink.Link
	Cont    netlink.Link
	Created bool // false when an earlier ADD had already made them
}

// setupVeth creates the pair with the container end already in the netns,
// named and addressed by MAC, and the host end on the bridge and up. When
// the container already has ContName with the expected MAC and our host end
// exists, it returns those (ADD is idempotent).
// Equivalent to: `ip link add HOST mtu M type veth peer IF address MAC netns NS; ip link set HOST master BR up`.
func setupVeth(o vethOpts) (vethLinks, error) {
	var out vethLinks
	existing, err := contLink(o.Netns, o.ContName)
	if err != nil {
		return out, err
	}
	if existing != nil {
		host, herr := netlinksafe.LinkByName(o.HostName)
		if herr == nil && host.Attrs().Group == bridgeport.RetiredGroup {
			herr = fmt.Errorf("%s is retired", o.HostName) // a DEL's, half done
		}
		if herr != nil {
			// Maybe the container's end of a port a DEL retired and the
			// daemon has not deleted yet (an ADD right after a DEL).
			if err := bridgeport.Reap(); err != nil {
				return out, err
			}
			if existing, err = contLink(o.Netns, o.ContName); err != nil {
				return out, err
			}
		}
		if existing != nil {
			if herr != nil || existing.Attrs().HardwareAddr.String() != o.MAC.String() {
				return out, fmt.Errorf("interface %q already exists in the container's netns and was not made by this network: choose another CNI_IFNAME", o.ContName)
			}
			out.Host, out.Cont = host, existing
			return out, nil
		}
	}
	if stale, err := netlinksafe.LinkByName(o.HostName); err == nil {
		// A leftover host end of an earlier attachment whose netns went away.
		_ = netlink.LinkDel(stale)
	}
	la := netlink.NewLinkAttrs()
	la.Name = o.HostName
	la.MTU = o.MTU
	la.HardwareAddr = bridgeport.PortMAC()
	veth := &netlink.Veth{
		LinkAttrs:        la,
		PeerName:         o.ContName,
		PeerHardwareAddr: o.MAC,
		PeerNamespace:    netlink.NsFd(int(o.Netns.Fd())),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return out, fmt.Errorf("creating veth %s for %s: %w", o.HostName, o.ContName, err)
	}
	out.Created = true
	host, err := netlinksafe.LinkByName(o.HostName)
	if err != nil {
		return out, fmt.Errorf("finding new veth %s: %w", o.HostName, err)
	}
	out.Host = host
	// No IPv6 autoconfiguration on a pure bridge port.
	_ = writeSysctl("net/ipv6/conf/"+o.HostName+"/disable_ipv6", "1")
	if err := netlink.LinkSetMaster(host, o.Bridge); err != nil {
		return out, fmt.Errorf("attaching %s to bridge %s: %w", o.HostName, o.Bridge.Name, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return out, fmt.Errorf("setting %s up: %w", o.HostName, err)
	}
	err = o.Netns.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(o.ContName)
		if err != nil {
			return fmt.Errorf("finding %s in the container: %w", o.ContName, err)
		}
		out.Cont = l
		if err := netconf.SetIPv6Mode(o.ContName, o.IPv6); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("setting %s up: %w", o.ContName, err)
		}
		if lo, err := netlinksafe.LinkByName("lo"); err == nil {
			_ = netlink.LinkSetUp(lo)
		}
		return nil
	})
	return out, err
}

// contLink returns the container's link called name, or nil if it has none.
func contLink(netns ns.NetNS, name string) (netlink.Link, error) {
	var link netlink.Link
	err := netns.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil
			}
			return fmt.Errorf("looking up %s in the container: %w", name, err)
		}
		link = l
		return nil
	})
	return link, err
}

// deleteLinks removes the container end (when the netns still exists) and
// the host end; links already gone are not an error.
// Equivalent to: `ip -n NS link del IF; ip link del HOST`.
func deleteLinks(netnsPath, ifname, hostName string) error {
	var errs []error
	if netnsPath != "" {
		err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
			l, err := netlinksafe.LinkByName(ifname)
			if err != nil {
				return nil
			}
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("deleting %s in the container: %w", ifname, err)
			}
			return nil
		})
		var nsErr ns.NSPathNotExistErr
		var notNS ns.NSPathNotNSErr
		if err != nil && !errors.As(err, &nsErr) && !errors.As(err, &notNS) {
			errs = append(errs, err)
		}
	}
	if l, err := netlinksafe.LinkByName(hostName); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				errs = append(errs, fmt.Errorf("deleting %s: %w", hostName, err))
			}
		}
	}
	return errors.Join(errs...)
}
