package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `make dist`'s script: an archive per architecture holding static
// plugins for that architecture, the netavark plugin, the systemd units
// and the conflists; a .sha256 that verifies; a CycloneDX SBOM naming the
// modules linked; and the same bytes when built twice. Not parallel: two
// cross-builds would slow the timing-sensitive tests beside it.
func TestDist(t *testing.T) {
	const version = "v0.0.0-disttest"
	build := func() string {
		out := t.TempDir()
		cmd := exec.Command("scripts/dist", version, out)
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scripts/dist: %v\n%s", err, b)
		}
		return out
	}
	a, b := build(), build()
	for _, arch := range []struct {
		name    string
		machine elf.Machine
	}{{"amd64", elf.EM_X86_64}, {"arm64", elf.EM_AARCH64}} {
		base := fmt.Sprintf("lanwire-linux-%s-%s", arch.name, version)
		for _, f := range []string{".tgz", ".tgz.sha256", ".sbom.json", ".sbom.json.sha256"} {
			x, errA := os.ReadFile(filepath.Join(a, base+f))
			y, errB := os.ReadFile(filepath.Join(b, base+f))
			if errA != nil || errB != nil {
				t.Fatalf("%s%s missing: %v %v", base, f, errA, errB)
			}
			if !bytes.Equal(x, y) {
				t.Errorf("%s%s differs between two builds of the same commit", base, f)
			}
		}
		tgz, _ := os.ReadFile(filepath.Join(a, base+".tgz"))
		sum := sha256.Sum256(tgz)
		if line, _ := os.ReadFile(filepath.Join(a, base+".tgz.sha256")); string(line) != hex.EncodeToString(sum[:])+"  "+base+".tgz\n" {
			t.Errorf("%s.tgz.sha256 is %q, does not verify the archive", base, line)
		}
		files := untar(t, tgz)
		for _, want := range []string{"./hostbridge-dhcp", "./offline-egress", "./portmap-lite", "./lanwire", "./offline-image",
			"./systemd/hostbridge-dhcp.service", "./systemd/hostbridge-dhcp.socket", "./conflist/offline-ports.conflist",
			"./conflist/kubernetes/daemonset.yaml", "./README.md"} {
			if _, ok := files[want]; !ok {
				t.Errorf("%s.tgz has no %s", base, want)
			}
		}
		for _, p := range []string{"./hostbridge-dhcp", "./offline-egress", "./portmap-lite", "./lanwire", "./offline-image"} {
			f, err := elf.NewFile(bytes.NewReader(files[p]))
			if err != nil {
				t.Errorf("%s in %s: %v", p, base, err)
				continue
			}
			if f.Machine != arch.machine {
				t.Errorf("%s in %s is built for %v", p, base, f.Machine)
			}
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Errorf("%s in %s is dynamically linked", p, base)
				}
			}
		}
		if unit := string(files["./systemd/hostbridge-dhcp.service"]); strings.Contains(unit, "@CNI_BIN_DIR@") || !strings.Contains(unit, "/opt/cni/bin/hostbridge-dhcp") {
			t.Errorf("the archive's unit does not run /opt/cni/bin/hostbridge-dhcp:\n%s", unit)
		}
		if arch.name == "amd64" {
			bin := filepath.Join(t.TempDir(), "hostbridge-dhcp")
			_ = os.WriteFile(bin, files["./hostbridge-dhcp"], 0o755)
			if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), version) {
				t.Errorf("the archive's hostbridge-dhcp --version: %v %s", err, out)
			}
		}
		var bom struct {
			BOMFormat, SpecVersion string
			Components             []struct{ Type, Name, Version, PURL string }
		}
		data, _ := os.ReadFile(filepath.Join(a, base+".sbom.json"))
		if err := json.Unmarshal(data, &bom); err != nil || bom.BOMFormat != "CycloneDX" {
			t.Fatalf("%s.sbom.json is not a CycloneDX document: %v", base, err)
		}
		seen := map[string]bool{}
		for _, c := range bom.Components {
			seen[c.Type+" "+c.Name] = true
		}
		for _, want := range []string{"application hostbridge-dhcp", "application lanwire", "library github.com/containernetworking/cni", "library stdlib"} {
			if !seen[want] {
				t.Errorf("%s.sbom.json lists no %s", base, want)
			}
		}
	}
}

// untar returns the regular files of a gzipped tar by name.
func untar(t *testing.T, tgz []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files[h.Name], _ = io.ReadAll(tr)
		}
	}
}
