package chain

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// PrevResult converts the prevResult the runtime passed in conf to the
// current result type, nil when there is none. Only the commands that read
// it call it (ADD and CHECK of a chained plugin, CHECK of hostbridge-dhcp,
// and offline-egress's DEL when its index has no entry): DEL, GC and STATUS
// otherwise neither pay for the conversion nor fail on a prevResult that
// does not convert.
func PrevResult(conf *types.PluginConf) (*current.Result, error) {
	if conf.RawPrevResult == nil {
		return nil, nil
	}
	if err := version.ParsePrevResult(conf); err != nil {
		return nil, err
	}
	return current.NewResultFromResult(conf.PrevResult)
}

// Chained is the prevResult a chained plugin (offline-egress,
// portmap-lite) reads in ADD and CHECK: every problem is CNI error 7 with
// what to change in the conflist.
func Chained(conf *types.PluginConf, plugin string) (*current.Result, error) {
	if msg := VersionProblem(conf.CNIVersion); msg != "" {
		return nil, invalid("%s: add \"cniVersion\": \"1.1.0\" at the top of the conflist", msg)
	}
	res, err := PrevResult(conf)
	if err != nil {
		return nil, invalid("parsing prevResult: %v", err)
	}
	if res == nil {
		return nil, invalid("%s is a chained plugin and needs a prevResult: put it after hostbridge-dhcp (or bridge) in a conflist", plugin)
	}
	return res, nil
}

func invalid(format string, a ...any) error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}
