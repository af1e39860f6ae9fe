package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// State directory full, then read-only: ADD fails with an error naming the
// cause, leaves no veth, state file or lease at the server, and the daemon
// keeps renewing the lease it already holds. Once writable again, ADD works.
func TestStateDirFullOrReadOnly(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{DnsmasqArgs: []string{"--dhcp-option=option:T1,6", "--dhcp-option=option:T2,12"}})
	state := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "lanwire-test-state", state).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small tmpfs: %v: %s", err, out)
	}
	// Registered before the daemon's cleanup, so it runs after the daemon stopped.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", state).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", state, err, out)
		}
	})
	d := startDaemonIn(t, state)
	n := newNetwork(t, l, d, nil)
	held := attach{ID: "held", Netns: container(t, l)}
	n.MustAdd(held)
	acquired := func() time.Time {
		for _, ls := range d.Leases() {
			if ls.Key.ContainerID == held.ID {
				return ls.Acquired
			}
		}
		t.Fatal("the held lease is gone from the daemon")
		return time.Time{}
	}
	leaseLines := func() int {
		b, _ := os.ReadFile(l.LeaseFile)
		return len(strings.Fields(string(b))) / 5
	}

	tryAdd := func(how string) {
		t.Helper()
		ports := bridgePorts(t, l.Bridge)
		files := stateFiles(state)
		a := attach{ID: "refused-" + how, Netns: container(t, l)}
		_, err := n.Add(a)
		if err == nil {
			t.Fatalf("ADD succeeded with the state directory %s", how)
		}
		te := cniError(t, err)
		t.Logf("state directory %s: error %d: %s (%s)", how, te.Code, te.Msg, te.Details)
		if !strings.Contains(te.Msg+te.Details, "persist") || !strings.Contains(te.Details, state) {
			t.Errorf("error does not say the lease could not be persisted in %s: %s %s", state, te.Msg, te.Details)
		}
		if got := bridgePorts(t, l.Bridge); len(got) != len(ports) {
			t.Errorf("bridge ports %v after the failed ADD, want %v", got, ports)
		}
		if got := stateFiles(state); len(got) != len(files) {
			t.Errorf("state files %v after the failed ADD, want %v", got, files)
		}
		waitFor(t, 5*time.Second, "the refused lease to be released at the server", func() bool { return leaseLines() == 1 })
		before := time.Now()
		waitFor(t, 15*time.Second, "the held lease to renew with the state directory "+how, func() bool { return acquired().After(before) })
	}

	// Full: fill the tmpfs to the last byte.
	fill := filepath.Join(state, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", state, err)
			}
			break
		}
	}
	f.Close()
	tryAdd("full")

	// Read-only.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", state).CombinedOutput(); err != nil {
		t.Fatalf("remounting read-only: %v: %s", err, out)
	}
	tryAdd("read-only")

	if out, err := exec.Command("mount", "-o", "remount,rw", state).CombinedOutput(); err != nil {
		t.Fatalf("remounting read-write: %v: %s", err, out)
	}
	again := attach{ID: "again", Netns: container(t, l)}
	n.MustAdd(again)
	for _, a := range []attach{held, again} {
		if err := n.Del(a); err != nil {
			t.Error(err)
		}
	}
	if got := stateFiles(state); len(got) != 0 {
		t.Errorf("state files left after DEL: %v", got)
	}
}

// hostileServer answers DHCP in the LAN netns with garbage around each real
// reply: truncated packets, packets whose options overrun the message, an
// offer of the broadcast address, replies for other transactions, and
// leases with option 51 of 0 or 2^32-1 and a garbage option 121.
type hostileServer struct {
	conn     net.PacketConn
	serverID net.IP // also the router the leases name
	mask     net.IPMask
	base     net.IP

	mu       sync.Mutex
	byMAC    map[string]int // client MAC -> index of its lease
	nextIdx  int
	requests atomic.Int64
}

// hostileLeases are the leases handed out, in order of first DISCOVER.
var hostileLeases = []struct {
	leaseTime uint32
	opt121    []byte
}{
	// Lease time 0; option 121 cut short (a prefix length of 40 and
	// missing bytes): unparsable, so option 3 (the router) is used.
	{0, []byte{40, 10, 0}},
	// Lease time 2^32-1; option 121 parses but holds a default route via
	// 127.0.0.1 and a route to multicast: both refused, one good route kept.
	{0xffffffff, []byte{0, 127, 0, 0, 1, 4, 224, 0, 0, 0, 0, 24, 198, 51, 100, 0, 0, 0, 0}},
}

func startHostileServer(t *testing.T, l *testlan.LAN) *hostileServer {
	t.Helper()
	_, sn, _ := net.ParseCIDR(l.Subnet)
	h := &hostileServer{serverID: net.ParseIP(l.Router).To4(), mask: sn.Mask, base: sn.IP.To4(), byMAC: map[string]int{}}
	err := ns.WithNetNSPath("/run/netns/"+l.LANNS, func(ns.NetNS) error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		for _, o := range []int{syscall.SO_REUSEADDR, syscall.SO_BROADCAST} {
			if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, o, 1); err != nil {
				syscall.Close(fd)
				return err
			}
		}
		if err := syscall.BindToDevice(fd, "eth0"); err != nil {
			syscall.Close(fd)
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: 67}); err != nil {
			syscall.Close(fd)
			return err
		}
		f := os.NewFile(uintptr(fd), "hostile-dhcp")
		defer f.Close()
		h.conn, err = net.FilePacketConn(f)
		return err
	})
	if err != nil {
		t.Fatalf("opening the hostile server's socket: %v", err)
	}
	t.Cleanup(func() { h.conn.Close() })
	go h.serve()
	return h
}

func (h *hostileServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, _, err := h.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		var typ dhcpv4.MessageType
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
			h.requests.Add(1)
		default:
			continue
		}
		h.mu.Lock()
		idx, ok := h.byMAC[req.ClientHWAddr.String()]
		if !ok {
			idx = h.nextIdx % len(hostileLeases)
			h.nextIdx++
			h.byMAC[req.ClientHWAddr.String()] = idx
		}
		h.mu.Unlock()
		lt := hostileLeases[idx]
		yi := net.IPv4(h.base[0], h.base[1], h.base[2], byte(100+idx)).To4()
		good, err := dhcpv4.NewReplyFromRequest(req,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(yi),
			dhcpv4.WithServerIP(h.serverID),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(h.serverID)),
			dhcpv4.WithOption(dhcpv4.OptSubnetMask(h.mask)),
			dhcpv4.WithOption(dhcpv4.OptRouter(h.serverID)),
			dhcpv4.WithOption(dhcpv4.OptDNS(h.serverID)),
			dhcpv4.WithGeneric(dhcpv4.OptionIPAddressLeaseTime, []byte{byte(lt.leaseTime >> 24), byte(lt.leaseTime >> 16), byte(lt.leaseTime >> 8), byte(lt.leaseTime)}),
			dhcpv4.WithGeneric(dhcpv4.OptionClasslessStaticRoute, lt.opt121),
		)
		if err != nil {
			continue
		}
		raw := good.ToBytes()
		// Garbage first, each with the request's transaction ID.
		overrun := append(append([]byte{}, raw[:240]...), 53, 1, byte(typ), 51, 200, 1, 2, 3)
		bcastOffer := *good
		bcastOffer.YourIPAddr = net.IPv4bcast.To4()
		otherXID := *good
		otherXID.TransactionID[0] ^= 0xff
		otherXID.YourIPAddr = net.IPv4(h.base[0], h.base[1], h.base[2], 250).To4()
		noServerID, _ := dhcpv4.FromBytes(raw)
		noServerID.Options.Del(dhcpv4.OptionServerIdentifier)
		for _, p := range [][]byte{raw[:7], raw[:120], raw[:240], overrun, bcastOffer.ToBytes(), otherXID.ToBytes(), noServerID.ToBytes(), raw} {
			_, _ = h.conn.WriteTo(p, &net.UDPAddr{IP: net.IPv4bcast, Port: 68})
		}
	}
}

// A hostile DHCP server: malformed replies around the real ones, lease time
// 0 and 2^32-1, garbage option 121. No crash, the lease taken from the one
// usable reply, no bad route installed, lease time 0 kept as a 30 s lease
// and renewed.
func TestHostileDHCPServer(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{NoDHCP: true})
	h := startHostileServer(t, l)
	d := startDaemon(t)
	pid := daemonPID(t, d)
	n := newNetwork(t, l, d, map[string]any{"leaseTimeout": "10s"})

	a0 := attach{ID: "hostile-0", Netns: container(t, l)}
	res0 := n.MustAdd(a0)
	a1 := attach{ID: "hostile-1", Netns: container(t, l)}
	res1 := n.MustAdd(a1)
	for i, res := range []string{res0.IPs[0].Address.String(), res1.IPs[0].Address.String()} {
		want := fmt.Sprintf("%d.%d.%d.%d/24", h.base[0], h.base[1], h.base[2], 100+i)
		if res != want {
			t.Errorf("container %d got %s, want the one usable offer %s", i, res, want)
		}
	}
	routes0, _ := nsRun(a0.Netns, "ip", "-4", "route", "show")
	routes1, _ := nsRun(a1.Netns, "ip", "-4", "route", "show")
	t.Logf("routes with an unparsable option 121:\n%s\nroutes with a hostile option 121:\n%s", routes0, routes1)
	if !strings.Contains(routes0, "default via "+l.Router) {
		t.Errorf("unparsable option 121 should leave option 3's default route:\n%s", routes0)
	}
	if strings.Contains(routes1, "default") || strings.Contains(routes1, "127.0.0.1") || strings.Contains(routes1, "224.0.0.0") {
		t.Errorf("a refused option 121 route was installed:\n%s", routes1)
	}
	if !strings.Contains(routes1, "198.51.100.0/24") {
		t.Errorf("the one good option 121 route is missing:\n%s", routes1)
	}

	var ls0, ls1 leaseapi.Lease
	for _, ls := range d.Leases() {
		switch ls.Key.ContainerID {
		case a0.ID:
			ls0 = ls
		case a1.ID:
			ls1 = ls
		}
	}
	if ls0.Info.LeaseTime != 30*time.Second {
		t.Errorf("lease time 0 kept as %s, want 30s", ls0.Info.LeaseTime)
	}
	if time.Until(ls1.NextRenewal) < 23*time.Hour {
		t.Errorf("an infinite lease should be confirmed daily; next renewal %s", ls1.NextRenewal)
	}
	reqs := h.requests.Load()
	waitFor(t, 25*time.Second, "the 30 s lease to be renewed", func() bool {
		for _, ls := range d.Leases() {
			if ls.Key.ContainerID == a0.ID && ls.Acquired.After(ls0.Acquired) {
				return true
			}
		}
		return false
	})
	if h.requests.Load() == reqs {
		t.Error("the hostile server saw no renewal REQUEST")
	}
	if got := daemonPID(t, d); got != pid {
		t.Fatalf("daemon restarted (pid %d -> %d)", pid, got)
	}
	for _, a := range []attach{a0, a1} {
		if err := n.Del(a); err != nil {
			t.Error(err)
		}
	}
}

func daemonPID(t *testing.T, d *daemonProc) int {
	t.Helper()
	resp, err := d.Call(leaseapi.Request{Method: leaseapi.MethodStatus})
	if err != nil || resp.Status == nil {
		t.Fatalf("daemon status: %v", err)
	}
	return resp.Status.PID
}
