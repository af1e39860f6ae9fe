package offline

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
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

// DEL, GC and STATUS read no prevResult: one that does not convert stops
// ADD and CHECK (error 7), not them.
func TestParsePrevResultOnlyWhenRead(t *testing.T) {
	conf := []byte(`{"cniVersion":"1.1.0","name":"off","type":"offline-egress","prevResult":{"cniVersion":"1.1.0","ips":"not a list"}}`)
	if _, err := Parse(conf); err == nil || !strings.Contains(err.Error(), "prevResult") {
		t.Errorf("Parse: got %v, want a prevResult error", err)
	}
	if c, err := parseNoPrev(conf); err != nil || c.PrevResult != nil {
		t.Errorf("parseNoPrev: got %+v, %v; want the config without a converted prevResult", c, err)
	}
}
