package portmap

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// A prevResult that does not convert stops ADD (error 7), not DEL, which
// never reads it.
func TestPrevResultOnlyWhenRead(t *testing.T) {
	Dir = t.TempDir()
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", StdinData: []byte(`{"cniVersion":"1.1.0","name":"pm","type":"portmap-lite","prevResult":{"cniVersion":"1.1.0","ips":"not a list"}}`)}
	var te *types.Error
	if _, _, err := Publish(args); !errors.As(err, &te) || te.Code != 7 || !strings.Contains(te.Msg, "prevResult") {
		t.Errorf("ADD: got %v, want error 7 about prevResult", err)
	}
	if err := Del(args); err != nil {
		t.Errorf("DEL: %v", err)
	}
}
