package integration

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// busyboxRootfs writes a root filesystem of busybox-static applets and a
// web page, as a tar, for runtimes to import (no registry is reached).
func busyboxRootfs(t testing.TB, dir, page string) string {
	t.Helper()
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static is not installed: `make deps` installs it")
	}
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "www"} {
		_ = os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755)
	for _, app := range []string{"sh", "wget", "httpd", "timeout", "ip", "cat", "sleep", "nc"} {
		_ = os.Symlink("busybox", filepath.Join(root, "bin", app))
	}
	_ = os.WriteFile(filepath.Join(root, "www", "index.html"), []byte(page+"\n"), 0o644)
	out := filepath.Join(dir, "rootfs.tar")
	if b, err := exec.Command("tar", "-C", root, "-cf", out, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, b)
	}
	return out
}

// ociArchive wraps a rootfs tar into an OCI image layout archive named
// ref, which `nerdctl load` (containerd import) accepts.
func ociArchive(t *testing.T, layerPath, out, ref string) {
	t.Helper()
	layer, err := os.ReadFile(layerPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + sum(layer)}}})
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sum(cfg), "size": len(cfg)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + sum(layer), "size": len(layer)}}})
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{
		"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + sum(man), "size": len(man),
		"annotations": map[string]string{"org.opencontainers.image.ref.name": "latest", "io.containerd.image.name": ref}}}})
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(b)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", idx)
	for _, b := range [][]byte{layer, cfg, man} {
		add("blobs/sha256/"+sum(b), b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
