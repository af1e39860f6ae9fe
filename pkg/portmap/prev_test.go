package portmap

import (
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/lanwire/lanwire/pkg/chain/chaintest"
)

// A prevResult that does not convert stops ADD (error 7), not DEL, which
// never reads it.
func TestPrevResultOnlyWhenRead(t *testing.T) {
	Dir = t.TempDir()
	publish := func(a *skel.CmdArgs) error { _, _, err := Publish(a); return err }
	chaintest.PrevOnlyWhenRead(t, "portmap-lite", publish, Del)
}
