// Command lanwire is lanwire as a netavark plugin, for podman 5 and later
// (install it as /usr/libexec/netavark/lanwire): `podman network create -d
// lanwire -o bridge=br0 NAME`. It also runs the lease daemon and its tools,
// as hostbridge-dhcp does.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/lanwire/lanwire/pkg/cli"
	"github.com/lanwire/lanwire/pkg/hostbridge"
	"github.com/lanwire/lanwire/pkg/netavark"
)

func init() {
	// Namespace switches must stay on one OS thread.
	runtime.LockOSThread()
}

// answer writes v, or netavark's error object for err, and returns the
// exit code.
func answer(out io.Writer, v any, err error) int {
	if err != nil {
		_ = json.NewEncoder(out).Encode(map[string]string{"error": err.Error()})
		return 1
	}
	if v != nil {
		if err := json.NewEncoder(out).Encode(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// withNetns runs f with setup's or teardown's netns argument and stdin.
func withNetns(f func(netns string, input []byte) (any, error)) func([]string, io.Writer) int {
	return func(args []string, out io.Writer) int {
		if len(args) != 1 {
			return answer(out, nil, fmt.Errorf("want one argument, the container's netns path"))
		}
		input, err := io.ReadAll(os.Stdin)
		if err != nil {
			return answer(out, nil, err)
		}
		v, err := f(args[0], input)
		return answer(out, v, err)
	}
}

func main() {
	cli.Plugin{
		Name:  "lanwire",
		About: "containers on an existing LAN bridge with DHCP leases, offline if asked (netavark plugin)",
		Intro: "A netavark plugin: podman 5 and later run it for networks made with\n`podman network create -d lanwire -o bridge=BR [-o allow=host:8000/tcp] NAME`.",
		Commands: []cli.Command{
			{Name: "info", Summary: "the plugin's version and API version (netavark)", Run: func(_ []string, out io.Writer) int {
				return answer(out, netavark.Info{Version: cli.Version, APIVersion: netavark.APIVersion}, nil)
			}},
			{Name: "create", Summary: "check and complete a network config on stdin (netavark)", Run: func(_ []string, out io.Writer) int {
				input, err := io.ReadAll(os.Stdin)
				if err != nil {
					return answer(out, nil, err)
				}
				n, err := netavark.Create(input)
				if err != nil {
					return answer(out, nil, err)
				}
				return answer(out, json.RawMessage(n), nil)
			}},
			{Name: "setup", Summary: "attach a container: setup NETNS, the config on stdin (netavark)", Run: withNetns(func(netns string, input []byte) (any, error) {
				return netavark.Setup(netns, input)
			})},
			{Name: "teardown", Summary: "detach a container: teardown NETNS, the config on stdin (netavark)", Run: withNetns(func(netns string, input []byte) (any, error) {
				return nil, netavark.Teardown(netns, input)
			})},
			{Name: "daemon", Summary: "run the lease daemon (systemd starts it, or the first setup)", Run: func(args []string, _ io.Writer) int { return hostbridge.DaemonMain(args) }},
			{Name: "leases", Summary: "list the leases the daemon holds (--json for machines)", Run: hostbridge.LeasesMain},
			{Name: "doctor", Summary: "say why a container gets no lease, and how to fix it", Run: hostbridge.DoctorMain},
		},
	}.Main()
}
