package offimage

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Server is the web service: a form, and GET /save?ref=...&platform=...
// answering the archive as a download, with Content-Length up front and
// Range requests answered from the blobs' parts.
type Server struct {
	Reg *Registry
	// Max is how many downloads may run at once (more get 503 with
	// Retry-After); 0: 4.
	Max int
	// VerifyPrefix is Reader.VerifyPrefix for resumed downloads; 0: 64 MiB.
	VerifyPrefix int64
	Log          *log.Logger

	slots chan struct{}
}

var page = template.Must(template.New("form").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>offline-image</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}input{font-size:1em;margin:.2em 0;width:100%}</style></head>
<body><h1>Image for an offline network</h1>
<p>One tar that <code>docker load</code>, <code>podman load</code> and <code>nerdctl load</code> read
(a docker-save archive and an OCI image layout in one). It streams as it is fetched, and a broken
download resumes where it stopped.</p>
<form method="get" action="save">
<label>Image <input name="ref" placeholder="busybox:latest" required autofocus></label>
<label>Platform <input name="platform" value="{{.}}"></label>
<input type="submit" value="Download">
</form></body></html>
`))

func (s *Server) logf(format string, args ...any) {
	if s.Log != nil {
		s.Log.Printf(format, args...)
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		p := DefaultPlatform()
		_ = page.Execute(w, platformString(&p))
	case "/save":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "GET or HEAD", http.StatusMethodNotAllowed)
			return
		}
		s.save(w, r)
	default:
		http.NotFound(w, r)
	}
}

// status maps an error to an HTTP status.
func status(err error) int {
	switch {
	case errors.Is(err, ErrBadReference), errors.Is(err, ErrPlatform):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotAllowed):
		return http.StatusForbidden
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, ref string, err error) {
	s.logf("download %q for %s failed before the first byte: %v", ref, r.RemoteAddr, err)
	http.Error(w, err.Error(), status(err))
}

func (s *Server) save(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	refStr := q.Get("ref")
	if refStr == "" {
		http.Error(w, "ref is missing: /save?ref=busybox:latest[&platform=linux/amd64]", http.StatusBadRequest)
		return
	}
	var platform *v1.Platform
	if ps := q.Get("platform"); ps != "" {
		p, err := ParsePlatform(ps)
		if err != nil {
			s.fail(w, r, refStr, fmt.Errorf("%w: %v", ErrBadReference, err))
			return
		}
		platform = &p
	}
	ref, err := s.Reg.ParseRef(refStr)
	if err != nil {
		s.fail(w, r, refStr, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	// A tag moves: the download is pinned to what it names now, so that a
	// resumed download gets the same bytes (the tag stays in the archive).
	if t, ok := ref.(name.Tag); ok {
		d, err := s.Reg.Head(ctx, ref)
		if err != nil {
			s.fail(w, r, refStr, err)
			return
		}
		v := url.Values{"ref": {t.Context().Name() + "@" + d.String()}, "tag": {tagName(t)}}
		if platform != nil {
			v.Set("platform", platformString(platform))
		}
		http.Redirect(w, r, "save?"+v.Encode(), http.StatusFound)
		return
	}
	if s.slots == nil {
		http.Error(w, "server not started with Start", http.StatusInternalServerError)
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("%d downloads are running, the most this server takes: try again shortly", cap(s.slots)), http.StatusServiceUnavailable)
		return
	}
	start := time.Now()
	im, err := s.Reg.Resolve(ctx, ref, platform, q.Get("tag"))
	if err != nil {
		s.fail(w, r, refStr, err)
		return
	}
	cancel() // the download itself runs as long as the client reads
	plan, err := NewPlan([]*Image{im})
	if err != nil {
		s.fail(w, r, refStr, err)
		return
	}
	prefix := s.VerifyPrefix
	if prefix == 0 {
		prefix = 64 << 20
	}
	var unverified []string
	rd := &Reader{Ctx: r.Context(), Plan: plan, Src: s.Reg, VerifyPrefix: prefix,
		Unverified: func(b *Blob, from, to int64) {
			unverified = append(unverified, fmt.Sprintf("%s[%d:%d]", b.Digest.Hex[:12], from, to))
		}}
	defer rd.Close()
	h := w.Header()
	h.Set("Content-Type", "application/x-tar")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", FileName(im, platform)))
	h.Set("ETag", plan.ETag)
	h.Set("Docker-Content-Digest", im.Desc.Digest.String())
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", time.Time{}, rd)
	secs := time.Since(start).Seconds()
	outcome := "complete"
	if err := rd.Err(); err != nil {
		outcome = "cut: " + err.Error()
	} else if rng := r.Header.Get("Range"); rng != "" {
		outcome = "range " + rng
	}
	if len(unverified) > 0 {
		outcome += "; sent unchecked (resumed mid-blob): " + strings.Join(unverified, " ")
	}
	s.logf("download ref=%s digest=%s bytes=%d seconds=%.1f client=%s %s", refStr, im.Desc.Digest, cw.n, secs, r.RemoteAddr, outcome)
}

// Start prepares the server's download slots.
func (s *Server) Start() {
	n := s.Max
	if n <= 0 {
		n = 4
	}
	s.slots = make(chan struct{}, n)
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// FileName is a download's file name: the image's name and tag (or short
// digest) and platform, "busybox_latest-linux-amd64.tar".
func FileName(im *Image, platform *v1.Platform) string {
	base := im.Tag
	if base == "" {
		base = im.Repo[strings.LastIndex(im.Repo, "/")+1:] + "_" + im.Desc.Digest.Hex[:12]
	} else {
		base = base[strings.LastIndex(base, "/")+1:]
	}
	if p := im.Desc.Platform; p != nil {
		base += "-" + platformString(p)
	} else if platform != nil {
		base += "-" + platformString(platform)
	}
	return strings.Trim(unsafeName.ReplaceAllString(base, "_"), "_") + ".tar"
}
