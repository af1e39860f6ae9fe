// Package sbom writes a CycloneDX software bill of materials for Go
// binaries, from the module graph each one was linked from (its embedded
// build information): the modules, their versions and go.sum hashes, and
// the Go toolchain. The output depends on its inputs only (no clock, no
// random serial number), so that a release built twice is the same bytes.
package sbom

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Component is one entry of the bill (CycloneDX 1.5 `component`).
type Component struct {
	Type       string     `json:"type"`
	BOMRef     string     `json:"bom-ref,omitempty"`
	Name       string     `json:"name"`
	Version    string     `json:"version,omitempty"`
	PURL       string     `json:"purl,omitempty"`
	Properties []Property `json:"properties,omitempty"`
}

// Property is a name/value pair CycloneDX leaves to the producer.
type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// BOM is a CycloneDX 1.5 document (JSON).
type BOM struct {
	BOMFormat    string       `json:"bomFormat"`
	SpecVersion  string       `json:"specVersion"`
	SerialNumber string       `json:"serialNumber"`
	Version      int          `json:"version"`
	Metadata     Metadata     `json:"metadata"`
	Components   []Component  `json:"components"`
	Dependencies []Dependency `json:"dependencies"`
}

// Metadata names what the bill is of.
type Metadata struct {
	Component Component `json:"component"`
}

// Dependency lists what one component (a binary) was linked from.
type Dependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

// Binary is a built program and the build information it carries.
type Binary struct {
	Name string
	Info *buildinfo.BuildInfo
}

// Read reads the build information of the binary at path.
func Read(path string) (Binary, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return Binary{}, fmt.Errorf("reading the build information of %s: %w", path, err)
	}
	name := path[strings.LastIndex(path, "/")+1:]
	return Binary{Name: name, Info: bi}, nil
}

func purl(path, version string) string {
	return "pkg:golang/" + path + "@" + version
}

// Make builds the bill of product (version) from its binaries: one
// application component per binary, one library component per module any
// of them links (replacements followed), and the Go toolchain.
func Make(product, version string, bins []Binary) BOM {
	libs := map[string]Component{}
	var apps []Component
	var deps []Dependency
	for _, b := range bins {
		app := Component{Type: "application", BOMRef: "binary:" + b.Name, Name: b.Name, Version: version,
			Properties: []Property{{"lanwire:main-package", b.Info.Path}}}
		dep := Dependency{Ref: app.BOMRef}
		toolchain := Component{Type: "library", Name: "stdlib", Version: b.Info.GoVersion, PURL: purl("stdlib", b.Info.GoVersion)}
		toolchain.BOMRef = toolchain.PURL
		libs[toolchain.BOMRef] = toolchain
		dep.DependsOn = append(dep.DependsOn, toolchain.BOMRef)
		for _, s := range b.Info.Settings {
			switch s.Key {
			case "GOOS", "GOARCH", "CGO_ENABLED", "-trimpath", "vcs.revision", "vcs.modified":
				app.Properties = append(app.Properties, Property{"go:build:" + s.Key, s.Value})
			}
		}
		for _, m := range b.Info.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			c := Component{Type: "library", Name: m.Path, Version: m.Version, PURL: purl(m.Path, m.Version)}
			c.BOMRef = c.PURL
			if m.Sum != "" {
				c.Properties = []Property{{"go:sum", m.Sum}}
			}
			libs[c.BOMRef] = c
			dep.DependsOn = append(dep.DependsOn, c.BOMRef)
		}
		sort.Strings(dep.DependsOn)
		apps = append(apps, app)
		deps = append(deps, dep)
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
	sort.Slice(deps, func(i, j int) bool { return deps[i].Ref < deps[j].Ref })
	comps := apps
	refs := make([]string, 0, len(libs))
	for r := range libs {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	for _, r := range refs {
		comps = append(comps, libs[r])
	}
	bom := BOM{BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		Metadata:   Metadata{Component: Component{Type: "application", BOMRef: "product", Name: product, Version: version}},
		Components: comps, Dependencies: deps}
	bom.SerialNumber = serial(bom)
	return bom
}

// serial is a UUID (version 5 form) made from the bill's content: the same
// binaries give the same number.
func serial(b BOM) string {
	data, _ := json.Marshal(b)
	h := sha256.Sum256(data)
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
