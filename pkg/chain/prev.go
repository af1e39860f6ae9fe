package chain

import (
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
