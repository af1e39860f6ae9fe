package integration

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Frames built byte by byte, as a hostile container with CAP_NET_RAW sends
// them from an AF_PACKET socket.

func ether(dst, src net.HardwareAddr, etype uint16, payload []byte) []byte {
	f := append(append(append([]byte{}, dst...), src...), byte(etype>>8), byte(etype))
	return append(f, payload...)
}

// tagged inserts a VLAN tag (tpid 0x8100 or 0x88a8) after the addresses.
func tagged(frame []byte, tpid, vid uint16) []byte {
	tag := []byte{byte(tpid >> 8), byte(tpid), byte(vid >> 8), byte(vid)}
	return append(append(append([]byte{}, frame[:12]...), tag...), frame[12:]...)
}

func ipv4(src, dst net.IP, proto byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	copy(h[12:], src.To4())
	copy(h[16:], dst.To4())
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	return append(h, payload...)
}

// udp is a UDP datagram without checksum (allowed over IPv4).
func udp(sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8)
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return append(u, payload...)
}

func ipv6(src, dst net.IP, nh, hl byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6], h[7] = nh, hl
	copy(h[8:], src.To16())
	copy(h[24:], dst.To16())
	return append(h, payload...)
}

// sum6 is the checksum of an upper-layer message over IPv6's pseudo-header.
func sum6(src, dst net.IP, nh byte, msg []byte) uint16 {
	ph := append(append([]byte{}, src.To16()...), dst.To16()...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(msg)))
	ph = append(ph, 0, 0, 0, nh)
	b := append(ph, msg...)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	return checksum(b)
}

func udp6(src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	u := udp(sport, dport, payload)
	binary.BigEndian.PutUint16(u[6:], sum6(src, dst, 17, u))
	return ipv6(src, dst, 17, 64, u)
}

// icmp6 is an ICMPv6 message (body after type, code and checksum).
func icmp6(src, dst net.IP, hl, typ byte, body []byte) []byte {
	m := append([]byte{typ, 0, 0, 0}, body...)
	binary.BigEndian.PutUint16(m[2:], sum6(src, dst, 58, m))
	return ipv6(src, dst, 58, hl, m)
}

func arpFrame(op uint16, sha net.HardwareAddr, spa net.IP, tha net.HardwareAddr, tpa net.IP) []byte {
	a := []byte{0, 1, 8, 0, 6, 4, byte(op >> 8), byte(op)}
	a = append(append(a, sha...), spa.To4()...)
	return append(append(a, tha...), tpa.To4()...)
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// multicastMAC is the Ethernet address of an IPv6 multicast group.
func multicastMAC(group net.IP) net.HardwareAddr {
	g := group.To16()
	return net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
}

// sendFrame sends frame as it is from netns's eth0.
func sendFrame(t *testing.T, netns string, frame []byte) {
	t.Helper()
	err := inNetns(netns, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err := packet.Listen(ifc, packet.Raw, unix.ETH_P_ALL, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteTo(frame, &packet.Addr{HardwareAddr: frame[:6]})
		return err
	})
	if err != nil {
		t.Fatalf("sending a frame from %s: %v", netns, err)
	}
}

// sniffer records every frame an interface receives.
type sniffer struct {
	mu     sync.Mutex
	frames [][]byte
}

// sniff listens on ifname in netns until the test ends.
func sniff(t *testing.T, netns, ifname string) *sniffer {
	t.Helper()
	s := &sniffer{}
	var c *packet.Conn
	err := inNetns(netns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifc, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	})
	if err != nil {
		t.Fatalf("sniffing on %s in %s: %v", ifname, netns, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 9000)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.frames = append(s.frames, append([]byte{}, buf[:n]...))
			s.mu.Unlock()
		}
	}()
	return s
}

// saw reports whether a frame holding marker arrived within d.
func (s *sniffer) saw(marker []byte, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		s.mu.Lock()
		for _, f := range s.frames {
			if bytes.Contains(f, marker) {
				s.mu.Unlock()
				return true
			}
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
