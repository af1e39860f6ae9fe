// Package hostknob changes host settings (sysctls, bridge and bridge port
// options under /proc and /sys) for the containers that need them, and puts
// each back as it was when the last of them goes.
//
// Its state is kept under a directory (in /run, so it goes with a reboot,
// like the settings): per knob, the value found before the first change and
// one marker per user (a hard link, see package marker: no inode per
// container). A knob its last user leaves may stay set for a while, for the
// next user to find it so (a lease daemon puts it back with Tidy). Changes
// are serialized by a lock file in the directory.
package hostknob

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lanwire/lanwire/pkg/marker"
	"github.com/lanwire/lanwire/pkg/nft"
)

// DefaultDir is where the bookkeeping lives.
const DefaultDir = "/run/lanwire/knobs"

// Knobs is the bookkeeping of one directory.
type Knobs struct{ Dir string }

func escape(s string) string { return strings.ReplaceAll(strings.TrimPrefix(s, "/"), "/", "%") }

func (k Knobs) knobDir(path string) string { return filepath.Join(k.Dir, "knob", escape(path)) }

// userDir is where an earlier layout listed a user's knobs (still read by
// Release, for the users of a host upgraded with containers running).
func (k Knobs) userDir(user string) string { return filepath.Join(k.Dir, "user", escape(user)) }
func (k Knobs) anchor() string             { return filepath.Join(k.Dir, ".marker") }

func (k Knobs) lock() (func(), error) { return nft.Lock(filepath.Join(k.Dir, "lock")) }

func read(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// Need sets the files at paths (sysctls or sysfs attributes) to value on
// behalf of user, remembering the value each had if no one needed it yet.
func (k Knobs) Need(value, user string, paths ...string) error {
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, path := range paths {
		if err := k.need(path, value, user); err != nil {
			return err
		}
	}
	return nil
}

func (k Knobs) need(path, value, user string) error {
	kd := k.knobDir(path)
	cur, err := read(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	orig := filepath.Join(kd, "orig")
	if _, err := os.Stat(orig); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Join(kd, "users"), 0o700); err != nil {
			return fmt.Errorf("recording %s: %w", path, err)
		}
		if err := os.WriteFile(orig, []byte(cur), 0o600); err != nil {
			return fmt.Errorf("recording %s: %w", path, err)
		}
	}
	if err := marker.Set(filepath.Join(kd, "users", escape(user)), k.anchor()); err != nil {
		return fmt.Errorf("recording %s: %w", path, err)
	}
	if cur == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("setting %s to %s: %w", path, value, err)
	}
	return nil
}

// Release drops the knobs user holds: those at paths, or when none are
// given, every knob (a user that does not know what it asked for, as after
// a failure). A knob no one holds any more goes back to the value it had,
// unless keep (nil: never) says a lease daemon will put it back once it has
// stayed unused for a while (Tidy); a knob whose file is gone, such as the
// option of a deleted bridge port, is just forgotten, and a bridge port's
// option is put back at once. keep is asked at most once.
func (k Knobs) Release(user string, keep func() bool, paths ...string) error {
	names := map[string]bool{}
	for _, p := range paths {
		names[escape(p)] = true
	}
	legacy, _ := os.ReadDir(k.userDir(user))
	for _, e := range legacy {
		names[e.Name()] = true
	}
	if len(paths) == 0 && len(legacy) == 0 {
		all, _ := os.ReadDir(filepath.Join(k.Dir, "knob"))
		for _, e := range all {
			names[e.Name()] = true
		}
	}
	if len(names) == 0 {
		return nil
	}
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	asked, kept := false, false
	keepIt := func() bool {
		if !asked && keep != nil {
			asked, kept = true, keep()
		}
		return kept
	}
	var errs []error
	for n := range names {
		kd := filepath.Join(k.Dir, "knob", n)
		if os.Remove(filepath.Join(kd, "users", escape(user))) != nil {
			continue // not held by user
		}
		if nft.Idle(filepath.Join(kd, "users"), 0) {
			if path := knobPath(n); !lasting(path) || !keepIt() {
				errs = append(errs, putBack(kd, path))
			}
		}
	}
	if len(legacy) > 0 {
		_ = os.RemoveAll(k.userDir(user))
	}
	return errors.Join(errs...)
}

func knobPath(escaped string) string { return "/" + strings.ReplaceAll(escaped, "%", "/") }

// lasting reports whether the knob at path can be kept for a next user: it
// exists, and is not an option of a bridge port (the port goes with its
// container, and a new one of the same name is not the same port).
func lasting(path string) bool {
	_, err := os.Stat(path)
	return err == nil && !strings.Contains(path, "/brport/")
}

// putBack sets the knob at path back to the value recorded in kd and
// forgets it.
func putBack(kd, path string) error {
	var err error
	if orig, rerr := read(filepath.Join(kd, "orig")); rerr == nil {
		if cur, rerr := read(path); rerr == nil && cur != orig {
			if werr := os.WriteFile(path, []byte(orig), 0o644); werr != nil {
				err = fmt.Errorf("putting %s back to %s: %w", path, orig, werr)
			}
		}
	}
	_ = os.RemoveAll(kd)
	return err
}

// Tidy puts back the knobs no one has held for grace (those Release kept
// for the next user).
func (k Knobs) Tidy(grace time.Duration) error {
	es, err := os.ReadDir(filepath.Join(k.Dir, "knob"))
	if err != nil || len(es) == 0 {
		return nil
	}
	var idle []string
	for _, e := range es {
		if nft.Idle(filepath.Join(k.Dir, "knob", e.Name(), "users"), grace) {
			idle = append(idle, e.Name())
		}
	}
	if len(idle) == 0 {
		return nil
	}
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	for _, name := range idle {
		kd := filepath.Join(k.Dir, "knob", name)
		if nft.Idle(filepath.Join(kd, "users"), 0) { // no user came meanwhile
			errs = append(errs, putBack(kd, knobPath(name)))
		}
	}
	return errors.Join(errs...)
}
