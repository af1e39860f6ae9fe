package offimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// memBlobs serves blobs from memory, counting the bytes it sends.
type memBlobs struct {
	blobs map[v1.Hash][]byte
	sent  int64
}

func (m *memBlobs) Open(_ context.Context, b *Blob, from, to int64) (io.ReadCloser, error) {
	d, ok := m.blobs[b.Digest]
	if !ok {
		return nil, fmt.Errorf("no blob %s", b.Digest)
	}
	m.sent += to - from
	return io.NopCloser(bytes.NewReader(d[from:to])), nil
}

func digest(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// testImages makes two images sharing a layer, and the blob store.
func testImages() ([]*Image, *memBlobs) {
	m := &memBlobs{blobs: map[v1.Hash][]byte{}}
	layer := func(n int, seed int64) v1.Descriptor {
		b := randomBytes(n, seed)
		d := digest(b)
		m.blobs[d] = b
		return v1.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: d, Size: int64(n)}
	}
	shared := layer(70000, 1)
	mk := func(tag string, layers ...v1.Descriptor) *Image {
		cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q}`, tag))
		man := []byte(fmt.Sprintf(`{"schemaVersion":2,"tag":%q}`, tag))
		return &Image{Repo: "registry.test/" + tag, Tag: tag, Manifest: man,
			Desc:   v1.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest(man), Size: int64(len(man))},
			Config: cfg, ConfigDesc: v1.Descriptor{Digest: digest(cfg), Size: int64(len(cfg))}, Layers: layers}
	}
	return []*Image{mk("one:1", shared, layer(1000, 2), layer(512, 3)), mk("two:2", shared, layer(0, 4))}, m
}

func readAll(t *testing.T, p *Plan, src Opener) []byte {
	t.Helper()
	b, err := io.ReadAll(&Reader{Plan: p, Src: src, VerifyPrefix: -1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPlanIsATar(t *testing.T) {
	images, blobs := testImages()
	p, err := NewPlan(images)
	if err != nil {
		t.Fatal(err)
	}
	data := readAll(t, p, blobs)
	if int64(len(data)) != p.Size {
		t.Fatalf("read %d bytes, the plan says %d", len(data), p.Size)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	files := map[string][]byte{}
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.ModTime.Unix() != 0 || h.Uid != 0 {
			t.Errorf("%s: mtime %v uid %d, want zero", h.Name, h.ModTime, h.Uid)
		}
		b, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		files[h.Name] = b
	}
	want := []string{"oci-layout", "index.json", "manifest.json", "repositories", "blobs/", "blobs/sha256/"}
	for i, n := range want {
		if i >= len(names) || names[i] != n {
			t.Fatalf("entries start %v, want %v", names, want)
		}
	}
	// Each blob once, under its digest.
	seen := map[string]bool{}
	for _, n := range names[len(want):] {
		if seen[n] {
			t.Errorf("%s twice", n)
		}
		seen[n] = true
		if got := digest(files[n]).Hex; "blobs/sha256/"+got != n {
			t.Errorf("%s holds sha256:%s", n, got)
		}
	}
	if len(seen) != 2*2+4 { // 2 manifests, 2 configs, 4 distinct layers
		t.Errorf("%d blobs, want 8: %v", len(seen), names)
	}
	var legacy []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &legacy); err != nil || len(legacy) != 2 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
	}
	for _, l := range append([]string{legacy[0].Config, legacy[1].Config}, append(legacy[0].Layers, legacy[1].Layers...)...) {
		if !seen[l] {
			t.Errorf("manifest.json names %s, not in the tar", l)
		}
	}
	if legacy[1].RepoTags[0] != "two:2" {
		t.Errorf("RepoTags %v", legacy[1].RepoTags)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	if a := idx.Manifests[0].Annotations; a["io.containerd.image.name"] != "docker.io/library/one:1" || a["org.opencontainers.image.ref.name"] != "1" {
		t.Errorf("annotations %v", a)
	}
	// The same images, the same bytes and tag.
	p2, _ := NewPlan(images)
	if !bytes.Equal(readAll(t, p2, blobs), data) || p2.ETag != p.ETag {
		t.Error("two plans of the same images differ")
	}
}

// Any range, read after a Seek, is the same bytes as in the whole archive,
// and fetches at most the blob parts it needs (plus a checked prefix).
func TestPlanRanges(t *testing.T) {
	images, blobs := testImages()
	p, _ := NewPlan(images)
	whole := readAll(t, p, blobs)
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 200; i++ {
		a := rng.Int63n(p.Size)
		b := a + rng.Int63n(p.Size-a) + 1
		for _, prefix := range []int64{-1, 0, 100} {
			r := &Reader{Plan: p, Src: blobs, VerifyPrefix: prefix}
			if _, err := r.Seek(a, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, b-a)
			if _, err := io.ReadFull(r, got); err != nil {
				t.Fatalf("[%d,%d) prefix %d: %v", a, b, prefix, err)
			}
			r.Close()
			if !bytes.Equal(got, whole[a:b]) {
				t.Fatalf("[%d,%d) prefix %d differs from the whole archive", a, b, prefix)
			}
		}
	}
	// A range that starts deep in a blob, with no checked prefix, fetches
	// from there and says so.
	part := p.Parts[p.Find(p.Size/2)]
	if part.Blob == nil {
		t.Skip("middle is not a blob")
	}
	blobs.sent = 0
	var told []string
	r := &Reader{Plan: p, Src: blobs, VerifyPrefix: 0, Unverified: func(b *Blob, from, to int64) { told = append(told, fmt.Sprint(from)) }}
	off := part.Off + part.Len/2
	r.Seek(off, io.SeekStart)
	if _, err := io.ReadFull(r, make([]byte, part.Off+part.Len-off)); err != nil {
		t.Fatal(err)
	}
	if blobs.sent != part.Off+part.Len-off || len(told) != 1 {
		t.Errorf("fetched %d bytes (want %d), told %v", blobs.sent, part.Off+part.Len-off, told)
	}
}

// A blob whose bytes do not match its digest cuts the archive before the
// blob's end: never a whole, wrong file.
func TestPlanCutOnDigestMismatch(t *testing.T) {
	images, blobs := testImages()
	p, _ := NewPlan(images)
	bad := images[0].Layers[1].Digest
	blobs.blobs[bad] = append([]byte(nil), blobs.blobs[bad]...)
	blobs.blobs[bad][10] ^= 1
	got, err := io.ReadAll(&Reader{Plan: p, Src: blobs, VerifyPrefix: -1})
	if !errors.Is(err, ErrDigest) {
		t.Fatalf("err %v, want a digest mismatch", err)
	}
	var end int64
	for _, part := range p.Parts {
		if part.Blob != nil && part.Blob.Digest == bad {
			end = part.Off + part.Len
		}
	}
	if int64(len(got)) >= end {
		t.Errorf("read %d bytes, the bad blob ends at %d: it was handed out whole", len(got), end)
	}
	// Resumed in the middle of it (a checked prefix): the same.
	r := &Reader{Plan: p, Src: blobs, VerifyPrefix: -1}
	r.Seek(end-5, io.SeekStart)
	if _, err := io.ReadAll(r); !errors.Is(err, ErrDigest) {
		t.Errorf("resumed mid-blob: err %v, want a digest mismatch", err)
	}
}

func TestFullName(t *testing.T) {
	for in, want := range map[string]string{
		"busybox:1":                "docker.io/library/busybox:1",
		"user/app:2":               "docker.io/user/app:2",
		"quay.io/x/y:3":            "quay.io/x/y:3",
		"127.0.0.1:5000/busybox:4": "127.0.0.1:5000/busybox:4",
		"localhost/app:5":          "localhost/app:5",
	} {
		if got := fullName(in); got != want {
			t.Errorf("fullName(%q) = %q, want %q", in, got, want)
		}
	}
}
