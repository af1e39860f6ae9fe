package sbom

import (
	"debug/buildinfo"
	"encoding/json"
	"runtime/debug"
	"testing"
)

func bin(name string, deps ...*debug.Module) Binary {
	return Binary{Name: name, Info: &buildinfo.BuildInfo{GoVersion: "go1.26.8", Path: "example.com/" + name,
		Deps: deps, Settings: []debug.BuildSetting{{Key: "GOARCH", Value: "arm64"}, {Key: "GOFLAGS", Value: "-x"}}}}
}

func TestMake(t *testing.T) {
	cni := &debug.Module{Path: "github.com/containernetworking/cni", Version: "v1.3.0", Sum: "h1:abc="}
	nl := &debug.Module{Path: "github.com/vishvananda/netlink", Version: "v1.3.0",
		Replace: &debug.Module{Path: "github.com/fork/netlink", Version: "v1.3.1"}}
	bom := Make("lanwire", "v1.0.0", []Binary{bin("zeta", cni), bin("alpha", cni, nl)})

	var names []string
	for _, c := range bom.Components {
		names = append(names, c.Type+" "+c.Name+" "+c.Version)
	}
	want := []string{
		"application alpha v1.0.0", "application zeta v1.0.0",
		"library github.com/containernetworking/cni v1.3.0",
		"library github.com/fork/netlink v1.3.1", // the replacement is what was linked
		"library stdlib go1.26.8",
	}
	if len(names) != len(want) {
		t.Fatalf("components %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("component %d is %q, want %q", i, names[i], want[i])
		}
	}
	if p := bom.Components[2].PURL; p != "pkg:golang/github.com/containernetworking/cni@v1.3.0" {
		t.Errorf("purl %q", p)
	}
	if got := bom.Dependencies[0]; got.Ref != "binary:alpha" || len(got.DependsOn) != 3 {
		t.Errorf("alpha's dependencies %+v", got)
	}
	for _, p := range bom.Components[0].Properties {
		if p.Name == "go:build:GOFLAGS" {
			t.Errorf("a build setting that is not kept is listed: %+v", p)
		}
	}

	// The same input gives the same bytes; another input another serial.
	a, _ := json.Marshal(bom)
	b, _ := json.Marshal(Make("lanwire", "v1.0.0", []Binary{bin("alpha", cni, nl), bin("zeta", cni)}))
	if string(a) != string(b) {
		t.Error("the same binaries in another order gave another bill")
	}
	if other := Make("lanwire", "v1.0.1", []Binary{bin("zeta", cni)}); other.SerialNumber == bom.SerialNumber {
		t.Error("another bill has the same serial number")
	}
}
