// Command offline-egress is the chained CNI plugin that keeps a container
// offline but for an allowlist.
package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/lanwire/lanwire/pkg/cli"
	"github.com/lanwire/lanwire/pkg/offline"
)

func init() { runtime.LockOSThread() }

func main() {
	cli.Plugin{
		Name:  "offline-egress",
		About: "containers offline but for an allowlist",
		CNI:   skel.CNIFuncs{Add: offline.Add, Del: offline.Del, Check: offline.Check, Status: offline.Status, GC: offline.GC},
	}.Main()
}
