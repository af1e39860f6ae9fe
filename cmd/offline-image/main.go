// Command offline-image carries registry images into offline networks: it
// streams images into one tar that docker, podman and nerdctl load (a
// docker-save archive and an OCI image layout in one), from the command
// line or from a small web service a browser downloads from.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/pkg/cli"
	"github.com/lanwire/lanwire/pkg/install"
	"github.com/lanwire/lanwire/pkg/offimage"
)

const usage = `offline-image: registry images into one tar for offline networks

  offline-image save REF... [-o FILE|-] [--platform OS/ARCH[/VARIANT]] [--registry-mirror HOST]...
      REF is an image reference (busybox:latest, registry.example/app@sha256:...). The tar goes
      to FILE (written whole or not at all) or, with -o - or no -o, to stdout. docker load,
      podman load, nerdctl load and ctr images import read it.
  offline-image serve --listen ADDR [--allow-registry HOST]... [--max-downloads N]
                      [--registry-mirror HOST]... [--stall-timeout 30s]
      A web page with one form, and GET /save?ref=REF[&platform=P] answering the tar as a
      download that resumes (HTTP Range) where it broke, across server restarts too.
      Without --allow-registry every registry may be asked for.
  offline-image version

Credentials: ~/.docker/config.json and its credential helpers (docker login).
`

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// parseInterleaved parses flags that may come before, between or after
// the positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "save":
		code = save(os.Args[2:])
	case "serve":
		code = serve(os.Args[2:])
	case "version", "--version":
		fmt.Println("offline-image", cli.Version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "offline-image: unknown command %q\n\n%s", os.Args[1], usage)
		code = 2
	}
	os.Exit(code)
}

func registry(mirrors []string, stall time.Duration) *offimage.Registry {
	return &offimage.Registry{Mirrors: mirrors, StallTimeout: stall, UserAgent: "lanwire-offline-image/" + cli.Version}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func save(args []string) int {
	fs := flag.NewFlagSet("save", flag.ContinueOnError)
	out := fs.String("o", "-", "output file, - for stdout")
	plat := fs.String("platform", "", "platform to pick from a multi-platform image (default: this machine's)")
	stall := fs.Duration("stall-timeout", 30*time.Second, "give up on a registry that sends nothing for this long")
	var mirrors stringList
	fs.Var(&mirrors, "registry-mirror", "a Docker Hub mirror to try first (repeatable)")
	refs, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(refs) == 0 {
		fmt.Fprint(os.Stderr, "offline-image save: no image given\n\n"+usage)
		return 2
	}
	var platform *v1.Platform
	if *plat != "" {
		p, err := offimage.ParsePlatform(*plat)
		if err != nil {
			fmt.Fprintln(os.Stderr, "offline-image save:", err)
			return 2
		}
		platform = &p
	}
	if *out == "-" && isTerminal(os.Stdout) {
		fmt.Fprintln(os.Stderr, "offline-image save: not writing a tar to a terminal: give -o FILE or redirect stdout")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg := registry(mirrors, *stall)
	var images []*offimage.Image
	for _, s := range refs {
		ref, err := reg.ParseRef(s)
		if err == nil {
			var im *offimage.Image
			if im, err = reg.Resolve(ctx, ref, platform, ""); err == nil {
				images = append(images, im)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "offline-image save:", err)
			return 1
		}
	}
	plan, err := offimage.NewPlan(images)
	if err != nil {
		fmt.Fprintln(os.Stderr, "offline-image save:", err)
		return 1
	}
	rd := &offimage.Reader{Ctx: ctx, Plan: plan, Src: reg, VerifyPrefix: -1}
	defer rd.Close()
	if isTerminal(os.Stderr) {
		rd.Progress = progress(plan)
		defer fmt.Fprintln(os.Stderr)
	}
	if *out == "-" {
		if _, err := io.CopyBuffer(struct{ io.Writer }{os.Stdout}, rd, make([]byte, copyBuffer)); err != nil {
			fmt.Fprintln(os.Stderr, "\noffline-image save: the tar on stdout is cut short:", err)
			return 1
		}
		return 0
	}
	if err := install.WriteAtomic(*out, rd, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "\noffline-image save: %v (no file written)\n", err)
		return 1
	}
	return 0
}

// copyBuffer is the size of the writes to the output (fewer system calls
// than io.Copy's 32 KiB).
const copyBuffer = 1 << 20

// progress prints, at most 5 times a second, the bytes done, the rate and
// the layer being fetched.
func progress(plan *offimage.Plan) func(int64, int) {
	start, last := time.Now(), time.Time{}
	return func(off int64, layer int) {
		now := time.Now()
		if now.Sub(last) < 200*time.Millisecond && off < plan.Size {
			return
		}
		last = now
		rate := float64(off) / now.Sub(start).Seconds() / (1 << 20)
		what := "metadata"
		if layer > 0 {
			what = fmt.Sprintf("layer %d of %d", layer, plan.Layers)
		}
		fmt.Fprintf(os.Stderr, "\r%-16s %8.1f of %.1f MiB  %6.1f MiB/s ", what, float64(off)/(1<<20), float64(plan.Size)/(1<<20), rate)
	}
}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on, e.g. :8080 or 127.0.0.1:8080")
	max := fs.Int("max-downloads", 4, "downloads at once (more are told to retry)")
	stall := fs.Duration("stall-timeout", 30*time.Second, "give up on a registry that sends nothing for this long")
	var mirrors, allowed stringList
	fs.Var(&mirrors, "registry-mirror", "a Docker Hub mirror to try first (repeatable)")
	fs.Var(&allowed, "allow-registry", "a registry images may come from (repeatable; default: any)")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if *listen == "" || len(rest) > 0 {
		fmt.Fprint(os.Stderr, "offline-image serve: give --listen ADDR (and no other arguments)\n\n"+usage)
		return 2
	}
	reg := registry(mirrors, *stall)
	reg.Allowed = allowed
	logger := log.New(os.Stderr, "offline-image: ", log.LstdFlags)
	srv := &offimage.Server{Reg: reg, Max: *max, Log: logger}
	srv.Start()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "offline-image serve:", err)
		return 1
	}
	who := "any registry"
	if len(allowed) > 0 {
		who = "registries " + strings.Join(allowed, ", ")
	}
	logger.Printf("serving http://%s/ (images from %s, %d downloads at once)", ln.Addr(), who, *max)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(c)
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "offline-image serve:", err)
		return 1
	}
	return 0
}
