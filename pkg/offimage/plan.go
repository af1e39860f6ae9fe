// Package offimage turns registry images into one tar that is both a
// `docker save` archive (manifest.json, repositories) and an OCI image
// layout (oci-layout, index.json, blobs/sha256/...), as Docker 25+ writes
// it, streamed as it is fetched. The tar's layout is fixed by the images'
// manifests alone (fixed order, zero times, sizes from the manifests), so
// its length is known before the first byte and any byte range of it maps
// to parts of known blobs: a download can resume anywhere, in another run.
package offimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Image is one image of an archive: its manifest and config (small, held
// in memory) and its layers (streamed from Repo).
type Image struct {
	// Repo is where the blobs are fetched from ("registry/path").
	Repo string
	// Tag names the image in the archive ("busybox:latest", or a full
	// name for other registries); empty for an image asked for by digest.
	Tag string
	// Manifest is the image manifest as the registry serves it, and Desc
	// its descriptor (media type, digest, size, platform).
	Manifest []byte
	Desc     v1.Descriptor
	// Config is the image's configuration blob.
	Config     []byte
	ConfigDesc v1.Descriptor
	// Layers are the layer blobs, in order.
	Layers []v1.Descriptor
}

// Part is one stretch of the archive: literal bytes (tar headers,
// padding, small files) or a blob fetched from a repository.
type Part struct {
	Off  int64
	Len  int64
	Data []byte // literal bytes, or nil for a blob
	Blob *Blob
}

// Blob is a blob of a repository, checked against Digest as it streams.
type Blob struct {
	Repo   string
	Digest v1.Hash
	Size   int64
	Layer  int // 1-based number among the archive's layers (0: not a layer)
}

// Plan is the archive's layout.
type Plan struct {
	Images []*Image
	Parts  []Part
	Size   int64
	Layers int // layer blobs in the archive
	// ETag identifies the archive's bytes (the same plan, the same bytes).
	ETag string
}

const block = 512

func pad(n int64) int64 { return (block - n%block) % block }

// header is the tar header of a regular file or directory: ustar, owner
// root, mode 0644 (0755 for directories), time zero.
func header(name string, size int64, dir bool) []byte {
	h := &tar.Header{Name: name, Size: size, Mode: 0o644, Typeflag: tar.TypeReg,
		ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
	if dir {
		h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(h); err != nil {
		panic(fmt.Sprintf("tar header for %s: %v", name, err)) // names are ours and short
	}
	return b.Bytes()[:block]
}

// builder appends parts at increasing offsets.
type builder struct{ p *Plan }

func (b builder) literal(d []byte) {
	if len(d) == 0 {
		return
	}
	// Adjacent literals merge into one part.
	if n := len(b.p.Parts); n > 0 && b.p.Parts[n-1].Blob == nil {
		last := &b.p.Parts[n-1]
		last.Data = append(last.Data, d...)
		last.Len += int64(len(d))
	} else {
		b.p.Parts = append(b.p.Parts, Part{Off: b.p.Size, Len: int64(len(d)), Data: append([]byte(nil), d...)})
	}
	b.p.Size += int64(len(d))
}

func (b builder) file(name string, data []byte) {
	b.literal(header(name, int64(len(data)), false))
	b.literal(data)
	b.literal(make([]byte, pad(int64(len(data)))))
}

func (b builder) blob(bl *Blob) {
	b.literal(header("blobs/sha256/"+bl.Digest.Hex, bl.Size, false))
	if bl.Size > 0 {
		b.p.Parts = append(b.p.Parts, Part{Off: b.p.Size, Len: bl.Size, Blob: bl})
		b.p.Size += bl.Size
	}
	b.literal(make([]byte, pad(bl.Size)))
}

// NewPlan lays out the archive of images: the small files first
// (oci-layout, index.json, manifest.json, repositories), then each blob
// once, in the images' order (manifest, config, layers), then the two
// zero blocks that end a tar.
func NewPlan(images []*Image) (*Plan, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("no image to save")
	}
	p := &Plan{Images: images}
	index, manifest, repos, err := metadata(images)
	if err != nil {
		return nil, err
	}
	b := builder{p}
	b.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	b.file("index.json", index)
	b.file("manifest.json", manifest)
	b.file("repositories", repos)
	b.literal(header("blobs/", 0, true))
	b.literal(header("blobs/sha256/", 0, true))
	seen := map[v1.Hash]bool{}
	for _, im := range images {
		for _, small := range []struct {
			d    v1.Descriptor
			data []byte
		}{{im.Desc, im.Manifest}, {im.ConfigDesc, im.Config}} {
			if seen[small.d.Digest] {
				continue
			}
			seen[small.d.Digest] = true
			b.file("blobs/sha256/"+small.d.Digest.Hex, small.data)
		}
		for _, l := range im.Layers {
			if seen[l.Digest] {
				continue
			}
			seen[l.Digest] = true
			p.Layers++
			b.blob(&Blob{Repo: im.Repo, Digest: l.Digest, Size: l.Size, Layer: p.Layers})
		}
	}
	b.literal(make([]byte, 2*block))
	sum := sha256.New()
	for _, part := range p.Parts {
		if part.Blob != nil {
			fmt.Fprintf(sum, "blob %s %d\n", part.Blob.Digest, part.Len)
		} else {
			sum.Write(part.Data)
		}
	}
	p.ETag = `"` + hex.EncodeToString(sum.Sum(nil))[:32] + `"`
	return p, nil
}

// metadata renders index.json (OCI), manifest.json and repositories
// (docker save) for images.
func metadata(images []*Image) (index, manifest, repos []byte, err error) {
	type legacy struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var idx v1.IndexManifest
	idx.SchemaVersion = 2
	idx.MediaType = "application/vnd.oci.image.index.v1+json"
	var man []legacy
	rep := map[string]map[string]string{}
	for _, im := range images {
		d := v1.Descriptor{MediaType: im.Desc.MediaType, Digest: im.Desc.Digest, Size: int64(len(im.Manifest)), Platform: platformOf(im)}
		l := legacy{Config: "blobs/sha256/" + im.ConfigDesc.Digest.Hex}
		for _, ld := range im.Layers {
			l.Layers = append(l.Layers, "blobs/sha256/"+ld.Digest.Hex)
		}
		if im.Tag != "" {
			d.Annotations = map[string]string{
				"io.containerd.image.name":          fullName(im.Tag),
				"org.opencontainers.image.ref.name": tagOf(im.Tag),
			}
			l.RepoTags = []string{im.Tag}
			if len(im.Layers) > 0 {
				repo := im.Tag[:strings.LastIndex(im.Tag, ":")]
				if rep[repo] == nil {
					rep[repo] = map[string]string{}
				}
				rep[repo][tagOf(im.Tag)] = im.Layers[len(im.Layers)-1].Digest.Hex
			}
		}
		idx.Manifests = append(idx.Manifests, d)
		man = append(man, l)
	}
	if index, err = json.Marshal(idx); err != nil {
		return nil, nil, nil, err
	}
	if manifest, err = json.Marshal(man); err != nil {
		return nil, nil, nil, err
	}
	repos, err = json.Marshal(rep)
	return index, manifest, repos, err
}

// platformOf is the image's platform: from the index it was picked from,
// else from its config.
func platformOf(im *Image) *v1.Platform {
	if im.Desc.Platform != nil {
		return im.Desc.Platform
	}
	return configPlatform(im.Config)
}

// configPlatform is the platform an image config names, nil when it names
// none.
func configPlatform(cfg []byte) *v1.Platform {
	var c struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	if json.Unmarshal(cfg, &c) != nil || c.OS == "" || c.Architecture == "" {
		return nil
	}
	return &v1.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant}
}

// tagOf is the tag of "name:tag".
func tagOf(nameTag string) string { return nameTag[strings.LastIndex(nameTag, ":")+1:] }

// fullName is "name:tag" with Docker Hub's implicit parts written out, as
// containerd names images ("busybox:1" is "docker.io/library/busybox:1").
func fullName(nameTag string) string {
	first, _, found := strings.Cut(nameTag, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return nameTag
	}
	if !found {
		return "docker.io/library/" + nameTag
	}
	return "docker.io/" + nameTag
}

// Find returns the index of the part holding offset off.
func (p *Plan) Find(off int64) int {
	lo, hi := 0, len(p.Parts)
	for lo < hi {
		mid := (lo + hi) / 2
		if p.Parts[mid].Off+p.Parts[mid].Len <= off {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
