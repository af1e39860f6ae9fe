package offline

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/lanwire/lanwire/pkg/chain/chaintest"
	"github.com/lanwire/lanwire/pkg/guard"
)

func TestParse(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"1.1.0","name":"off","type":"offline-egress",
	  "allow":[{"to":"host","ports":["8000/tcp"]},{"to":"192.168.1.10"},{"to":"fd00::/64","ports":["53/udp"]}],"dns":["10.0.0.1"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !*c.AllowDHCP || len(c.allow) != 4 || !c.allow[0].Host || c.allow[1].Net.String() != "192.168.1.10/32" || len(c.dns) != 1 {
		t.Errorf("parsed: %+v %+v", c, c.allow)
	}
}

func TestParseErrors(t *testing.T) {
	base := `"cniVersion":"1.1.0","name":"off","type":"offline-egress"`
	tests := []struct{ name, conf, want string }{
		{"no name", `{"allow":[]}`, "no \"name\""},
		{"no to", `{` + base + `,"allow":[{"ports":["80/tcp"]}]}`, "\"to\" is required"},
		{"bad cidr", `{` + base + `,"allow":[{"to":"10.0.0.0/33"}]}`, "neither a CIDR"},
		{"host bits", `{` + base + `,"allow":[{"to":"10.0.0.5/24"}]}`, "host bits"},
		{"bad port", `{` + base + `,"allow":[{"to":"host","ports":["80"]}]}`, "/tcp or /udp"},
		{"bad dns", `{` + base + `,"dns":["resolver"]}`, "not an IP"},
		{"wrong type", `{` + base + `,"logBlocked":"yes"}`, "logBlocked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.conf))
			var te *types.Error
			if !errors.As(err, &te) || te.Code != 7 || !strings.Contains(te.Msg, tc.want) {
				t.Errorf("got %v, want error 7 with %q", err, tc.want)
			}
		})
	}
}

// A prevResult that does not convert stops ADD (error 7), not DEL, which
// never reads it.
func TestPrevResultOnlyWhenRead(t *testing.T) {
	guard.Dir = t.TempDir()
	lockdown := func(a *skel.CmdArgs) error { _, _, err := Lockdown(a); return err }
	chaintest.PrevOnlyWhenRead(t, "offline-egress", lockdown, Del)
}
