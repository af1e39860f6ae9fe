// Package hostknob changes host settings (sysctls, bridge and bridge port
// options under /proc and /sys) for the containers that need them, and puts
// each back as it was when the last of them goes.
//
// Its state is kept under a directory (in /run, so it goes with a reboot,
// like the settings): per knob, the value found before the first change and
// one marker per user; per user, one marker per knob it holds. Callers
// serialize changes with a lock of their own.
package hostknob

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultDir is where the bookkeeping lives.
const DefaultDir = "/run/lanwire/knobs"

// Knobs is the bookkeeping of one directory.
type Knobs struct{ Dir string }

func escape(s string) string { return strings.ReplaceAll(strings.TrimPrefix(s, "/"), "/", "%") }

func (k Knobs) knobDir(path string) string { return filepath.Join(k.Dir, "knob", escape(path)) }
func (k Knobs) userDir(user string) string { return filepath.Join(k.Dir, "user", escape(user)) }

func read(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// Need sets the file at path (a sysctl or sysfs attribute) to value on
// behalf of user, remembering the value it had if no one needed it yet.
func (k Knobs) Need(path, value, user string) error {
	kd := k.knobDir(path)
	if err := os.MkdirAll(filepath.Join(kd, "users"), 0o700); err != nil {
		return fmt.Errorf("recording %s: %w", path, err)
	}
	cur, err := read(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	orig := filepath.Join(kd, "orig")
	if _, err := os.Stat(orig); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(orig, []byte(cur), 0o600); err != nil {
			return fmt.Errorf("recording %s: %w", path, err)
		}
	}
	if err := os.MkdirAll(k.userDir(user), 0o700); err != nil {
		return fmt.Errorf("recording %s: %w", path, err)
	}
	for _, m := range []string{filepath.Join(kd, "users", escape(user)), filepath.Join(k.userDir(user), escape(path))} {
		if err := os.WriteFile(m, nil, 0o600); err != nil {
			return fmt.Errorf("recording %s: %w", path, err)
		}
	}
	if cur == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("setting %s to %s: %w", path, value, err)
	}
	return nil
}

// Release drops every knob user holds; a knob no one holds any more goes
// back to the value it had (a knob whose file is gone, such as the option
// of a deleted bridge port, is just forgotten).
func (k Knobs) Release(user string) error {
	ud := k.userDir(user)
	names, err := os.ReadDir(ud)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		kd := filepath.Join(k.Dir, "knob", n.Name())
		_ = os.Remove(filepath.Join(kd, "users", escape(user)))
		if left, _ := os.ReadDir(filepath.Join(kd, "users")); len(left) == 0 {
			path := "/" + strings.ReplaceAll(n.Name(), "%", "/")
			if orig, err := read(filepath.Join(kd, "orig")); err == nil {
				if cur, err := read(path); err == nil && cur != orig {
					if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
						errs = append(errs, fmt.Errorf("putting %s back to %s: %w", path, orig, err))
					}
				}
			}
			_ = os.RemoveAll(kd)
		}
		_ = os.Remove(filepath.Join(ud, n.Name()))
	}
	_ = os.Remove(ud)
	return errors.Join(errs...)
}

// Users lists the users holding knobs (for GC).
func (k Knobs) Users() []string {
	es, _ := os.ReadDir(filepath.Join(k.Dir, "user"))
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, strings.ReplaceAll(e.Name(), "%", "/"))
	}
	return out
}
