package integration

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// countUDP listens on addr in netns and returns a counter of datagrams.
func countUDP(t *testing.T, netns, addr string) func() int64 {
	t.Helper()
	var pc net.PacketConn
	if err := inNetns(netns, func() (err error) { pc, err = net.ListenPacket("udp", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var n atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			n.Add(1)
			_, _ = pc.WriteTo([]byte("ok"), from)
		}
	}()
	return n.Load
}

func mustMAC(t *testing.T, netns, ifname string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := inNetns(netns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err == nil {
			mac = ifc.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// sendCrafted sends, from netns's eth0, an Ethernet frame to dstMAC holding
// a UDP datagram from src to dst:port, whatever the routing table says (a
// LAN host forging a packet to 127.0.0.1, say).
func sendCrafted(t *testing.T, netns string, dstMAC net.HardwareAddr, src, dst string, port int) {
	t.Helper()
	err := inNetns(netns, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err := packet.Listen(ifc, packet.Raw, unix.ETH_P_IP, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		payload := []byte("crafted")
		udp := make([]byte, 8+len(payload))
		binary.BigEndian.PutUint16(udp[0:], 40000)
		binary.BigEndian.PutUint16(udp[2:], uint16(port))
		binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
		copy(udp[8:], payload) // checksum 0: none, allowed for IPv4
		ip := make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		copy(ip[12:], net.ParseIP(src).To4())
		copy(ip[16:], net.ParseIP(dst).To4())
		binary.BigEndian.PutUint16(ip[10:], checksum(ip))
		frame := append(append(append([]byte{}, dstMAC...), ifc.HardwareAddr...), 0x08, 0x00)
		frame = append(append(frame, ip...), udp...)
		_, err = c.WriteTo(frame, &packet.Addr{HardwareAddr: dstMAC})
		return err
	})
	if err != nil {
		t.Fatalf("sending a crafted packet: %v", err)
	}
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
