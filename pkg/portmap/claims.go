package portmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ClaimsDir indexes the host ports in use, so finding a conflict costs the
// same with 5 or 5,000 mappings: one file per port ("tcp-8080") listing its
// claims, and one per chain listing that container's mappings. It is kept
// under the plugin's lock and is a cache of the rules: a claim whose chain
// is gone is dropped when met.
var ClaimsDir = "/run/lanwire/portmap-lite/claims"

// claim is one container's hold on a host port.
type claim struct {
	HostIP  string `json:"hostIP,omitempty"`
	Network string `json:"network"`
	ID      string `json:"id"`
	Chain   string `json:"chain"`
}

func portFile(m Mapping) string {
	return filepath.Join(ClaimsDir, fmt.Sprintf("%s-%d", m.Protocol, m.HostPort))
}

func chainFile(chain string) string { return filepath.Join(ClaimsDir, "chains", chain) }

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// holders returns the claims on m's host port held by others than
// (network, id) that overlap m. alive tells whether a chain still exists.
func holders(m Mapping, network, id string, alive func(chain string) bool) ([]claim, error) {
	var cs []claim
	if err := readJSON(portFile(m), &cs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading port claims: %w", err)
	}
	var out []claim
	for _, c := range cs {
		if c.Network == network && c.ID == id {
			continue
		}
		if !Overlaps(m, Mapping{HostPort: m.HostPort, Protocol: m.Protocol, HostIP: c.HostIP}) {
			continue
		}
		if !alive(c.Chain) {
			continue // stale: the rules were removed behind our back
		}
		out = append(out, c)
	}
	return out, nil
}

// setClaims records chain's mappings, replacing what it held before.
func setClaims(network, id, chain string, ms []Mapping) error {
	dropClaims(chain)
	for _, m := range ms {
		var cs []claim
		_ = readJSON(portFile(m), &cs)
		cs = append(cs, claim{HostIP: m.HostIP, Network: network, ID: id, Chain: chain})
		if err := writeJSON(portFile(m), cs); err != nil {
			return fmt.Errorf("recording port claims: %w", err)
		}
	}
	return writeJSON(chainFile(chain), ms)
}

// dropClaims forgets chain's claims and returns the mappings it held.
func dropClaims(chain string) []Mapping {
	var ms []Mapping
	if err := readJSON(chainFile(chain), &ms); err != nil {
		return nil
	}
	for _, m := range ms {
		var cs []claim
		if readJSON(portFile(m), &cs) != nil {
			continue
		}
		kept := cs[:0]
		for _, c := range cs {
			if c.Chain != chain {
				kept = append(kept, c)
			}
		}
		if len(kept) == 0 {
			os.Remove(portFile(m))
		} else {
			_ = writeJSON(portFile(m), kept)
		}
	}
	os.Remove(chainFile(chain))
	return ms
}

// claimedChains lists the chains that hold claims (for GC).
func claimedChains() []string {
	entries, _ := os.ReadDir(filepath.Join(ClaimsDir, "chains"))
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}
