package chain

import "testing"

func TestVersionProblem(t *testing.T) {
	for v, bad := range map[string]bool{"": true, "0.1.0": true, "0.2.0": true, "0.3.0": false, "0.4.0": false, "1.0.0": false, "1.1.0": false, "nonsense": true} {
		if got := VersionProblem(v) != ""; got != bad {
			t.Errorf("%q: problem %v, want %v", v, got, bad)
		}
	}
}
