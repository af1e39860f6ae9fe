package offimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Registry fetches manifests and blobs, with the usual Docker credentials
// (~/.docker/config.json and its credential helpers), token exchange and
// retries of go-containerregistry.
type Registry struct {
	// Keychain finds credentials; nil: authn.DefaultKeychain.
	Keychain authn.Keychain
	// Transport is the base HTTP transport; nil: http.DefaultTransport.
	Transport http.RoundTripper
	// Mirrors are registries that mirror Docker Hub ("host[:port]"), tried
	// in order before it for Docker Hub images.
	Mirrors []string
	// Allowed lists the registries images may come from; empty: any.
	Allowed []string
	// StallTimeout ends a blob download that receives nothing for this
	// long; 0: 30 s.
	StallTimeout time.Duration
	// UserAgent is sent to registries.
	UserAgent string

	mu    sync.Mutex
	trans map[string]http.RoundTripper // authenticated transports, by repository
}

// Errors a caller tells apart (the web service maps them to statuses).
var (
	ErrBadReference = errors.New("malformed image reference")
	ErrNotAllowed   = errors.New("registry not allowed")
	ErrNotFound     = errors.New("image not found")
	ErrPlatform     = errors.New("platform not in the image")
	ErrDigest       = errors.New("digest mismatch")
)

// DefaultPlatform is the platform of this machine.
func DefaultPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7"
	}
	return p
}

// ParsePlatform reads "os/arch[/variant]".
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm/v7", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return "(none given)"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func (r *Registry) keychain() authn.Keychain {
	if r.Keychain != nil {
		return r.Keychain
	}
	return authn.DefaultKeychain
}

func (r *Registry) base() http.RoundTripper {
	if r.Transport != nil {
		return r.Transport
	}
	return http.DefaultTransport
}

func (r *Registry) options(ctx context.Context) []remote.Option {
	o := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(r.keychain()), remote.WithTransport(r.base())}
	if r.UserAgent != "" {
		o = append(o, remote.WithUserAgent(r.UserAgent))
	}
	return o
}

// ParseRef parses an image reference and checks its registry is allowed.
func (r *Registry) ParseRef(s string) (name.Reference, error) {
	ref, err := name.ParseReference(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadReference, s, err)
	}
	if len(r.Allowed) > 0 {
		reg := ref.Context().RegistryStr()
		ok := false
		for _, a := range r.Allowed {
			if a == reg || (a == "docker.io" && reg == name.DefaultRegistry) {
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s (allowed: %s)", ErrNotAllowed, reg, strings.Join(r.Allowed, ", "))
		}
	}
	return ref, nil
}

// candidates are the references to try for ref: its mirrors first when
// it is a Docker Hub image, then ref itself.
func (r *Registry) candidates(ref name.Reference) []name.Reference {
	var out []name.Reference
	if ref.Context().RegistryStr() == name.DefaultRegistry {
		for _, m := range r.Mirrors {
			m = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(m, "https://"), "http://"), "/")
			s := m + "/" + ref.Context().RepositoryStr()
			if t, ok := ref.(name.Tag); ok {
				s += ":" + t.TagStr()
			} else {
				s += "@" + ref.Identifier()
			}
			if mr, err := name.ParseReference(s); err == nil {
				out = append(out, mr)
			}
		}
	}
	return append(out, ref)
}

// Head resolves ref to the digest of what it names now (an image or an
// index), without choosing a platform.
func (r *Registry) Head(ctx context.Context, ref name.Reference) (v1.Hash, error) {
	var last error
	for _, c := range r.candidates(ref) {
		d, err := remote.Get(c, r.options(ctx)...)
		if err == nil {
			return d.Digest, nil
		}
		last = err
	}
	return v1.Hash{}, describe(ref, last)
}

// Resolve fetches what ref names, picks the image for platform from an
// index (nil: this machine's), and fetches its manifest and config. tag,
// when not empty, names the image in the archive in place of ref's own
// tag (a download pinned to a digest keeps the tag it was asked by).
func (r *Registry) Resolve(ctx context.Context, ref name.Reference, platform *v1.Platform, tag string) (*Image, error) {
	var last error
	for _, c := range r.candidates(ref) {
		im, err := r.resolve(ctx, c, platform)
		if err == nil {
			if tag == "" {
				tag = tagName(ref)
			}
			im.Tag = tag
			return im, nil
		}
		if errors.Is(err, ErrPlatform) || errors.Is(err, ErrDigest) {
			return nil, err
		}
		last = err
	}
	return nil, describe(ref, last)
}

// describe turns a registry error into one a user can act on.
func describe(ref name.Reference, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s (the registry has no such repository or tag)", ErrNotFound, ref)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %s: the registry refused access (%v); log in with `docker login` or `podman login --authfile ~/.docker/config.json`", ErrNotFound, ref, te)
		}
	}
	return fmt.Errorf("fetching %s from %s: %w", ref, ref.Context().RegistryStr(), err)
}

func (r *Registry) resolve(ctx context.Context, ref name.Reference, platform *v1.Platform) (*Image, error) {
	d, err := remote.Get(ref, r.options(ctx)...)
	if err != nil {
		return nil, err
	}
	if d.MediaType.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(d.Manifest))
		if err != nil {
			return nil, fmt.Errorf("reading the index of %s: %w", ref, err)
		}
		want := platform
		if want == nil {
			p := DefaultPlatform()
			want = &p
		}
		child, err := pick(idx, want)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		if d, err = remote.Get(ref.Context().Digest(child.Digest.String()), r.options(ctx)...); err != nil {
			return nil, err
		}
		d.Descriptor.Platform = child.Platform
	}
	if !d.MediaType.IsImage() || d.MediaType.IsSchema1() {
		return nil, fmt.Errorf("%s is a %s, not an image manifest lanwire can save (Docker schema 2 or OCI)", ref, d.MediaType)
	}
	m, err := v1.ParseManifest(bytes.NewReader(d.Manifest))
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of %s: %w", ref, err)
	}
	im := &Image{Repo: ref.Context().Name(), Manifest: d.Manifest, Desc: d.Descriptor, ConfigDesc: m.Config, Layers: m.Layers}
	if m.Config.Size > 16<<20 {
		return nil, fmt.Errorf("%s: its config is %d bytes, more than an image config ever is", ref, m.Config.Size)
	}
	cfg, err := r.fetchAll(ctx, &Blob{Repo: im.Repo, Digest: m.Config.Digest, Size: m.Config.Size})
	if err != nil {
		return nil, fmt.Errorf("fetching the config of %s: %w", ref, err)
	}
	im.Config = cfg
	if got := configPlatform(cfg); platform != nil && got != nil && !matches(got, platform) {
		return nil, fmt.Errorf("%s: %w: %s asked for, the image is %s only", ref, ErrPlatform, platformString(platform), platformString(got))
	}
	return im, nil
}

// pick chooses the manifest for want from an index; the error lists the
// platforms there are.
func pick(idx *v1.IndexManifest, want *v1.Platform) (v1.Descriptor, error) {
	var have []string
	for _, m := range idx.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() {
			continue
		}
		if m.Platform.Architecture == "unknown" { // attestations
			continue
		}
		if matches(m.Platform, want) {
			return m, nil
		}
		have = append(have, platformString(m.Platform))
	}
	sort.Strings(have)
	return v1.Descriptor{}, fmt.Errorf("%w: %s asked for; the image has %s (choose one with --platform)", ErrPlatform, platformString(want), strings.Join(have, ", "))
}

// matches reports whether have satisfies want (a variant not asked for
// matches any).
func matches(have, want *v1.Platform) bool {
	return have.OS == want.OS && have.Architecture == want.Architecture &&
		(want.Variant == "" || have.Variant == want.Variant)
}

// tagName is how ref names the image in an archive: "busybox:latest" for
// Docker Hub's library images, "user/app:1" for its others, the full name
// elsewhere; empty for a digest.
func tagName(ref name.Reference) string {
	t, ok := ref.(name.Tag)
	if !ok {
		return ""
	}
	repo := t.Context().RepositoryStr()
	if t.Context().RegistryStr() == name.DefaultRegistry {
		return strings.TrimPrefix(repo, "library/") + ":" + t.TagStr()
	}
	return t.Context().RegistryStr() + "/" + repo + ":" + t.TagStr()
}

// transportFor is an authenticated transport for pulling from repo.
func (r *Registry) transportFor(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.trans[repo.Name()]; ok {
		return t, nil
	}
	auth, err := authn.Resolve(ctx, r.keychain(), repo)
	if err != nil {
		return nil, fmt.Errorf("finding credentials for %s: %w", repo, err)
	}
	base := transport.NewRetry(r.base())
	if r.UserAgent != "" {
		base = transport.NewUserAgent(base, r.UserAgent)
	}
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	if r.trans == nil {
		r.trans = map[string]http.RoundTripper{}
	}
	r.trans[repo.Name()] = t
	return t, nil
}

// Open returns bytes [from, to) of blob b, fetched with a ranged request
// unless it is the whole blob. A read that waits longer than the stall
// timeout fails; fewer or more bytes than asked for are an error.
func (r *Registry) Open(ctx context.Context, b *Blob, from, to int64) (io.ReadCloser, error) {
	repo, err := name.NewRepository(b.Repo)
	if err != nil {
		return nil, err
	}
	t, err := r.transportFor(ctx, repo)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), b.Digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	ranged := from > 0 || to < b.Size
	if ranged {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to-1))
	}
	stall := r.StallTimeout
	if stall <= 0 {
		stall = 30 * time.Second
	}
	timer := time.AfterFunc(stall, cancel)
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, fmt.Errorf("fetching blob %s: %w", b.Digest, err)
	}
	bb := &blobBody{stallReader: stallReader{r: resp.Body, timer: timer, stall: stall}, left: to - from, body: resp.Body, cancel: cancel, digest: b.Digest}
	fail := func(format string, a ...any) (io.ReadCloser, error) {
		bb.Close()
		return nil, fmt.Errorf("fetching blob %s: "+format, append([]any{b.Digest}, a...)...)
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && ranged:
		var start int64 = -1
		fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start)
		if start != from {
			return fail("asked for bytes from %d, the registry sent from %d", from, start)
		}
	case resp.StatusCode == http.StatusOK:
		if from > 0 { // the registry ignored the range: skip to it
			if _, err := io.CopyN(io.Discard, &bb.stallReader, from); err != nil {
				return fail("%w", err)
			}
		}
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fail("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return bb, nil
}

// stallReader resets the stall timer at each read.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	stall time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.stall)
	}
	return n, err
}

// blobBody is the body of one blob fetch: exactly left bytes.
type blobBody struct {
	stallReader
	left   int64
	body   io.Closer
	cancel context.CancelFunc
	digest v1.Hash
}

func (b *blobBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.stallReader.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		return n, fmt.Errorf("blob %s ended %d bytes early", b.digest, b.left)
	}
	if err != nil && err != io.EOF {
		if errors.Is(err, context.Canceled) {
			err = fmt.Errorf("the registry sent nothing for %s: %w", b.stall, err)
		}
		return n, fmt.Errorf("fetching blob %s: %w", b.digest, err)
	}
	if b.left == 0 {
		err = io.EOF
	}
	return n, err
}

func (b *blobBody) Close() error {
	b.timer.Stop()
	b.cancel()
	return b.body.Close()
}

// fetchAll fetches a small blob whole and checks its digest.
func (r *Registry) fetchAll(ctx context.Context, b *Blob) ([]byte, error) {
	rc, err := r.Open(ctx, b, 0, b.Size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	if err := check(b, data); err != nil {
		return nil, err
	}
	return data, nil
}

func check(b *Blob, data []byte) error {
	s := sha256.Sum256(data)
	if got := hex.EncodeToString(s[:]); b.Digest.Algorithm != "sha256" || got != b.Digest.Hex {
		return fmt.Errorf("%w: blob %s arrived as sha256:%s", ErrDigest, b.Digest, got)
	}
	return nil
}
