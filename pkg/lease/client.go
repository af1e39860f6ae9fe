package lease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// ErrNoOffer is returned when no server answered before the deadline.
var ErrNoOffer = errors.New("no DHCP offer received")

// NakError is returned when the server refused a request with a NAK.
type NakError struct{ Msg string }

func (e *NakError) Error() string {
	if e.Msg != "" {
		return "server refused the request with a NAK: " + e.Msg
	}
	return "server refused the request with a NAK"
}

// requested is the parameter request list every packet carries.
var requested = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionDomainName, dhcpv4.OptionInterfaceMTU, dhcpv4.OptionBroadcastAddress,
	dhcpv4.OptionStaticRoutingTable, dhcpv4.OptionDNSDomainSearchList,
	dhcpv4.OptionClasslessStaticRoute, dhcpv4.GenericOptionCode(249),
	dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
}

// Modifiers are the options a client puts on every packet it sends: hostname
// (also on the first DISCOVER), client identifier, vendor class, the extra
// options of the config and the parameter request list.
func (s Spec) Modifiers() []dhcpv4.Modifier {
	var mods []dhcpv4.Modifier
	if s.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(s.Hostname)))
	}
	if len(s.ClientID) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(s.ClientID)))
	}
	if s.VendorClass != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(s.VendorClass)))
	}
	for code, val := range s.SendOptions {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(code), val))
	}
	prl := append([]dhcpv4.OptionCode(nil), requested...)
	for _, c := range s.RequestOptions {
		prl = append(prl, dhcpv4.GenericOptionCode(c))
	}
	mods = append(mods, dhcpv4.WithRequestedOptions(prl...))
	return mods
}

// Conn is a DHCP client bound to one interface. Open it inside the
// container's netns; it keeps working from any goroutine afterwards.
type Conn struct {
	c   *nclient4.Client
	pc  net.PacketConn
	mac net.HardwareAddr
	raw *aimConn         // OpenRaw's packet socket; nil for OpenBound
	aim net.HardwareAddr // where a DISCOVER goes first (Aim)
}

// Aim makes Acquire send its first DISCOVER to the server at Ethernet
// address mac (one that answered on this LAN before, see ServerMAC), and
// broadcast it only when no offer comes within 100 ms. Its REQUEST goes to
// whoever sent the offer taken. A broadcast reaches every port of the
// bridge at the sender's cost; the server gets the same IP packet either
// way.
func (c *Conn) Aim(mac net.HardwareAddr) { c.aim = mac }

// ServerMAC is the Ethernet address packets from the server at ip came
// from on this connection, nil when none did (a relayed answer, or none).
func (c *Conn) ServerMAC(ip net.IP) net.HardwareAddr {
	if c.raw == nil || ip == nil {
		return nil
	}
	return c.raw.sourceMAC(ip)
}

// Close releases the socket.
func (c *Conn) Close() error { return c.c.Close() }

// OpenRaw opens a client on an interface that may have no address yet
// (for DISCOVER/REQUEST, or a RELEASE from a throw-away link). src, when
// set, is the source address written into the packets.
func OpenRaw(ifname string, mac net.HardwareAddr, src net.IP) (*Conn, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", ifname, err)
	}
	raw, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, nil)
	if err != nil {
		return nil, fmt.Errorf("opening packet socket on %s: %w", ifname, err)
	}
	aimed := newAimConn(raw)
	conn := nclient4.NewBroadcastUDPConn(aimed, &net.UDPAddr{IP: src, Port: nclient4.ClientPort})
	c, err := nclient4.NewWithConn(conn, mac, nclient4.WithTimeout(time.Second), nclient4.WithRetry(1))
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("starting DHCP client on %s: %w", ifname, err)
	}
	return &Conn{c: c, pc: conn, mac: mac, raw: aimed}, nil
}

// OpenBound opens a client on a UDP socket on ifname for unicast renewals,
// broadcast rebinds and releases, sent from the leased address addr (the
// kernel picks it as the source). The socket is bound to 0.0.0.0:68, not to
// addr: servers broadcast their NAKs, and a socket bound to a unicast
// address never receives broadcasts.
func OpenBound(ifname string, mac net.HardwareAddr, addr net.IP) (*Conn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	if !hasAddr(ifname, addr) {
		return nil, fmt.Errorf("%s does not hold %s", ifname, addr)
	}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
	if err != nil {
		return nil, fmt.Errorf("binding port 68 on %s: %w", ifname, err)
	}
	c, err := nclient4.NewWithConn(pc, mac, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(1))
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("starting DHCP client on %s: %w", ifname, err)
	}
	return &Conn{c: c, pc: pc, mac: mac}, nil
}

// attemptTimeout grows the wait for an answer slowly: the first packets go
// out a second apart so a lost DISCOVER costs one second, not ten.
func attemptTimeout(n int) time.Duration {
	d := time.Second << (n / 4)
	if d > 4*time.Second {
		d = 4 * time.Second
	}
	return d
}

// Acquire runs DISCOVER/OFFER/REQUEST/ACK until ctx ends, retransmitting
// quickly. want, when set, is asked for with option 50.
func (c *Conn) Acquire(ctx context.Context, s Spec, want net.IP) (*dhcpv4.DHCPv4, error) {
	mods := s.Modifiers()
	var lastErr error = ErrNoOffer
	for n := 0; ctx.Err() == nil; n++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout(n)*3)
		ack, err := c.acquireOnce(actx, mods, want, attemptTimeout(n))
		cancel()
		if err == nil {
			return ack, nil
		}
		var nak *NakError
		if errors.As(err, &nak) {
			want = nil // the server will not give that address; take what it offers
		}
		lastErr = err
	}
	return nil, lastErr
}

func (c *Conn) acquireOnce(ctx context.Context, mods []dhcpv4.Modifier, want net.IP, wait time.Duration) (*dhcpv4.DHCPv4, error) {
	dmods := append([]dhcpv4.Modifier{}, mods...)
	if want != nil {
		dmods = append(dmods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want)))
	}
	disc, err := dhcpv4.NewDiscovery(c.mac, append(dmods, dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))...)
	if err != nil {
		return nil, fmt.Errorf("building DISCOVER: %w", err)
	}
	// An unusable offer (no server ID, a broadcast address...) is skipped,
	// not taken as the answer: another server, or a later packet, may
	// still send a good one.
	// Only the first attempt aims: a server that did not answer it may be
	// gone, and later attempts broadcast at once.
	aim := c.aim
	c.aim = nil
	offer, err := c.exchange(ctx, disc, aim, wait, nclient4.IsAll(nclient4.IsMessageType(dhcpv4.MessageTypeOffer), usable))
	if err != nil {
		return nil, err
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, append(mods, dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))...)
	if err != nil {
		return nil, fmt.Errorf("building REQUEST: %w", err)
	}
	// NewRequestFromOffer lets our modifiers run last; make sure option 50
	// names the offered address.
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))
	req.UpdateOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier()))
	ack, err := c.exchange(ctx, req, c.ServerMAC(offer.ServerIdentifier()), wait, nclient4.IsAll(
		nclient4.IsCorrectServer(offer.ServerIdentifier()),
		nakOrUsable))
	if err != nil {
		return nil, err
	}
	return checkReply(ack)
}

// usable matches replies whose lease FromACK accepts.
func usable(p *dhcpv4.DHCPv4) bool {
	_, err := FromACK(p)
	return err == nil
}

// nakOrUsable matches a NAK or an ACK with a usable lease.
func nakOrUsable(p *dhcpv4.DHCPv4) bool {
	switch p.MessageType() {
	case dhcpv4.MessageTypeNak:
		return true
	case dhcpv4.MessageTypeAck:
		return usable(p)
	}
	return false
}

func checkReply(ack *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return nil, &NakError{Msg: ack.Message()}
	}
	if _, err := FromACK(ack); err != nil {
		return nil, fmt.Errorf("ignoring ACK: %w", err)
	}
	return ack, nil
}

// exchange sends p and waits up to wait for an answer m accepts. With mac
// set, p first goes to that Ethernet address alone and is broadcast only
// when no answer comes within aimWait.
func (c *Conn) exchange(ctx context.Context, p *dhcpv4.DHCPv4, mac net.HardwareAddr, wait time.Duration, m nclient4.Matcher) (*dhcpv4.DHCPv4, error) {
	if mac != nil && c.raw != nil {
		c.raw.setAim(mac)
		resp, err := c.sendWait(ctx, p, min(aimWait, wait), m)
		c.raw.setAim(nil)
		if !errors.Is(err, ErrNoOffer) {
			return resp, err
		}
	}
	return c.sendWait(ctx, p, wait, m)
}

// sendWait sends p to the broadcast address (or to dst) and waits up to wait
// for a matching answer.
func (c *Conn) sendWait(ctx context.Context, p *dhcpv4.DHCPv4, wait time.Duration, m nclient4.Matcher) (*dhcpv4.DHCPv4, error) {
	return c.sendTo(ctx, &net.UDPAddr{IP: net.IPv4bcast, Port: nclient4.ServerPort}, p, wait, m)
}

func (c *Conn) sendTo(ctx context.Context, dst *net.UDPAddr, p *dhcpv4.DHCPv4, wait time.Duration, m nclient4.Matcher) (*dhcpv4.DHCPv4, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	resp, err := c.c.SendAndRead(wctx, dst, p, m)
	if err != nil {
		if errors.Is(err, nclient4.ErrNoResponse) || errors.Is(err, context.DeadlineExceeded) {
			return nil, ErrNoOffer
		}
		return nil, err
	}
	return resp, nil
}

// Verify asks the LAN's servers whether addr is still the client's, as a
// client does after a reboot (RFC 2131 INIT-REBOOT: a REQUEST broadcast
// with option 50 and neither ciaddr nor a server identifier). It tries
// twice, a second each; a NAK is a *NakError, silence ErrNoOffer.
func (c *Conn) Verify(ctx context.Context, s Spec, addr net.IP) (*dhcpv4.DHCPv4, error) {
	req, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithHwAddr(c.mac),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(addr)),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
	}, s.Modifiers()...)...)
	if err != nil {
		return nil, fmt.Errorf("building REQUEST: %w", err)
	}
	for i := 0; ; i++ {
		aim := c.aim
		c.aim = nil
		ack, err := c.exchange(ctx, req, aim, time.Second, nakOrUsable)
		if errors.Is(err, ErrNoOffer) && i == 0 && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ack, err = checkReply(ack); err != nil {
			return nil, err
		}
		if !ack.YourIPAddr.Equal(addr) {
			return nil, &NakError{Msg: fmt.Sprintf("the server answered with %s, not %s", ack.YourIPAddr, addr)}
		}
		return ack, nil
	}
}

// Extend sends a REQUEST for the held address: unicast to server when
// renewing (server non-nil), broadcast when rebinding. Options 50 and 54 are
// left out and ciaddr is set, as RFC 2131 4.3.2 asks.
func (c *Conn) Extend(ctx context.Context, s Spec, addr, server net.IP) (*dhcpv4.DHCPv4, error) {
	req, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithHwAddr(c.mac),
		dhcpv4.WithClientIP(addr),
		dhcpv4.WithBroadcast(false),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
	}, s.Modifiers()...)...)
	if err != nil {
		return nil, fmt.Errorf("building REQUEST: %w", err)
	}
	dst := &net.UDPAddr{IP: net.IPv4bcast, Port: nclient4.ServerPort}
	if server != nil {
		dst.IP = server
	}
	ack, err := c.sendTo(ctx, dst, req, 2*time.Second, nakOrUsable)
	if err != nil {
		return nil, err
	}
	return checkReply(ack)
}

// Release tells server the address is no longer used: a RELEASE with
// ciaddr set, unicast to the server.
func (c *Conn) Release(s Spec, addr, server net.IP) error {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithHwAddr(c.mac),
		dhcpv4.WithClientIP(addr),
		dhcpv4.WithBroadcast(false),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
	}
	if len(s.ClientID) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(s.ClientID)))
	}
	rel, err := dhcpv4.New(mods...)
	if err != nil {
		return fmt.Errorf("building RELEASE: %w", err)
	}
	if _, err := c.sendRaw(rel, server); err != nil {
		return fmt.Errorf("sending RELEASE to %s: %w", server, err)
	}
	return nil
}

func (c *Conn) sendRaw(p *dhcpv4.DHCPv4, server net.IP) (int, error) {
	return c.pc.WriteTo(p.ToBytes(), &net.UDPAddr{IP: server, Port: nclient4.ServerPort})
}

// hasAddr reports whether ifname holds addr (in the current netns).
func hasAddr(ifname string, addr net.IP) bool {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return false
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(addr) {
			return true
		}
	}
	return false
}
