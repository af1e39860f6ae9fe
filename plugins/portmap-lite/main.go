// Command portmap-lite is the chained CNI plugin that publishes container
// ports on the host.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/lanwire/lanwire/pkg/portmap"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: portmap.Add, Del: portmap.Del, Check: portmap.Check,
		Status: portmap.Status, GC: portmap.GC,
	}, version.All, "portmap-lite: publish container ports (lanwire)")
}
