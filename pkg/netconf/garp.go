package netconf

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// GratuitousARP announces ip on ifname so neighbours update their caches.
// Equivalent to: `arping -U -c 1 -I IF IP`.
func GratuitousARP(ifname string, ip net.IP) error {
	ip4 := ip.To4()
	if ip4 == nil {
		return nil
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("finding %s: %w", ifname, err)
	}
	c, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_ARP, nil)
	if err != nil {
		return fmt.Errorf("opening ARP socket on %s: %w", ifname, err)
	}
	defer c.Close()
	// ARP request, sender and target both ip (RFC 5227 announcement).
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:], ifc.HardwareAddr)
	copy(b[14:], ip4)
	copy(b[24:], ip4)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if _, err := c.WriteTo(b, &packet.Addr{HardwareAddr: bcast}); err != nil {
		return fmt.Errorf("sending gratuitous ARP for %s on %s: %w", ip4, ifname, err)
	}
	return nil
}
