// Command sbom prints a CycloneDX bill of materials (JSON) for Go binaries,
// from the module graph embedded in each (see package sbom). `make dist`
// puts one beside each release archive.
//
//	sbom -product lanwire -version v0.3.0 bin/hostbridge-dhcp bin/lanwire ...
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/lanwire/lanwire/pkg/sbom"
)

func main() {
	product := flag.String("product", "lanwire", "the product's name")
	version := flag.String("version", "dev", "the product's version")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: sbom [-product NAME] [-version V] BINARY...")
		os.Exit(2)
	}
	var bins []sbom.Binary
	for _, p := range flag.Args() {
		b, err := sbom.Read(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sbom:", err)
			os.Exit(1)
		}
		bins = append(bins, b)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sbom.Make(*product, *version, bins)); err != nil {
		fmt.Fprintln(os.Stderr, "sbom:", err)
		os.Exit(1)
	}
}
