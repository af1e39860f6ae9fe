package lease

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Offer is one server's answer to a probe DISCOVER.
type Offer struct {
	Server  net.IP        `json:"server"`
	Info    Info          `json:"lease"`
	Elapsed time.Duration `json:"elapsed"`
}

// ProbeConn is an open raw DHCP socket for Probe. Open it inside the netns
// of the probing interface.
type ProbeConn struct {
	pc  net.PacketConn
	mac net.HardwareAddr
}

// OpenProbe opens a probe socket on ifname.
func OpenProbe(ifname string, mac net.HardwareAddr) (*ProbeConn, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", ifname, err)
	}
	raw, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, nil)
	if err != nil {
		return nil, fmt.Errorf("opening packet socket on %s: %w", ifname, err)
	}
	return &ProbeConn{pc: nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{Port: nclient4.ClientPort}), mac: mac}, nil
}

// Close releases the socket.
func (p *ProbeConn) Close() error { return p.pc.Close() }

// Probe broadcasts DISCOVERs (one a second) and collects every OFFER until
// wait has passed: which servers answer, and what they offer. It never
// requests, so no lease is taken.
func (p *ProbeConn) Probe(s Spec, wait time.Duration) ([]Offer, error) {
	disc, err := dhcpv4.NewDiscovery(p.mac, s.Modifiers()...)
	if err != nil {
		return nil, fmt.Errorf("building DISCOVER: %w", err)
	}
	start := time.Now()
	deadline := start.Add(wait)
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: nclient4.ServerPort}
	seen := map[string]bool{}
	var offers []Offer
	buf := make([]byte, nclient4.MaxMessageSize)
	nextSend := start
	for time.Now().Before(deadline) {
		// Once one server answered, give the others half a second.
		if len(offers) > 0 {
			if settle := start.Add(offers[0].Elapsed + 500*time.Millisecond); settle.Before(deadline) {
				deadline = settle
			}
		}
		if !time.Now().Before(nextSend) {
			if _, err := p.pc.WriteTo(disc.ToBytes(), bcast); err != nil {
				return offers, fmt.Errorf("sending DISCOVER: %w", err)
			}
			nextSend = time.Now().Add(time.Second)
		}
		until := nextSend
		if deadline.Before(until) {
			until = deadline
		}
		_ = p.pc.SetReadDeadline(until)
		n, _, err := p.pc.ReadFrom(buf)
		if err != nil {
			continue // timeout: send again or stop
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.TransactionID != disc.TransactionID ||
			m.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		info, err := FromACK(m)
		if err != nil || seen[info.ServerID.String()] {
			continue
		}
		seen[info.ServerID.String()] = true
		offers = append(offers, Offer{Server: info.ServerID, Info: info, Elapsed: time.Since(start)})
	}
	return offers, nil
}

// Offer6 is one server's answer to a probe SOLICIT.
type Offer6 struct {
	ServerDUID string        `json:"serverDUID"`
	Addresses  []net.IP      `json:"addresses"`
	DNS        []net.IP      `json:"dns,omitempty"`
	Elapsed    time.Duration `json:"elapsed"`
}

// Probe sends SOLICITs until an ADVERTISE arrives or wait has passed. It
// never requests, so no lease is taken.
func (c *Conn6) Probe(wait time.Duration) ([]Offer6, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	for ctx.Err() == nil {
		adv, err := c.c.Solicit(ctx)
		if err != nil {
			continue
		}
		o := Offer6{ServerDUID: fmt.Sprint(adv.Options.ServerID()), DNS: adv.Options.DNS(), Elapsed: time.Since(start)}
		for _, ia := range adv.Options.IANA() {
			for _, a := range ia.Options.Addresses() {
				o.Addresses = append(o.Addresses, a.IPv6Addr)
			}
		}
		return []Offer6{o}, nil
	}
	return nil, nil
}
