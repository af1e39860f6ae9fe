// Command hostbridge-dhcp is the CNI plugin that attaches containers to an
// existing LAN bridge with DHCP leases, and (as `hostbridge-dhcp daemon`)
// the lease daemon that keeps those leases.
package main

import (
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/lanwire/lanwire/pkg/hostbridge"
)

func init() {
	// Namespace switches must stay on one OS thread.
	runtime.LockOSThread()
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "daemon":
			os.Exit(hostbridge.DaemonMain(os.Args[2:]))
		case "leases":
			os.Exit(hostbridge.LeasesMain(os.Args[2:], os.Stdout))
		case "doctor":
			os.Exit(hostbridge.DoctorMain(os.Args[2:], os.Stdout))
		}
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: hostbridge.Add, Del: hostbridge.Del, Check: hostbridge.Check,
		Status: hostbridge.Status, GC: hostbridge.GC,
	}, version.All, "hostbridge-dhcp: containers on an existing LAN bridge with DHCP leases (lanwire)")
}
