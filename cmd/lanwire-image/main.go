// Command lanwire-image assembles lanwire's container image for a
// Kubernetes node (conflist/kubernetes/daemonset.yaml) from the static
// binaries, without Docker: one layer holding /lanwire/{hostbridge-dhcp,
// offline-egress,portmap-lite,lanwire}, the lease daemon as its command.
// It writes a `docker save` tar that `ctr images import`, `docker load`
// and `podman load` read, the same bytes from the same binaries.
//
//	lanwire-image -bin bin -tag lanwire:v1.2.3 -arch amd64 -o lanwire-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lanwire/lanwire/pkg/install"
)

func main() {
	bin := flag.String("bin", "bin", "directory of the static binaries (make build, or make dist's)")
	tag := flag.String("tag", "lanwire:latest", "the image's name")
	arch := flag.String("arch", runtime.GOARCH, "the binaries' architecture")
	out := flag.String("o", "lanwire-image.tar", "the tar to write")
	flag.Parse()
	if err := build(*bin, *tag, *arch, *out); err != nil {
		fmt.Fprintln(os.Stderr, "lanwire-image:", err)
		os.Exit(1)
	}
}

// layer is a tar of /lanwire with the binaries found in dir.
func layer(dir string) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	zero := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "lanwire/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: zero}); err != nil {
		return nil, err
	}
	for _, f := range install.Binaries {
		data, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			if f.Optional {
				continue
			}
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: "lanwire/" + f.Name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), ModTime: zero}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return b.Bytes(), err
}

func build(dir, tag, arch, out string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	data, err := layer(dir)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), static.NewLayer(data, types.OCIUncompressedLayer))
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint = []string{"/lanwire/hostbridge-dhcp"}
	cf.Config.Cmd = []string{"daemon"}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "lanwire", "org.opencontainers.image.description": "lanwire's CNI plugins and lease daemon"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return tarball.WriteToFile(out, ref, img)
}
