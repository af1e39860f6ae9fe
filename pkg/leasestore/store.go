// Package leasestore keeps the daemon's leases on disk: one JSON file per
// lease, written atomically (temp file, fsync, rename, fsync of the
// directory) so a crash never leaves a torn record.
package leasestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lanwire/lanwire/pkg/lease"
)

// Record is one lease as persisted.
type Record struct {
	Key      lease.Key  `json:"key"`
	Spec     lease.Spec `json:"spec"`
	Info     lease.Info `json:"info"`
	Acquired time.Time  `json:"acquired"`
	// NetnsDev and NetnsIno identify the netns the lease was taken in, and
	// BootID the boot it was taken in (/proc/sys/kernel/random/boot_id): a
	// reused path, or a namespace made after a reboot that happens to get
	// the same inode, is never mistaken for the original one.
	NetnsDev uint64 `json:"netnsDev,omitempty"`
	NetnsIno uint64 `json:"netnsIno,omitempty"`
	BootID   string `json:"bootID,omitempty"`
	// Info6 is the DHCPv6 lease, when the spec asks for one, granted at
	// Acquired6.
	Info6     *lease.Info6 `json:"info6,omitempty"`
	Acquired6 time.Time    `json:"acquired6,omitempty"`
}

// NetnsID identifies a network namespace within one boot.
type NetnsID struct{ Dev, Ino uint64 }

// Netns is the identity of the namespace the record was made for.
func (r Record) Netns() NetnsID { return NetnsID{Dev: r.NetnsDev, Ino: r.NetnsIno} }

// Store is a directory of records.
type Store struct{ dir string }

// Open creates dir (0700) if needed and returns a store on it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(k lease.Key) string { return filepath.Join(s.dir, k.ID()+".json") }

// Save writes rec durably before returning.
func (s *Store) Save(rec Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding lease %s: %w", rec.Key, err)
	}
	return WriteFileAtomic(s.path(rec.Key), data)
}

// Delete removes the record of k; a missing record is not an error.
func (s *Store) Delete(k lease.Key) error {
	if err := os.Remove(s.path(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing lease state %s: %w", k, err)
	}
	return syncDir(s.dir)
}

// Load reads every record; unreadable files are reported, not fatal.
func (s *Store) Load() ([]Record, []error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []error{fmt.Errorf("reading state directory %s: %w", s.dir, err)}
	}
	var recs []Record
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var rec Record
		if err := json.Unmarshal(data, &rec); err != nil || rec.Key.Validate() != nil {
			errs = append(errs, fmt.Errorf("ignoring corrupt lease state %s: %v", name, err))
			continue
		}
		recs = append(recs, rec)
	}
	return recs, errs
}

// WriteFileAtomic writes data to path through a temp file in the same
// directory, fsyncs it, renames it over path and fsyncs the directory.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming into %s: %w", path, err)
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// Pending is a release the plugin could not hand to the daemon (it was not
// running); the daemon sends it when it starts.
type Pending struct {
	Key    lease.Key `json:"key"`
	Bridge string    `json:"bridge"`
	MAC    string    `json:"mac"`
	Queued time.Time `json:"queued"`
}

// PendingDir is the queue directory that goes with a daemon socket. Plugin
// and daemon both derive it from the socket path, the one thing they share.
func PendingDir(socket string) string { return socket + ".pending" }

// QueueRelease records p in dir.
func QueueRelease(dir string, p Pending) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating release queue %s: %w", dir, err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, p.Key.ID()+".json"), data)
}

// TakePending reads and removes every queued release in dir.
func TakePending(dir string) ([]Pending, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading release queue %s: %w", dir, err)
	}
	var out []Pending
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err == nil {
			var q Pending
			if json.Unmarshal(data, &q) == nil && q.Key.Validate() == nil {
				out = append(out, q)
			}
		}
		os.Remove(p)
	}
	return out, nil
}
