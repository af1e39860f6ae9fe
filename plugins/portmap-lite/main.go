// Command portmap-lite is the chained CNI plugin that publishes container
// ports on the host.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/lanwire/lanwire/pkg/cli"
	"github.com/lanwire/lanwire/pkg/portmap"
)

func main() {
	cli.Plugin{
		Name:  "portmap-lite",
		About: "publish container ports",
		CNI:   skel.CNIFuncs{Add: portmap.Add, Del: portmap.Del, Check: portmap.Check, Status: portmap.Status, GC: portmap.GC},
	}.Main()
}
