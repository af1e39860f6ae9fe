package lease

import (
	"net"
	"sync"
	"time"

	"github.com/mdlayher/packet"
)

// aimWait is how long a DISCOVER or REQUEST sent to one server's Ethernet
// address waits for an answer before it is broadcast after all.
const aimWait = 100 * time.Millisecond

// maxSources bounds how many answering IPv4 sources a connection remembers,
// so a flood of replies from many addresses cannot grow it.
const maxSources = 8

// aimConn is the packet socket under a Conn. A broadcast frame goes to
// every port of the bridge, and the sender pays for the copies: with 500
// containers on a bridge each DISCOVER took 1.6 ms to send. While aim is
// set, frames go to that one Ethernet address instead (the IP destination
// stays 255.255.255.255, so the server sees the same packet). It also
// remembers the Ethernet address each IPv4 source answered from.
type aimConn struct {
	net.PacketConn // a *packet.Conn in datagram mode: reads start at the IP header

	mu   sync.Mutex
	aim  net.HardwareAddr
	from map[string]net.HardwareAddr
}

func newAimConn(pc net.PacketConn) *aimConn {
	return &aimConn{PacketConn: pc, from: map[string]net.HardwareAddr{}}
}

// setAim sends later frames to mac, or broadcasts them again when nil.
func (c *aimConn) setAim(mac net.HardwareAddr) {
	c.mu.Lock()
	c.aim = mac
	c.mu.Unlock()
}

// sourceMAC is the Ethernet address that packets from ip came from.
func (c *aimConn) sourceMAC(ip net.IP) net.HardwareAddr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.from[ip.To4().String()]
}

// WriteTo sends b to the aimed-at address when one is set.
func (c *aimConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	aim := c.aim
	c.mu.Unlock()
	if aim != nil {
		addr = &packet.Addr{HardwareAddr: aim}
	}
	return c.PacketConn.WriteTo(b, addr)
}

// ReadFrom reads a packet and notes its IPv4 and Ethernet sources.
func (c *aimConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if err == nil && n >= 20 && b[0]>>4 == 4 {
		if pa, ok := addr.(*packet.Addr); ok && pa.HardwareAddr != nil {
			src := net.IP(b[12:16]).String()
			c.mu.Lock()
			if _, ok := c.from[src]; ok || len(c.from) < maxSources {
				c.from[src] = append(net.HardwareAddr(nil), pa.HardwareAddr...)
			}
			c.mu.Unlock()
		}
	}
	return n, addr, err
}
