// Command noop is a CNI plugin that does nothing: chained, it passes
// prevResult on; alone, it answers an empty result. The benchmarks measure
// lanwire's plugins against its exec, the floor of any Go plugin.
package main

import (
	"encoding/json"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

func add(args *skel.CmdArgs) error {
	var c types.PluginConf
	if err := json.Unmarshal(args.StdinData, &c); err != nil {
		return err
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	if c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c); err != nil {
			return err
		}
		r, err := current.NewResultFromResult(c.PrevResult)
		if err != nil {
			return err
		}
		res = r
	}
	return types.PrintResult(res, c.CNIVersion)
}

func nothing(*skel.CmdArgs) error { return nil }

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: add, Del: nothing, Check: nothing, Status: nothing, GC: nothing},
		version.All, "noop: a CNI plugin that does nothing (lanwire's benchmarks)")
}
