package chain

import (
	"encoding/json"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestPrevResult(t *testing.T) {
	tests := []struct {
		version, raw string
		want         string // the first address, "" for no result
		err          bool
	}{
		{"1.1.0", "", "", false},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"10.1.2.3/24"}]}`, "10.1.2.3/24", false},
		{"0.4.0", `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.2.4/24"}]}`, "10.1.2.4/24", false},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":"not a list"}`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.version+" "+tc.raw, func(t *testing.T) {
			conf := types.PluginConf{CNIVersion: tc.version}
			if tc.raw != "" {
				conf.RawPrevResult = map[string]any{}
				if err := jsonInto(tc.raw, &conf.RawPrevResult); err != nil {
					t.Fatal(err)
				}
			}
			res, err := PrevResult(&conf)
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want one: %v", err, tc.err)
			}
			got := ""
			if res != nil && len(res.IPs) > 0 {
				got = res.IPs[0].Address.String()
			}
			if got != tc.want {
				t.Errorf("first address %q, want %q", got, tc.want)
			}
		})
	}
}

func jsonInto(s string, v *map[string]any) error { return json.Unmarshal([]byte(s), v) }
