// Package chaintest holds the plugins' unit test of how they treat a
// prevResult: converted by the commands that read it, not by the others.
package chaintest

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// PrevOnlyWhenRead gives a plugin of type typ a prevResult that does not
// convert: read (ADD or CHECK) must stop with error 7 about prevResult,
// skip (DEL, or a parse DEL uses) must succeed.
func PrevOnlyWhenRead(t *testing.T, typ string, read, skip func(*skel.CmdArgs) error) {
	t.Helper()
	conf := `{"cniVersion":"1.1.0","name":"lan","type":"` + typ + `","bridge":"br0","prevResult":{"cniVersion":"1.1.0","ips":"not a list"}}`
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", StdinData: []byte(conf)}
	var te *types.Error
	if err := read(args); !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig || !strings.Contains(te.Msg, "prevResult") {
		t.Errorf("ADD or CHECK: got %v, want error 7 about prevResult", err)
	}
	if err := skip(args); err != nil {
		t.Errorf("a command that does not read prevResult: %v", err)
	}
}
