package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/lease"
)

// A host went down without DEL (a power cut): the lease daemon's state
// survived, the runtime re-creates the container at the same netns path
// with the same container ID. Nothing the daemon hands out then may be
// stale: the lease it returns is one dnsmasq holds, for the container's
// MAC, with a future expiry; for a server that lost its leases (rebooted
// with the host) and for a lease that expired while the host was down;
// with the namespace re-created before the daemon starts and after.
//
// A reboot restarts the kernel's numbering of namespaces, so a new
// namespace can get the inode the record names. Within one boot it does
// not, so the test makes the record look as a reboot leaves it: made in an
// earlier boot, naming the new namespace's device and inode.
func TestRebootedHost(t *testing.T) {
	for _, server := range []string{"lost its leases", "kept them"} {
		for _, expired := range []bool{false, true} {
			for _, when := range []string{"before", "after"} {
				if server == "kept them" && !expired {
					continue // nothing stale to hand out
				}
				name := fmt.Sprintf("server %s, expired %v, netns re-created %s the daemon started", server, expired, when)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					rebootedHost(t, server == "lost its leases", expired, when == "before")
				})
			}
		}
	}
}

func rebootedHost(t *testing.T, serverLost, expired, before bool) {
	l := newLAN(t, testlan.Options{LeaseTime: "2m"})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	path := container(t, l)
	a := attach{ID: "rebooted-" + l.ID, Netns: path}
	res := n.MustAdd(a)
	mac := macOf(t, res).String()
	addr := res.IPs[0].Address.IP.String()

	// Down: the daemon dies, the container and its namespace are gone.
	d.Kill()
	if err := l.DeleteContainer(path); err != nil {
		t.Fatal(err)
	}
	if serverLost {
		l.StopDHCP()
		if err := os.WriteFile(l.LeaseFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := l.StartDHCP(); err != nil {
			t.Fatal(err)
		}
	}
	// The new namespace, under another name first: its identity goes into
	// the record.
	fresh := container(t, l)
	recPath := filepath.Join(d.StateDir, lease.Key{ContainerID: a.ID, Network: n.Name, IfName: "eth0"}.ID()+".json")
	rewriteRecord(t, recPath, fresh, expired)
	bindAt := func() {
		if err := os.WriteFile(path, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(fresh, path, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("binding the new namespace at %s: %v", path, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(path, unix.MNT_DETACH); _ = os.Remove(path) })
	}
	if before {
		bindAt()
	}
	start := time.Now()
	d.Start()
	if !before {
		bindAt()
	}
	logBefore := len(strings.Split(l.Log(), "\n"))

	got := n.MustAdd(a)
	ip := got.IPs[0].Address.IP.String()
	if m := macOf(t, got).String(); m != mac {
		t.Fatalf("the re-created container has MAC %s, was %s", m, mac)
	}
	// The server holds what the daemon handed out.
	ls, ok := l.LeaseFor(mac)
	if !ok || ls.IP != ip {
		t.Fatalf("dnsmasq's lease file holds %+v (found %v) for %s; the daemon answered %s", ls, ok, mac, ip)
	}
	exp, _ := strconv.ParseInt(ls.Expiry, 10, 64)
	if time.Unix(exp, 0).Before(time.Now().Add(time.Minute)) {
		t.Errorf("dnsmasq's lease of %s expires at %s, not in the future", ip, time.Unix(exp, 0))
	}
	// And it was asked, after the host came back.
	newLines := strings.Join(strings.Split(l.Log(), "\n")[logBefore-1:], "\n")
	if !strings.Contains(newLines, "DHCPACK(") || !strings.Contains(newLines, mac) {
		t.Errorf("no DHCP exchange for %s after the restart at %s; dnsmasq's log since:\n%s", mac, start.Format(time.RFC3339), newLines)
	}
	t.Logf("address before the restart %s, after %s", addr, ip)
	if err := n.Check(a); err != nil {
		t.Errorf("CHECK after the re-created container's ADD: %v", err)
	}
	if err := n.Del(a); err != nil {
		t.Error(err)
	}
}

// rewriteRecord makes a lease record look as a reboot leaves it: made in
// an earlier boot, naming netns's device and inode; expired, the host having
// been down longer than the lease.
func rewriteRecord(t *testing.T, path, netns string, expired bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the lease record: %v", err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(netns, &st); err != nil {
		t.Fatal(err)
	}
	rec["netnsDev"], rec["netnsIno"] = uint64(st.Dev), st.Ino
	rec["bootID"] = "00000000-0000-4000-8000-0000000e4b17" // an earlier boot
	if expired {
		rec["acquired"] = time.Now().Add(-3 * time.Minute).Format(time.RFC3339Nano)
	}
	data, _ = json.Marshal(rec)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("sync").Run()
}
