package leasestore

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanwire/lanwire/pkg/lease"
)

func TestSaveLoadDelete(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	k := lease.Key{ContainerID: "c1", Network: "lan", IfName: "eth0"}
	rec := Record{Key: k, Spec: lease.Spec{MAC: "02:00:00:00:00:01", Netns: "/var/run/netns/x"},
		Info:     lease.Info{Address: net.IPNet{IP: net.IPv4(10, 0, 0, 5).To4(), Mask: net.CIDRMask(24, 32)}, ServerID: net.IPv4(10, 0, 0, 1).To4(), LeaseTime: time.Minute},
		Acquired: time.Unix(1000, 0).UTC(), NetnsIno: 42}
	if err := s.Save(rec); err != nil {
		t.Fatal(err)
	}
	// A corrupt file and a leftover temp file are ignored.
	_ = os.WriteFile(filepath.Join(s.Dir(), "junk.json"), []byte("{"), 0o600)
	_ = os.WriteFile(filepath.Join(s.Dir(), ".tmp-123"), []byte("x"), 0o600)
	recs, errs := s.Load()
	if len(recs) != 1 || len(errs) != 1 {
		t.Fatalf("load: %d records, %v", len(recs), errs)
	}
	got := recs[0]
	if got.Key != k || !got.Info.Address.IP.Equal(rec.Info.Address.IP) || got.NetnsIno != 42 || !got.Acquired.Equal(rec.Acquired) {
		t.Errorf("round trip: got %+v", got)
	}
	st, _ := os.Stat(filepath.Join(s.Dir(), k.ID()+".json"))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %o, want 600", st.Mode().Perm())
	}
	if err := s.Delete(k); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(k); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if recs, _ := s.Load(); len(recs) != 0 {
		t.Errorf("%d records after delete", len(recs))
	}
}

func TestPendingQueue(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hb.sock")
	k := lease.Key{ContainerID: "c1", Network: "lan", IfName: "eth0"}
	if err := QueueRelease(PendingDir(sock), Pending{Key: k, Bridge: "br0"}); err != nil {
		t.Fatal(err)
	}
	ps, err := TakePending(PendingDir(sock))
	if err != nil || len(ps) != 1 || ps[0].Key != k {
		t.Fatalf("take: %v %+v", err, ps)
	}
	if ps, _ := TakePending(PendingDir(sock)); len(ps) != 0 {
		t.Errorf("queue not emptied: %+v", ps)
	}
	if ps, err := TakePending(filepath.Join(t.TempDir(), "none")); err != nil || len(ps) != 0 {
		t.Errorf("missing queue: %v %v", ps, err)
	}
}
