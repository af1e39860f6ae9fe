// Package cli is the command-line front of lanwire's binaries: called by a
// container runtime (CNI_COMMAND set) a binary is a CNI plugin; called by
// a person it lists its subcommands, prints its version, runs them.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// Version is lanwire's version, stamped by the build (`make build`:
// -ldflags "-X github.com/lanwire/lanwire/pkg/cli.Version=...", from
// `git describe`); "dev" in a plain `go build`.
var Version = "dev"

// Docs is where the documentation is.
const Docs = "https://github.com/lanwire/lanwire#readme (README.md in the source)"

// Command is a subcommand of a binary.
type Command struct {
	Name    string
	Summary string
	// Run runs it with the arguments after its name; it returns the exit
	// code.
	Run func(args []string, out io.Writer) int
}

// Plugin describes a binary: its name, what it is, its subcommands and its
// CNI functions.
type Plugin struct {
	Name     string
	About    string // one line: what the plugin does
	Commands []Command
	CNI      skel.CNIFuncs
	// Intro replaces the help's paragraph on how runtimes call a CNI
	// plugin (for a binary that is not one).
	Intro string
}

// Banner is the plugin's CNI "about" line, with the version.
func (p Plugin) Banner() string {
	return fmt.Sprintf("%s %s: %s (lanwire)", p.Name, Version, p.About)
}

// Usage writes the plugin's help.
func (p Plugin) Usage(out io.Writer) {
	fmt.Fprintf(out, "%s\n\n", p.Banner())
	intro := p.Intro
	if intro == "" {
		intro = "A CNI plugin: container runtimes run it with CNI_COMMAND set (ADD, DEL, CHECK,\nSTATUS, GC, VERSION) and its configuration on stdin; see the README for conflists."
	}
	fmt.Fprintf(out, "%s\n\n", intro)
	fmt.Fprintf(out, "Usage:\n  %s COMMAND [--help]\n\nCommands:\n", p.Name)
	for _, c := range p.Commands {
		fmt.Fprintf(out, "  %-9s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintf(out, "  %-9s %s\n  %-9s %s\n\nDocumentation: %s\n", "version", "print the version", "help", "print this help", Docs)
}

// Main runs the binary and exits.
func (p Plugin) Main() {
	os.Exit(p.run(os.Args[1:], os.Getenv("CNI_COMMAND") != "", os.Stdout, os.Stderr))
}

func (p Plugin) run(args []string, byRuntime bool, out, errOut io.Writer) int {
	if byRuntime && p.CNI.Add != nil {
		skel.PluginMainFuncs(p.CNI, version.All, p.Banner())
		return 0
	}
	if len(args) == 0 {
		p.Usage(out)
		return 0
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		p.Usage(out)
		return 0
	case "version", "-version", "--version":
		if p.CNI.Add == nil {
			fmt.Fprintf(out, "%s %s\n", p.Name, Version)
			return 0
		}
		fmt.Fprintf(out, "%s %s (CNI spec %s)\n", p.Name, Version, strings.Join(version.All.SupportedVersions(), ", "))
		return 0
	}
	for _, c := range p.Commands {
		if c.Name == args[0] {
			return c.Run(args[1:], out)
		}
	}
	fmt.Fprintf(errOut, "%s: unknown command %q; see `%s --help`\n", p.Name, args[0], p.Name)
	return 2
}

// Parse parses a subcommand's flags: --help prints its usage and exits 0
// (ok false, code 0), a bad flag exits 2.
func Parse(fs *flag.FlagSet, args []string) (ok bool, code int) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return true, 0
	case errors.Is(err, flag.ErrHelp):
		return false, 0
	}
	return false, 2
}
