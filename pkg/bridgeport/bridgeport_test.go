package bridgeport

import "testing"

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"lw0123456789": true, "eth0.100": true, "veth1a2b3c4d": true,
		"": false, ".": false, "..": false, "../../etc": false, "a/b": false, "a\x00b": false,
		"sixteen-chars-xx": false, // IFNAMSIZ is 16 with the NUL
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestBridgeOfNoPort(t *testing.T) {
	for _, name := range []string{"lo", "../lo", "lw-no-such"} {
		if br := BridgeOf(name); br != "" {
			t.Errorf("BridgeOf(%q) = %q, want none", name, br)
		}
	}
}
