package daemon

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanwire/lanwire/pkg/lease"
	"github.com/lanwire/lanwire/pkg/leasestore"
)

func TestDecideHeld(t *testing.T) {
	now := time.Now()
	id := leasestore.NetnsID{Dev: 4, Ino: 4026531993}
	spec := lease.Spec{Netns: "/run/netns/c", IfName: "eth0", MAC: "02:00:00:00:00:01"}
	rec := func(acquired time.Time) leasestore.Record {
		return leasestore.Record{Spec: spec, NetnsDev: id.Dev, NetnsIno: id.Ino, Acquired: acquired,
			Info: lease.Info{Address: net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)},
				LeaseTime: 2 * time.Minute, RenewTime: time.Minute, RebindTime: 105 * time.Second}}
	}
	other := spec
	other.MAC = "02:00:00:00:00:02"
	v6 := spec
	v6.DHCPv6 = true
	tests := []struct {
		name                        string
		rec                         leasestore.Record
		id                          leasestore.NetnsID
		alive                       bool
		spec                        lease.Spec
		newIf, confirmed, rem, rem6 bool
		want                        heldAction
	}{
		{"a repeated ADD", rec(now), id, true, spec, false, true, false, false, answerHeld},
		{"a new interface", rec(now), id, true, spec, true, true, false, false, confirmHeld},
		{"resumed, not confirmed yet", rec(now), id, true, spec, false, false, false, false, confirmHeld},
		{"expired", rec(now.Add(-3 * time.Minute)), id, true, spec, false, true, false, false, reacquire},
		{"taken off at expiry", rec(now), id, true, spec, false, true, true, false, reacquire},
		{"another MAC", rec(now), id, true, other, false, true, false, false, reacquire},
		{"another namespace", rec(now), leasestore.NetnsID{Dev: 4, Ino: 1}, true, spec, false, true, false, false, dropHeld},
		{"its namespace gone", rec(now), id, false, spec, false, true, false, false, dropHeld},
		{"DHCPv6 asked for now", rec(now), id, true, v6, false, true, false, false, confirmHeld},
	}
	for _, tc := range tests {
		if got := decideHeld(tc.rec, tc.id, tc.alive, tc.spec, tc.newIf, tc.confirmed, tc.rem, tc.rem6, now); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "netns")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := netnsID(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(boot string, id leasestore.NetnsID, p string) leasestore.Record {
		return leasestore.Record{Spec: lease.Spec{Netns: p}, BootID: boot, NetnsDev: id.Dev, NetnsIno: id.Ino}
	}
	tests := []struct {
		name  string
		rec   leasestore.Record
		stale bool
	}{
		{"this boot, its namespace", rec("b1", id, path), false},
		{"from before this daemon kept the boot", rec("", id, path), false},
		{"another boot", rec("b0", id, path), true},
		{"another namespace at the path", rec("b1", leasestore.NetnsID{Dev: id.Dev, Ino: id.Ino + 1}, path), true},
		{"the path gone", rec("b1", id, filepath.Join(dir, "gone")), true},
	}
	for _, tc := range tests {
		if got := stale(tc.rec, "b1") != ""; got != tc.stale {
			t.Errorf("%s: stale %v, want %v (%q)", tc.name, got, tc.stale, stale(tc.rec, "b1"))
		}
	}
}
