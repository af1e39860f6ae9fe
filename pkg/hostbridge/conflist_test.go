package hostbridge

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The shipped conflists parse, and their hostbridge-dhcp entries are valid.
func TestShippedConflists(t *testing.T) {
	files, _ := filepath.Glob("../../conflist/*.conflist")
	if len(files) == 0 {
		t.Fatal("no conflists found")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			CNIVersion string           `json:"cniVersion"`
			Name       string           `json:"name"`
			Plugins    []map[string]any `json:"plugins"`
		}
		if err := json.Unmarshal(data, &list); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range list.Plugins {
			if p["type"] != "hostbridge-dhcp" {
				continue
			}
			p["cniVersion"], p["name"] = list.CNIVersion, list.Name
			b, _ := json.Marshal(p)
			if _, err := Parse(b); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
}
