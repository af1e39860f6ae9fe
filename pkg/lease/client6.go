package lease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Conn6 is a DHCPv6 client on one interface's link-local address. Open it
// inside the container's netns; it keeps working from any goroutine.
type Conn6 struct {
	c   *nclient6.Client
	dst *net.UDPAddr
}

// Close releases the socket.
func (c *Conn6) Close() error { return c.c.Close() }

// linkLocal waits up to wait for ifname's link-local address to be usable
// (not tentative) and returns it with the interface index.
func linkLocal(ifname string, wait time.Duration) (net.IP, int, error) {
	deadline := time.Now().Add(wait)
	for {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return nil, 0, fmt.Errorf("looking up %s: %w", ifname, err)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return nil, 0, fmt.Errorf("listing addresses of %s: %w", ifname, err)
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
				return a.IP, link.Attrs().Index, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("%s has no usable IPv6 link-local address after %s (is IPv6 disabled in the container?)", ifname, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// OpenConn6 opens a DHCPv6 client socket ([link-local]:546) on ifname,
// waiting up to wait for the link-local address to be usable.
func OpenConn6(ifname string, mac net.HardwareAddr, wait time.Duration) (*Conn6, error) {
	ll, idx, err := linkLocal(ifname, wait)
	if err != nil {
		return nil, err
	}
	// The zone as a number: a name would be looked up among the host's
	// interfaces, not this namespace's.
	zone := strconv.Itoa(idx)
	pc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: ll, Port: dhcpv6.DefaultClientPort, Zone: zone})
	if err != nil {
		return nil, fmt.Errorf("binding [%s]:546 on %s: %w", ll, ifname, err)
	}
	dst := &net.UDPAddr{IP: dhcpv6.AllDHCPRelayAgentsAndServers, Port: dhcpv6.DefaultServerPort, Zone: zone}
	c, err := nclient6.NewWithConn(pc, mac, nclient6.WithTimeout(time.Second), nclient6.WithRetry(1), nclient6.WithBroadcastAddr(dst))
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("starting DHCPv6 client on %s: %w", ifname, err)
	}
	return &Conn6{c: c, dst: dst}, nil
}

// modifiers6 are the options every message of ours carries: DUID-LL, the
// IA_NA's IAID, the DNS options asked for, and the FQDN when named.
func (s Spec) modifiers6() ([]dhcpv6.Modifier, error) {
	duid, err := s.DUID()
	if err != nil {
		return nil, err
	}
	mods := []dhcpv6.Modifier{
		dhcpv6.WithClientID(duid),
		dhcpv6.WithIAID(s.IAID()),
		dhcpv6.WithRequestedOptions(dhcpv6.OptionDNSRecursiveNameServer, dhcpv6.OptionDomainSearchList),
	}
	if s.Hostname != "" {
		mods = append(mods, dhcpv6.WithFQDN(0, s.Hostname))
	}
	return mods, nil
}

// Acquire6 runs SOLICIT/ADVERTISE/REQUEST/REPLY until ctx ends,
// retransmitting quickly. want, when set, is asked for in the IA_NA.
// Advertisements without a usable address are skipped.
func (c *Conn6) Acquire6(ctx context.Context, s Spec, want net.IP) (*dhcpv6.Message, error) {
	mods, err := s.modifiers6()
	if err != nil {
		return nil, err
	}
	iaid := s.IAID()
	usable := func(m *dhcpv6.Message) bool {
		_, err := FromReply(m, iaid)
		return err == nil
	}
	var lastErr error = ErrNoOffer
	for n := 0; ctx.Err() == nil; n++ {
		wait := attemptTimeout(n)
		smods := mods
		if want != nil {
			smods = append(append([]dhcpv6.Modifier{}, mods...), dhcpv6.WithIANA(dhcpv6.OptIAAddress{IPv6Addr: want}))
		}
		sol, err := dhcpv6.NewSolicit(c.c.InterfaceAddr(), smods...)
		if err != nil {
			return nil, fmt.Errorf("building SOLICIT: %w", err)
		}
		adv, err := c.send(ctx, sol, wait, func(m *dhcpv6.Message) bool {
			return m.MessageType == dhcpv6.MessageTypeAdvertise && usable(m)
		})
		if err != nil {
			lastErr = err
			continue
		}
		req, err := dhcpv6.NewRequestFromAdvertise(adv, mods...)
		if err != nil {
			lastErr = fmt.Errorf("building REQUEST: %w", err)
			continue
		}
		reply, err := c.send(ctx, req, wait, func(m *dhcpv6.Message) bool { return m.MessageType == dhcpv6.MessageTypeReply })
		if err != nil {
			lastErr = err
			continue
		}
		if _, err := FromReply(reply, iaid); err != nil {
			lastErr = fmt.Errorf("ignoring REPLY: %w", err)
			want = nil
			continue
		}
		return reply, nil
	}
	return nil, lastErr
}

func (c *Conn6) send(ctx context.Context, m *dhcpv6.Message, wait time.Duration, match nclient6.Matcher) (*dhcpv6.Message, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	resp, err := c.c.SendAndRead(wctx, c.dst, m, match)
	if err != nil {
		if errors.Is(err, nclient6.ErrNoResponse) || errors.Is(err, context.DeadlineExceeded) {
			return nil, ErrNoOffer
		}
		return nil, err
	}
	return resp, nil
}

// message6 builds a RENEW, REBIND or RELEASE for info's address; RENEW and
// RELEASE name the server.
func (s Spec) message6(t dhcpv6.MessageType, info Info6) (*dhcpv6.Message, error) {
	mods, err := s.modifiers6()
	if err != nil {
		return nil, err
	}
	m, err := dhcpv6.NewMessage(append(mods, dhcpv6.WithIANA(dhcpv6.OptIAAddress{IPv6Addr: info.Address}))...)
	if err != nil {
		return nil, err
	}
	m.MessageType = t
	m.AddOption(dhcpv6.OptElapsedTime(0))
	if t != dhcpv6.MessageTypeRebind {
		sid, err := dhcpv6.DUIDFromBytes(info.ServerID)
		if err != nil {
			return nil, fmt.Errorf("stored server DUID: %w", err)
		}
		m.AddOption(dhcpv6.OptServerID(sid))
	}
	return m, nil
}

// Extend6 sends a RENEW (rebind false) or REBIND for info's address and
// returns the server's REPLY, checked; a NoBinding status comes back as a
// *NoBindingError.
func (c *Conn6) Extend6(ctx context.Context, s Spec, info Info6, rebind bool) (*dhcpv6.Message, error) {
	t := dhcpv6.MessageTypeRenew
	if rebind {
		t = dhcpv6.MessageTypeRebind
	}
	m, err := s.message6(t, info)
	if err != nil {
		return nil, err
	}
	reply, err := c.send(ctx, m, 2*time.Second, func(m *dhcpv6.Message) bool { return m.MessageType == dhcpv6.MessageTypeReply })
	if err != nil {
		return nil, err
	}
	if _, err := FromReply(reply, s.IAID()); err != nil {
		return nil, err
	}
	return reply, nil
}

// Release6 sends a RELEASE for info's address and waits up to a second for
// the server's REPLY (a lost one is not retried).
func (c *Conn6) Release6(s Spec, info Info6) error {
	m, err := s.message6(dhcpv6.MessageTypeRelease, info)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.send(ctx, m, time.Second, func(m *dhcpv6.Message) bool { return m.MessageType == dhcpv6.MessageTypeReply })
	if errors.Is(err, ErrNoOffer) {
		return nil // sent; the server did not confirm
	}
	return err
}
