package hostknob

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// knobFile makes a file standing for a sysctl, holding value.
func knobFile(t *testing.T, rel, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func value(t *testing.T, p string) string {
	t.Helper()
	v, err := read(p)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReleaseKeepTidy(t *testing.T) {
	yes, no := func() bool { return true }, func() bool { return false }
	for _, tc := range []struct {
		name      string
		rel       string
		keep      func() bool
		afterRel  string // the knob's value after the last Release
		afterTidy string // after Tidy(0)
	}{
		{"no daemon: put back at once", "bridge/nf_call_iptables", nil, "0", "0"},
		{"daemon down: put back at once", "bridge/nf_call_iptables", no, "0", "0"},
		{"daemon up: kept, then put back by Tidy", "bridge/nf_call_iptables", yes, "1", "0"},
		{"a bridge port's option is never kept", "lwx/brport/hairpin_mode", yes, "0", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := Knobs{Dir: t.TempDir()}
			p := knobFile(t, tc.rel, "0")
			for _, u := range []string{"a", "b"} {
				if err := k.Need("1", u, p); err != nil {
					t.Fatal(err)
				}
			}
			if err := k.Release("a", tc.keep); err != nil {
				t.Fatal(err)
			}
			if v := value(t, p); v != "1" {
				t.Fatalf("released while b holds it: %s", v)
			}
			if err := k.Release("b", tc.keep); err != nil {
				t.Fatal(err)
			}
			if v := value(t, p); v != tc.afterRel {
				t.Fatalf("after the last Release: %s, want %s", v, tc.afterRel)
			}
			if err := k.Tidy(time.Hour); err != nil {
				t.Fatal(err)
			}
			if v := value(t, p); v != tc.afterRel {
				t.Fatalf("Tidy put back a knob unused for less than its grace: %s", v)
			}
			if err := k.Tidy(0); err != nil {
				t.Fatal(err)
			}
			if v := value(t, p); v != tc.afterTidy {
				t.Fatalf("after Tidy: %s, want %s", v, tc.afterTidy)
			}
			if es, _ := os.ReadDir(filepath.Join(k.Dir, "knob")); len(es) != 0 {
				t.Fatalf("bookkeeping left: %v", es)
			}
		})
	}
}

// A knob kept for the next user keeps the value found before the first
// user: the next user's Release puts that back, not the value it found.
func TestKeptKnobRemembersTheFirstValue(t *testing.T) {
	k := Knobs{Dir: t.TempDir()}
	p := knobFile(t, "bridge/nf_call_iptables", "0")
	if err := k.Need("1", "a", p); err != nil {
		t.Fatal(err)
	}
	if err := k.Release("a", func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if err := k.Need("1", "b", p); err != nil {
		t.Fatal(err)
	}
	if err := k.Tidy(0); err != nil {
		t.Fatal(err)
	}
	if v := value(t, p); v != "1" {
		t.Fatalf("Tidy put back a knob in use: %s", v)
	}
	if err := k.Release("b", nil); err != nil {
		t.Fatal(err)
	}
	if v := value(t, p); v != "0" {
		t.Fatalf("after the last Release: %s, want the first value 0", v)
	}
}

// Release with paths drops only those; without, every knob the user holds;
// a user recorded in the earlier layout (a directory listing its knobs) is
// released by that list.
func TestReleasePaths(t *testing.T) {
	k := Knobs{Dir: t.TempDir()}
	p1, p2 := knobFile(t, "a/forwarding", "0"), knobFile(t, "b/forwarding", "0")
	for _, p := range []string{p1, p2} {
		if err := k.Need("1", "u", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Release("u", nil, p1); err != nil {
		t.Fatal(err)
	}
	if v1, v2 := value(t, p1), value(t, p2); v1 != "0" || v2 != "1" {
		t.Fatalf("after releasing %s only: %s %s, want 0 1", p1, v1, v2)
	}
	if err := k.Release("u", nil); err != nil {
		t.Fatal(err)
	}
	if v := value(t, p2); v != "0" {
		t.Fatalf("after releasing every knob: %s, want 0", v)
	}

	// The earlier layout: user/<user>/<knob> beside knob/<knob>/users/<user>.
	if err := k.Need("1", "old", p1); err != nil {
		t.Fatal(err)
	}
	if err := k.Need("1", "other", p2); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(k.userDir("old"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.userDir("old"), escape(p1)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.Release("old", nil, "/not/asked/for"); err != nil {
		t.Fatal(err)
	}
	if v1, v2 := value(t, p1), value(t, p2); v1 != "0" || v2 != "1" {
		t.Fatalf("after releasing the earlier layout's user: %s %s, want 0 1", v1, v2)
	}
	if _, err := os.Stat(k.userDir("old")); !os.IsNotExist(err) {
		t.Fatalf("the earlier layout's user directory is left: %v", err)
	}
}
