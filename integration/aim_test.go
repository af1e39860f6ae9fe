package integration

import (
	"encoding/binary"
	"net"
	"os/exec"
	"slices"
	"sync"
	"testing"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/integration/testlan"
)

// watchDHCP captures, on netns's eth0, the DHCP client packets (UDP to port
// 67) sent by others, and returns a func listing their senders' Ethernet
// addresses so far.
func watchDHCP(t *testing.T, netns string) func() []string {
	t.Helper()
	var c *packet.Conn
	var own net.HardwareAddr
	err := inNetns(netns, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		own = ifc.HardwareAddr
		c, err = packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, nil)
		return err
	})
	if err != nil {
		t.Fatalf("capturing in %s: %v", netns, err)
	}
	t.Cleanup(func() { c.Close() })
	var mu sync.Mutex
	var senders []string
	go func() {
		buf := make([]byte, 2048)
		for {
			n, addr, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			pa, ok := addr.(*packet.Addr)
			if !ok || n < 28 || buf[9] != unix.IPPROTO_UDP || pa.HardwareAddr.String() == own.String() {
				continue
			}
			ihl := int(buf[0]&0x0f) * 4
			if n >= ihl+4 && binary.BigEndian.Uint16(buf[ihl+2:]) == 67 {
				mu.Lock()
				senders = append(senders, pa.HardwareAddr.String())
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(senders)
	}
}

// Once the LAN's DHCP server has answered on a bridge, the daemon sends
// the next containers' DISCOVER and REQUEST to its Ethernet address alone,
// not flooded to every container's port; when that address goes stale,
// it falls back to broadcasting, and aims at the new one after that.
func TestDHCPAimsAtKnownServer(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	add := func(name string) string {
		t.Helper()
		a := attach{ID: name + "-" + l.ID, Netns: container(t, l)}
		n.MustAdd(a)
		return mustMAC(t, a.Netns, "eth0").String()
	}
	watcher := attach{ID: "aim-watcher-" + l.ID, Netns: container(t, l)}
	n.MustAdd(watcher)
	seen := watchDHCP(t, watcher.Netns)

	second := add("aim-second")
	if got := seen(); len(got) != 0 {
		t.Errorf("another container's port saw %d DHCP client packets of the second ADD (from %v): they were flooded", len(got), got)
	}

	// The server's Ethernet address changes: the one the daemon knows is stale.
	if out, err := exec.Command("ip", "-n", l.LANNS, "link", "set", "dev", "eth0", "address", "02:4c:57:00:00:01").CombinedOutput(); err != nil {
		t.Fatalf("changing the server's MAC: %v %s", err, out)
	}
	third := add("aim-third")
	if got := seen(); !slices.Contains(got, third) {
		t.Errorf("no broadcast from %s after the server's address changed (seen: %v)", third, got)
	}
	before := len(seen())
	fourth := add("aim-fourth")
	if got := seen()[before:]; slices.Contains(got, fourth) {
		t.Errorf("the fourth ADD was broadcast again (seen: %v): the new address was not learnt", got)
	}
	if slices.Contains(seen(), second) {
		t.Errorf("the second container's DHCP packets were seen by the watcher")
	}
}
