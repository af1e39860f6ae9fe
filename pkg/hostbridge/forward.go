package hostbridge

import (
	"os"
	"path/filepath"

	"github.com/lanwire/lanwire/pkg/forward"
	"github.com/lanwire/lanwire/pkg/nft"
)

func writeSysctl(name, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644)
}

// ensureForward lets the bridge's own traffic through a FORWARD chain that
// would drop it (see package forward).
func ensureForward(bridge, port, daemon string) error {
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close(daemon)
	return forward.Ensure(c, bridge, port)
}

// releaseForward removes that rule when no other port needs it.
func releaseForward(bridge, leaving, daemon string) error {
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close(daemon)
	return forward.Release(c, bridge, leaving, daemon)
}
