package marker

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestSetClear(t *testing.T) {
	root := t.TempDir()
	anchor := filepath.Join(root, ".marker")
	a, b := filepath.Join(root, "x", "a"), filepath.Join(root, "y", "b")
	for _, p := range []string{a, b, a} { // the second a is already there
		if err := Set(p, anchor); err != nil {
			t.Fatalf("Set(%s): %v", p, err)
		}
	}
	for _, p := range []string{a, b} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("marker %s: %v", p, err)
		}
		if st.Size() != 0 {
			t.Errorf("marker %s has %d bytes", p, st.Size())
		}
	}
	st, err := os.Stat(anchor)
	if err != nil {
		t.Fatalf("anchor: %v", err)
	}
	if n := st.Sys().(*syscall.Stat_t).Nlink; n != 3 {
		t.Errorf("anchor has %d links, want 3 (itself and two markers)", n)
	}
	for _, p := range []string{a, a} {
		if err := Clear(p); err != nil {
			t.Fatalf("Clear(%s): %v", p, err)
		}
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Errorf("cleared marker still there: %v", err)
	}
	if _, err := os.Stat(b); err != nil {
		t.Errorf("clearing a removed b: %v", err)
	}
}

// A marker on another file system than the anchor is a file of its own.
func TestSetOtherFileSystem(t *testing.T) {
	other := "/dev/shm"
	if _, err := os.Stat(other); err != nil {
		t.Skip("no /dev/shm")
	}
	var a, b syscall.Statfs_t
	root := t.TempDir()
	if syscall.Statfs(root, &a) != nil || syscall.Statfs(other, &b) != nil || a.Fsid == b.Fsid {
		t.Skip("the temporary directory is on /dev/shm's file system")
	}
	dir, err := os.MkdirTemp(other, "lanwire-marker-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "m")
	if err := Set(p, filepath.Join(root, ".marker")); err != nil {
		t.Fatalf("Set across file systems: %v", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("marker: %v", err)
	}
}
