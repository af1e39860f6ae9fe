// Package install copies lanwire's binaries into a CNI plugin directory
// the way a running host needs it: each file written under a temporary
// name in the target directory, synced, then renamed over the old one, so
// that a runtime executing a plugin at that moment runs the old binary or
// the new one, never a half-written file.
package install

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lanwire/lanwire/pkg/cli"
)

// Binaries are the files installed; a missing optional one is skipped.
var Binaries = []struct {
	Name     string
	Optional bool
}{{"hostbridge-dhcp", false}, {"offline-egress", false}, {"portmap-lite", false}, {"lanwire", true}}

// Copy installs the binaries found in from into to, atomically each.
func Copy(from, to string, out io.Writer) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", to, err)
	}
	for _, b := range Binaries {
		src := filepath.Join(from, b.Name)
		if _, err := os.Stat(src); err != nil && b.Optional {
			continue
		}
		if err := copyFile(src, filepath.Join(to, b.Name)); err != nil {
			return err
		}
		fmt.Fprintf(out, "installed %s\n", filepath.Join(to, b.Name))
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	defer in.Close()
	if err := WriteAtomic(dst, in, 0o755); err != nil {
		return fmt.Errorf("installing %s: %w", dst, err)
	}
	return nil
}

// WriteAtomic writes what r gives to a temporary file next to path (in
// writes of 1 MiB), with mode, syncs it and renames it over path: path
// holds the old content or the whole new one, never a part. On failure
// nothing is left.
func WriteAtomic(path string, r io.Reader, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".lanwire-*")
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(struct{ io.Writer }{tmp}, r, make([]byte, 1<<20))
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Main is `hostbridge-dhcp install --to DIR [--from DIR]`.
func Main(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	to := fs.String("to", "", "the CNI plugin directory to install into, e.g. /host/opt/cni/bin")
	self, _ := os.Executable()
	from := fs.String("from", filepath.Dir(self), "the directory holding lanwire's binaries")
	if ok, code := cli.Parse(fs, args); !ok {
		return code
	}
	if *to == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "hostbridge-dhcp install: give --to DIR (and no other arguments)")
		return 2
	}
	if err := Copy(*from, *to, out); err != nil {
		fmt.Fprintln(os.Stderr, "hostbridge-dhcp install:", err)
		return 1
	}
	return 0
}
