package integration

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// imageRegistry is go-containerregistry's in-memory registry on loopback,
// holding what the offline-image tests fetch:
//   - busybox:latest, a real image: busybox-static with a web page (gzip), a
//     layer of incompressible data (uncompressed, LANWIRE_IMAGE_MB MiB, 200
//     by default) and a small one with /etc/motd;
//   - multi:latest, an index of a linux/amd64 and a linux/arm64 image;
//   - broken:latest, whose layer the registry serves with a byte changed;
//   - stall:latest, whose layer stops half-way and never ends.
type imageRegistry struct {
	host      string // 127.0.0.1:PORT
	arm64Cfg  v1.Hash
	bigMiB    int
	motd      string
	brokenDig v1.Hash
	stallDig  v1.Hash
}

func newImageRegistry(t *testing.T) *imageRegistry {
	t.Helper()
	return newImageRegistryOf(t, knob("LANWIRE_IMAGE_MB", 200))
}

// newImageRegistryOf is newImageRegistry with a big layer of mb MiB.
func newImageRegistryOf(t testing.TB, mb int) *imageRegistry {
	t.Helper()
	r := &imageRegistry{bigMiB: mb, motd: "carried offline by lanwire"}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		isBlob := func(repo string, d v1.Hash) bool {
			return req.Method == http.MethodGet && req.URL.Path == "/v2/"+repo+"/blobs/"+d.String()
		}
		switch {
		case r.brokenDig.Hex != "" && isBlob("broken", r.brokenDig):
			rec := httptest.NewRecorder()
			inner.ServeHTTP(rec, req)
			body := rec.Body.Bytes()
			if len(body) > 0 {
				body[len(body)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		case r.stallDig.Hex != "" && isBlob("stall", r.stallDig):
			rec := httptest.NewRecorder()
			inner.ServeHTTP(rec, req)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
			w.(http.Flusher).Flush()
			select { // and nothing more
			case <-req.Context().Done():
			case <-time.After(2 * time.Minute):
			}
		default:
			inner.ServeHTTP(w, req)
		}
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	rootfs := busyboxRootfs(t, dir, "hello from an offline image")
	base, err := tarball.LayerFromFile(rootfs, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, r.bigMiB<<20)
	_, _ = rand.Read(big)
	motd := tarOf(t, map[string][]byte{"etc/motd": []byte(r.motd + "\n")})
	img := image(t, "amd64", base, static.NewLayer(tarOf(t, map[string][]byte{"big.bin": big}), types.OCIUncompressedLayer),
		static.NewLayer(motd, types.OCIUncompressedLayer))
	r.push(t, "busybox:latest", img)

	amd := image(t, "amd64", base)
	arm := image(t, "arm64", static.NewLayer(tarOf(t, map[string][]byte{"arch": []byte("arm64\n")}), types.OCIUncompressedLayer))
	if r.arm64Cfg, err = arm.ConfigName(); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}})
	ref, _ := name.ParseReference(r.host + "/multi:latest")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("pushing the index: %v", err)
	}

	for _, bad := range []struct {
		repo string
		dig  *v1.Hash
		size int
	}{{"broken", &r.brokenDig, 1 << 20}, {"stall", &r.stallDig, 4 << 20}} {
		junk := make([]byte, bad.size)
		_, _ = rand.Read(junk)
		l := static.NewLayer(tarOf(t, map[string][]byte{"junk": junk}), types.OCIUncompressedLayer)
		d, _ := l.Digest()
		r.push(t, bad.repo+":latest", image(t, "amd64", base, l))
		*bad.dig = d
	}
	return r
}

func (r *imageRegistry) push(t testing.TB, repoTag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", repoTag, err)
	}
}

// image is an OCI image of layers for linux/arch that runs sh.
func image(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Cmd = []string{"sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

// tarOf is a tar of regular files.
func tarOf(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for n, data := range files {
		if dir := filepath.Dir(n); dir != "." {
			_ = tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Size: int64(len(data)), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(data)
	}
	_ = tw.Close()
	return b.Bytes()
}

func offlineImage() string { return plugin("offline-image") }

// saveImage runs `offline-image save ARGS...` and returns its exit code
// and stderr.
func saveImage(t *testing.T, stdout io.Writer, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(offlineImage(), append([]string{"save"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatalf("offline-image save: %v", err)
	}
	return 0, stderr.String()
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	_, _ = io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// legacyManifest reads manifest.json from an archive.
func legacyManifest(t *testing.T, path string) []struct {
	Config   string
	RepoTags []string
	Layers   []string
} {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json in %s: %v", path, err)
		}
		if h.Name == "manifest.json" {
			var m []struct {
				Config   string
				RepoTags []string
				Layers   []string
			}
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
}

// The saved tar is loaded by podman (and nerdctl) and runs on an offline
// network; the same bytes go to stdout with nothing written to disk.
func TestOfflineImageSaveLoadRun(t *testing.T) {
	t.Parallel()
	r := newImageRegistry(t)
	ref := r.host + "/busybox:latest"
	dir := t.TempDir()
	file := filepath.Join(dir, "busybox.tar")
	if code, stderr := saveImage(t, nil, ref, "-o", file); code != 0 {
		t.Fatalf("save -o: exit %d: %s", code, stderr)
	}
	m := legacyManifest(t, file)
	if len(m) != 1 || len(m[0].Layers) != 3 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != ref {
		t.Fatalf("manifest.json: %+v", m)
	}
	if st, _ := os.Stat(file); st.Size() < int64(r.bigMiB)<<20 {
		t.Fatalf("the archive is %d bytes, smaller than its big layer", st.Size())
	}

	t.Run("stdout, nothing on disk", func(t *testing.T) {
		cwd, tmp := t.TempDir(), t.TempDir()
		cmd := exec.Command(offlineImage(), "save", ref, "-o", "-")
		cmd.Dir, cmd.Env = cwd, append(os.Environ(), "TMPDIR="+tmp)
		h := sha256.New()
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = h, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("save -o -: %v %s", err, stderr.String())
		}
		if got, want := hex.EncodeToString(h.Sum(nil)), sha256File(t, file); got != want {
			t.Errorf("stdout's archive differs from the file's: sha256 %s, %s", got, want)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); !ok || ru.Oublock != 0 {
			t.Errorf("save -o - wrote to disk: %+v", cmd.ProcessState.SysUsage())
		}
		for _, d := range []string{cwd, tmp} {
			if es, _ := os.ReadDir(d); len(es) != 0 {
				t.Errorf("save -o - left files in %s: %v", d, es)
			}
		}
	})
	t.Run("skopeo", func(t *testing.T) {
		needTool(t, "skopeo", "`make deps` installs it (apt-get install skopeo)")
		for _, tr := range []string{"docker-archive:", "oci-archive:"} {
			out, err := exec.Command("skopeo", "inspect", tr+file).CombinedOutput()
			if err != nil || !strings.Contains(string(out), `"Architecture": "amd64"`) {
				t.Errorf("skopeo inspect %s: %v %s", tr, err, out)
			}
		}
	})
	t.Run("podman load and run offline", func(t *testing.T) {
		g := newOfflineGround(t, "2m")
		netDir, name, plainNet := g.runtimeNetwork(t, "imgoff")
		p := newPodman(t, netDir)
		if out, err := p.run("load", "-i", file); err != nil || !strings.Contains(out, ref) {
			t.Fatalf("podman load: %v %s", err, out)
		}
		if out, err := p.run("run", "--rm", "--network", "none", ref, "cat", "/etc/motd", "/www/index.html"); err != nil ||
			!strings.Contains(out, r.motd) || !strings.Contains(out, "hello from an offline image") {
			t.Fatalf("the loaded image's files: %v %s", err, out)
		}
		if out, err := p.run("run", "--rm", "--network", "none", ref, "/bin/busybox", "wc", "-c", "/big.bin"); err != nil ||
			!strings.Contains(out, strconv.Itoa(r.bigMiB<<20)) {
			t.Errorf("the big layer's file: %v %s", err, out)
		}
		ctr, plain := "img"+g.lan.ID, "imgplain"+g.lan.ID
		for c, n := range map[string]string{ctr: name, plain: plainNet} {
			if out, err := p.run("run", "-d", "--name", c, "--network", n, ref, "sleep", "600"); err != nil {
				t.Fatalf("podman run --network %s: %v %s", n, err, out)
			}
		}
		if out, err := greets(p.run, ctr, g.lan.HostAddr, "8000"); err != nil {
			t.Errorf("the offline container cannot reach the host mirror: %v %s", err, out)
		}
		runtimeBlocked(t, p.run, plain, ctr, [][2]string{{g.lan.Internet, "80"}})
	})
	t.Run("nerdctl load", func(t *testing.T) {
		n := newNerdctl(t, t.TempDir())
		if out, err := n.run("load", "-i", file); err != nil {
			t.Fatalf("nerdctl load: %v %s", err, out)
		}
		if out, err := n.run("run", "--rm", "--net", "none", ref, "cat", "/etc/motd"); err != nil || !strings.Contains(out, r.motd) {
			t.Errorf("nerdctl run of the loaded image: %v %s", err, out)
		}
	})
}

// freePort is a loopback port no one listens on now.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// imageServer runs `offline-image serve` on addr until stopped.
type imageServer struct {
	t    testing.TB
	addr string
	args []string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func startImageServer(t testing.TB, args ...string) *imageServer {
	t.Helper()
	s := &imageServer{t: t, addr: freePort(t), args: args, log: &bytes.Buffer{}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *imageServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(offlineImage(), append([]string{"serve", "--listen", s.addr}, s.args...)...)
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	waitFor(s.t, 5*time.Second, "offline-image serve to listen", func() bool {
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (s *imageServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// A download through serve is the same archive as save's, with its length
// and name up front; cut at three random offsets and resumed with Range,
// across restarts of serve, it is byte-identical to one uninterrupted
// download. A corrupted blob cuts the download short.
func TestOfflineImageServe(t *testing.T) {
	t.Parallel()
	r := newImageRegistry(t)
	ref := r.host + "/busybox:latest"
	s := startImageServer(t)
	base := "http://" + s.addr

	saved := sha256.New()
	if code, stderr := saveImage(t, saved, ref); code != 0 {
		t.Fatalf("save: exit %d: %s", code, stderr)
	}
	resp, err := http.Get(base + "/save?ref=" + ref)
	if err != nil {
		t.Fatal(err)
	}
	whole := sha256.New()
	n, err := io.Copy(whole, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || n != resp.ContentLength {
		t.Fatalf("download: status %s, %d of %d bytes, %v\n%s", resp.Status, n, resp.ContentLength, err, s.log)
	}
	if got, want := hex.EncodeToString(whole.Sum(nil)), hex.EncodeToString(saved.Sum(nil)); got != want {
		t.Errorf("serve's archive differs from save's: %s, %s", got, want)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, `filename="busybox_latest`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	etag, pinned := resp.Header.Get("ETag"), resp.Request.URL.String()
	if etag == "" || !strings.Contains(pinned, "sha256") {
		t.Errorf("ETag %q, final URL %s: want an ETag and a URL pinned to the digest", etag, pinned)
	}

	// Cut at three random offsets, resumed after a restart each time.
	size := n
	var cuts []int64
	for len(cuts) < 3 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c := int64(uint64(b[0])|uint64(b[1])<<8|uint64(b[2])<<16|uint64(b[3])<<24) % size
		if c > 0 && (len(cuts) == 0 || c > cuts[len(cuts)-1]) {
			cuts = append(cuts, c)
		} else if len(cuts) > 0 && c < cuts[0] {
			cuts = append([]int64{c}, cuts...)
		}
	}
	got := sha256.New()
	off := int64(0)
	for i := 0; i <= len(cuts); i++ {
		req, _ := http.NewRequest(http.MethodGet, pinned, nil)
		if off > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
			req.Header.Set("If-Range", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if off > 0 && (resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", off, size-1, size))) {
			t.Fatalf("resume at %d: %s, Content-Range %q", off, resp.Status, resp.Header.Get("Content-Range"))
		}
		want := size - off
		if i < len(cuts) {
			want = cuts[i] - off
		}
		k, err := io.CopyN(got, resp.Body, want)
		resp.Body.Close() // the cut
		if err != nil {
			t.Fatalf("segment at %d: %d of %d bytes: %v\n%s", off, k, want, err, s.log)
		}
		off += k
		s.stop()
		s.start()
	}
	if hex.EncodeToString(got.Sum(nil)) != hex.EncodeToString(whole.Sum(nil)) {
		t.Errorf("the download resumed at %v differs from the whole one", cuts)
	}

	t.Run("corrupted blob cuts the download", func(t *testing.T) {
		resp, err := http.Get(base + "/save?ref=" + r.host + "/broken:latest")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil || n >= resp.ContentLength {
			t.Errorf("the download of a corrupted image was whole: %d of %d bytes, %v", n, resp.ContentLength, err)
		}
		waitFor(t, 5*time.Second, "the cut in serve's log", func() bool { return strings.Contains(s.log.String(), "digest mismatch") })
		if resp, err := http.Get(base + "/save?ref=" + r.host + "/multi:latest&platform=linux/arm64"); err != nil || resp.StatusCode != 200 {
			t.Errorf("serve after a cut download: %v %v", resp, err)
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		for q, want := range map[string]int{
			"ref=" + r.host + "/nothing:latest":                  404,
			"ref=" + r.host + "/multi:latest&platform=linux/ppc": 400,
			"ref=Bad::Ref": 400,
		} {
			resp, err := http.Get(base + "/save?" + q)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s: %s %s, want %d", q, resp.Status, body, want)
			}
		}
		a := startImageServer(t, "--allow-registry", "registry.example:5000")
		resp, err := http.Get("http://" + a.addr + "/save?ref=" + ref)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a registry not in --allow-registry: %s, want 403", resp.Status)
		}
	})
	if !strings.Contains(s.log.String(), "download ref=") {
		t.Errorf("serve logged no download line:\n%s", s.log)
	}
}

// Platforms, and what goes wrong: each a non-zero exit with a message that
// says what, and no file left behind.
func TestOfflineImageSaveErrors(t *testing.T) {
	t.Parallel()
	r := newImageRegistry(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "out.tar")
	if code, stderr := saveImage(t, nil, r.host+"/multi:latest", "--platform", "linux/arm64", "-o", file); code != 0 {
		t.Fatalf("save --platform linux/arm64: exit %d %s", code, stderr)
	}
	if m := legacyManifest(t, file); m[0].Config != "blobs/sha256/"+r.arm64Cfg.Hex {
		t.Errorf("--platform linux/arm64 saved config %s, want %s", m[0].Config, r.arm64Cfg)
	}
	os.Remove(file)
	for _, c := range []struct {
		what string
		args []string
		want string
	}{
		{"unknown image", []string{r.host + "/nothing:latest"}, "not found"},
		{"unknown platform", []string{r.host + "/multi:latest", "--platform", "linux/s390x"}, "linux/amd64, linux/arm64/v8"},
		{"malformed reference", []string{"Bad::Ref"}, "malformed image reference"},
		{"registry down", []string{freePort(t) + "/busybox:latest"}, "connection refused"},
		{"corrupted blob", []string{r.host + "/broken:latest"}, "digest mismatch"},
		{"stalled registry", []string{r.host + "/stall:latest", "--stall-timeout", "2s"}, "sent nothing for 2s"},
	} {
		code, stderr := saveImage(t, nil, append(c.args, "-o", file)...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q, want non-zero and %q", c.what, code, stderr, c.want)
		}
		if es, _ := os.ReadDir(dir); len(es) != 0 {
			t.Errorf("%s: left %v", c.what, es)
			for _, e := range es {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}
