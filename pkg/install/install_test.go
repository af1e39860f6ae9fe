package install

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestCopy(t *testing.T) {
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "opt", "cni", "bin")
	for _, b := range Binaries[:3] {
		if err := os.WriteFile(filepath.Join(from, b.Name), []byte("new "+b.Name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	// An old binary in place, and a reader holding it open.
	old := filepath.Join(to, "hostbridge-dhcp")
	_ = os.WriteFile(old, []byte("old"), 0o755)
	held, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	var out bytes.Buffer
	if err := Copy(from, to, &out); err != nil {
		t.Fatal(err)
	}
	for _, b := range Binaries[:3] {
		p := filepath.Join(to, b.Name)
		data, err := os.ReadFile(p)
		st, _ := os.Stat(p)
		if err != nil || string(data) != "new "+b.Name || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %q %v %v", p, data, st.Mode(), err)
		}
	}
	// The old file was replaced, not written over: its reader still sees it.
	buf := make([]byte, 3)
	if n, _ := held.Read(buf); string(buf[:n]) != "old" {
		t.Errorf("the open old binary reads %q: it was overwritten in place", buf[:n])
	}
	if es, _ := os.ReadDir(to); len(es) != 3 {
		t.Errorf("the directory holds %d files (temporary ones left?)", len(es))
	}
	// A missing required binary fails.
	if err := Copy(t.TempDir(), to, &out); err == nil {
		t.Error("Copy from an empty directory succeeded")
	}
}
