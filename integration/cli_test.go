package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The binaries' command-line front: help lists the subcommands and exits 0
// (also with no arguments), an unknown subcommand exits 2, a subcommand's
// --help exits 0, and every binary and the daemon report one version.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	run := func(bin string, env []string, args ...string) (string, int) {
		cmd := exec.Command(plugin(bin), args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s %v: %v", bin, args, err)
		}
		return string(out), code
	}
	for _, args := range [][]string{nil, {"--help"}, {"-h"}, {"help"}} {
		out, code := run("hostbridge-dhcp", nil, args...)
		if code != 0 || !strings.Contains(out, "daemon") || !strings.Contains(out, "leases") || !strings.Contains(out, "doctor") {
			t.Errorf("hostbridge-dhcp %v: exit %d, want 0 and the subcommands:\n%s", args, code, out)
		}
	}
	if out, code := run("hostbridge-dhcp", nil, "bogus"); code != 2 || !strings.Contains(out, `unknown command "bogus"`) {
		t.Errorf("an unknown subcommand: exit %d, want 2:\n%s", code, out)
	}
	for _, sub := range []string{"daemon", "leases", "doctor"} {
		if out, code := run("hostbridge-dhcp", nil, sub, "--help"); code != 0 || !strings.Contains(out, "-socket") {
			t.Errorf("hostbridge-dhcp %s --help: exit %d, want 0 and its flags:\n%s", sub, code, out)
		}
	}
	if _, code := run("hostbridge-dhcp", nil, "leases", "--no-such-flag"); code != 2 {
		t.Errorf("a bad flag: exit %d, want 2", code)
	}
	var version string
	for _, bin := range []string{"hostbridge-dhcp", "offline-egress", "portmap-lite"} {
		out, code := run(bin, nil, "--version")
		f := strings.Fields(out)
		if code != 0 || len(f) < 2 || f[0] != bin {
			t.Errorf("%s --version: exit %d:\n%s", bin, code, out)
			continue
		}
		if version == "" {
			version = f[1]
		} else if f[1] != version {
			t.Errorf("%s says version %s, hostbridge-dhcp %s", bin, f[1], version)
		}
		if out, code := run(bin, nil, "--help"); code != 0 || !strings.Contains(out, version) {
			t.Errorf("%s --help: exit %d, no version:\n%s", bin, code, out)
		}
		// A runtime's call is still the CNI plugin's.
		if out, code := run(bin, []string{"CNI_COMMAND=VERSION"}); code != 0 || !strings.Contains(out, "supportedVersions") {
			t.Errorf("%s with CNI_COMMAND=VERSION: exit %d:\n%s", bin, code, out)
		}
	}
	d := startDaemon(t)
	b, _ := os.ReadFile(d.LogPath)
	if !strings.Contains(string(b), "lease daemon "+version+" listening") {
		t.Errorf("the daemon's log does not say version %s:\n%s", version, b)
	}
}
