package portmap

import (
	"strings"
	"testing"
)

// DEL, GC and STATUS read no prevResult: one that does not convert stops
// ADD and CHECK (error 7), not them.
func TestParsePrevResultOnlyWhenRead(t *testing.T) {
	conf := []byte(`{"cniVersion":"1.1.0","name":"pm","type":"portmap-lite","prevResult":{"cniVersion":"1.1.0","ips":"not a list"}}`)
	if _, err := Parse(conf); err == nil || !strings.Contains(err.Error(), "prevResult") {
		t.Errorf("Parse: got %v, want a prevResult error", err)
	}
	if c, err := parseNoPrev(conf); err != nil || c.PrevResult != nil {
		t.Errorf("parseNoPrev: got %+v, %v; want the config without a converted prevResult", c, err)
	}
}
