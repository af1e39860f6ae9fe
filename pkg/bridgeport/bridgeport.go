// Package bridgeport checks host bridges and waits for their ports to
// forward, so no DHCP packet is sent into a port that still drops frames.
package bridgeport

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotFound and ErrNotBridge are returned by Lookup.
var (
	ErrNotFound  = errors.New("link not found")
	ErrNotBridge = errors.New("link is not a bridge")
)

// PortMAC is an Ethernet address for the bridge's end of a veth pair:
// fe:ff and four random bytes, higher than any address a NIC or the kernel
// is likely to hold. A bridge whose address was not set by hand takes the
// lowest of its ports': a port with a lower one would change the bridge's
// address when it comes and again when it goes, and hosts and containers on
// the LAN would keep sending to the old one until their ARP entries
// expired (seen here: a container lost the host for seconds after another
// container's DEL). libvirt gives its tap devices fe: addresses for the
// same reason.
func PortMAC() net.HardwareAddr {
	mac := net.HardwareAddr{0xfe, 0xff, 0, 0, 0, 0}
	_, _ = rand.Read(mac[2:])
	return mac
}

// Lookup returns the bridge called name in the current netns.
func Lookup(name string) (*netlink.Bridge, error) {
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("bridge %q: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("looking up bridge %q: %w", name, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("%q is a %s link: %w", name, l.Type(), ErrNotBridge)
	}
	return br, nil
}

// IsUp reports whether the bridge is administratively up.
func IsUp(br *netlink.Bridge) bool { return br.Attrs().Flags&net.FlagUp != 0 }

// Forwarding state of a bridge port, as in /sys/class/net/PORT/brport/state.
const stateForwarding = "3"

// WaitForwarding waits until port carries traffic: its carrier is up and the
// bridge has moved it to the forwarding state (right away without STP, after
// the forward delay with it).
func WaitForwarding(port string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	sleep := 2 * time.Millisecond
	for {
		state := readSys(port, "brport/state")
		oper := readSys(port, "operstate")
		if state == stateForwarding && (oper == "up" || oper == "unknown") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bridge port %s not forwarding after %s (state %s, operstate %s): check the bridge's STP forward delay", port, timeout, stateName(state), oper)
		}
		time.Sleep(sleep)
		if sleep < 50*time.Millisecond {
			sleep *= 2
		}
	}
}

func readSys(link, attr string) string {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", link, attr))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func stateName(s string) string {
	switch s {
	case "0":
		return "disabled"
	case "1":
		return "listening"
	case "2":
		return "learning"
	case "3":
		return "forwarding"
	case "4":
		return "blocking"
	case "":
		return "unknown"
	}
	return s
}

// IsContainerPort reports whether a bridge port is a container's host veth
// (lanwire's "lw" and 10 hex digits, the bridge plugin's "veth" and 8), or
// the doctor's probe ("lwdp", "lwdq").
func IsContainerPort(name string) bool {
	hexOf := func(s string, n int) bool {
		_, err := hex.DecodeString(s)
		return len(s) == n && err == nil
	}
	if rest, ok := strings.CutPrefix(name, "lw"); ok {
		return hexOf(rest, 10) || strings.HasPrefix(rest, "dp") || strings.HasPrefix(rest, "dq")
	}
	rest, ok := strings.CutPrefix(name, "veth")
	return ok && hexOf(rest, 8)
}

// Ports lists a bridge's ports: its uplinks (anything but containers' host
// veths) and its containers' ports. Equivalent to: `ls /sys/class/net/BR/brif`.
func Ports(bridge string) (uplinks, containers []string) {
	es, _ := os.ReadDir(filepath.Join("/sys/class/net", bridge, "brif"))
	for _, e := range es {
		if IsContainerPort(e.Name()) {
			containers = append(containers, e.Name())
		} else {
			uplinks = append(uplinks, e.Name())
		}
	}
	return uplinks, containers
}

// ValidName reports whether name can be an interface's, and so be put in a
// path under /sys/class/net or lanwire's records without leaving it.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) < unix.IFNAMSIZ && !strings.ContainsAny(name, "/\x00")
}

// BridgeOf returns the bridge port is a port of, "" when it is none's.
// Equivalent to: `readlink /sys/class/net/PORT/master` (sysfs, no netlink
// socket: a lone container's ADD is timed in milliseconds).
func BridgeOf(port string) string {
	if !ValidName(port) {
		return ""
	}
	dir := filepath.Join("/sys/class/net", port)
	if _, err := os.Stat(filepath.Join(dir, "brport")); err != nil {
		return ""
	}
	master, err := os.Readlink(filepath.Join(dir, "master"))
	if err != nil {
		return ""
	}
	return filepath.Base(master)
}

// Bridges lists the bridges of the current netns.
func Bridges() []string {
	es, _ := os.ReadDir("/sys/class/net")
	var out []string
	for _, e := range es {
		if _, err := os.Stat(filepath.Join("/sys/class/net", e.Name(), "bridge")); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// Nearest returns the existing bridge whose name is closest to name (a
// typo), "" when none is within a few edits.
func Nearest(name string) string {
	best, bestD := "", 4
	for _, b := range Bridges() {
		if d := editDistance(name, b); d < bestD {
			best, bestD = b, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
