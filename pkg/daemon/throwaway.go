package daemon

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/bridgeport"
	"github.com/lanwire/lanwire/pkg/lease"
	"github.com/lanwire/lanwire/pkg/leasestore"
)

// releaseViaBridge sends a lease's RELEASE (v4 and/or DHCPv6) when its
// container interface no longer exists: a throw-away veth pair on the
// lease's bridge, carrying the lease's MAC (and so its DUID-LL and
// link-local address), sends them, then is deleted.
// Equivalent to: `ip link add lwrX type veth peer lwqX address MAC; ip link set lwrX master BR`.
func releaseViaBridge(rec leasestore.Record, v4, v6 bool) error {
	br, err := bridgeport.Lookup(rec.Spec.Bridge)
	if err != nil {
		return err
	}
	mac, err := rec.Spec.HardwareAddr()
	if err != nil {
		return err
	}
	id := rec.Key.ID()
	host, peer := "lwr"+id[:10], "lwq"+id[:10]
	la := netlink.NewLinkAttrs()
	la.Name = host
	la.MasterIndex = br.Attrs().Index
	la.HardwareAddr = bridgeport.PortMAC()
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peer, PeerHardwareAddr: mac}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating throw-away port %s on %s: %w", host, rec.Spec.Bridge, err)
	}
	defer netlink.LinkDel(veth)
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+host+"/disable_ipv6", []byte("1"), 0o644)
	if v6 && rec.Info6 != nil {
		for k, v := range map[string]string{"accept_ra": "0", "autoconf": "0", "accept_dad": "0"} {
			_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+peer+"/"+k, []byte(v), 0o644)
		}
	} else {
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+peer+"/disable_ipv6", []byte("1"), 0o644)
	}
	for _, name := range []string{peer, host} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("finding %s: %w", name, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("setting %s up: %w", name, err)
		}
	}
	if err := bridgeport.WaitForwarding(host, 5*time.Second); err != nil {
		return err
	}
	var errs []error
	if v4 {
		conn, err := lease.OpenRaw(peer, mac, rec.Info.Address.IP)
		if err == nil {
			err = conn.Release(rec.Spec, rec.Info.Address.IP, rec.Info.ServerID)
			conn.Close()
		}
		errs = append(errs, err)
	}
	if v6 && rec.Info6 != nil {
		conn, err := lease.OpenConn6(peer, mac, 2*time.Second)
		if err == nil {
			err = conn.Release6(rec.Spec, *rec.Info6)
			conn.Close()
		}
		errs = append(errs, err)
	}
	time.Sleep(100 * time.Millisecond) // let the frames leave before the port goes
	return errors.Join(errs...)
}
