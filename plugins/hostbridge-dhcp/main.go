// Command hostbridge-dhcp is the CNI plugin that attaches containers to an
// existing LAN bridge with DHCP leases, and (as `hostbridge-dhcp daemon`)
// the lease daemon that keeps those leases.
package main

import (
	"io"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/lanwire/lanwire/pkg/cli"
	"github.com/lanwire/lanwire/pkg/hostbridge"
	"github.com/lanwire/lanwire/pkg/install"
)

func init() {
	// Namespace switches must stay on one OS thread.
	runtime.LockOSThread()
}

func main() {
	cli.Plugin{
		Name:  "hostbridge-dhcp",
		About: "containers on an existing LAN bridge with DHCP leases",
		Commands: []cli.Command{
			{Name: "daemon", Summary: "run the lease daemon (systemd starts it, or the first ADD)", Run: func(args []string, _ io.Writer) int { return hostbridge.DaemonMain(args) }},
			{Name: "leases", Summary: "list the leases the daemon holds (--json for machines)", Run: hostbridge.LeasesMain},
			{Name: "doctor", Summary: "say why a container gets no lease, and how to fix it", Run: hostbridge.DoctorMain},
			{Name: "install", Summary: "copy lanwire's binaries into a CNI plugin directory, each atomically", Run: install.Main},
		},
		CNI: skel.CNIFuncs{Add: hostbridge.Add, Del: hostbridge.Del, Check: hostbridge.Check, Status: hostbridge.Status, GC: hostbridge.GC},
	}.Main()
}
