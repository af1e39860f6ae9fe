package portmap

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Dir holds one record per container with published ports (what its
// entries are, so DEL needs no prevResult and no dump of the maps) and an
// index of the host ports in use, one file per port ("tcp-8080"), so
// finding a conflict costs the same with 5 or 5,000 mappings.
var Dir = "/run/lanwire/portmap"

// Record is what one container published.
type Record struct {
	Network     string    `json:"network"`
	ContainerID string    `json:"containerID"`
	Mappings    []Mapping `json:"mappings"`
	Specs       []Spec    `json:"specs"`
	// Dev is the host interface the container is reached through (its
	// bridge), whose forwarding (and route_localnet) the plugin turns on.
	Dev       string `json:"dev,omitempty"`
	Localhost bool   `json:"localhost,omitempty"`
	Daemon    string `json:"daemon,omitempty"`
	// Ports are the container's bridge ports, in hairpin mode.
	Ports []string `json:"ports,omitempty"`
	// Hairpin are the Ports whose hairpin mode the plugin turned on (it
	// was off): a port is one container's, so its record is the only
	// bookkeeping the flag needs, and DEL turns it off again.
	Hairpin []string `json:"hairpin,omitempty"`
}

// Owner is the record's file name: a hash of network and container ID.
func Owner(network, containerID string) string {
	s := sha256.Sum256([]byte(network + "\x00" + containerID))
	return hex.EncodeToString(s[:12])
}

// Elements are every entry of the record.
func (r Record) Elements() []Element {
	var out []Element
	for _, s := range r.Specs {
		out = append(out, s.Elements()...)
	}
	return out
}

func recordFile(owner string) string { return filepath.Join(Dir, "records", owner+".json") }

func portFile(m Mapping) string {
	return filepath.Join(Dir, "ports", fmt.Sprintf("%s-%d", m.Protocol, m.HostPort))
}

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

// loadRecord returns a container's record, nil when it has none.
func loadRecord(network, containerID string) (*Record, error) {
	var r Record
	err := readJSON(recordFile(Owner(network, containerID)), &r)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the record of %s: %w", containerID, err)
	}
	return &r, nil
}

// records lists every record.
func records() []Record {
	es, _ := os.ReadDir(filepath.Join(Dir, "records"))
	var out []Record
	for _, e := range es {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var r Record
		if readJSON(filepath.Join(Dir, "records", e.Name()), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// othersPublish reports whether a container other than owner has a record.
func othersPublish(owner string) bool {
	f, err := os.Open(filepath.Join(Dir, "records"))
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(2)
	for _, n := range names {
		if strings.HasSuffix(n, ".json") && n != owner+".json" {
			return true
		}
	}
	return false
}

// claim is one container's hold on a host port.
type claim struct {
	HostIP  string `json:"hostIP,omitempty"`
	Network string `json:"network"`
	ID      string `json:"id"`
}

// holders returns the claims on m's host port held by containers other
// than (network, id) that overlap m.
func holders(m Mapping, network, id string) ([]claim, error) {
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
		if Overlaps(m, Mapping{HostPort: m.HostPort, Protocol: m.Protocol, HostIP: c.HostIP}) {
			out = append(out, c)
		}
	}
	return out, nil
}

// saveRecord records r and its claims, replacing what it held before.
func saveRecord(r Record) error {
	dropRecord(r.Network, r.ContainerID)
	for _, m := range r.Mappings {
		var cs []claim
		_ = readJSON(portFile(m), &cs)
		cs = append(cs, claim{HostIP: m.HostIP, Network: r.Network, ID: r.ContainerID})
		if err := writeJSON(portFile(m), cs); err != nil {
			return fmt.Errorf("recording port claims: %w", err)
		}
	}
	return writeJSON(recordFile(Owner(r.Network, r.ContainerID)), r)
}

// dropRecord forgets a container's record and claims.
func dropRecord(network, id string) {
	r, err := loadRecord(network, id)
	if err != nil || r == nil {
		return
	}
	for _, m := range r.Mappings {
		var cs []claim
		if readJSON(portFile(m), &cs) != nil {
			continue
		}
		kept := cs[:0]
		for _, c := range cs {
			if c.Network != network || c.ID != id {
				kept = append(kept, c)
			}
		}
		if len(kept) == 0 {
			os.Remove(portFile(m))
		} else {
			_ = writeJSON(portFile(m), kept)
		}
	}
	os.Remove(recordFile(Owner(network, id)))
}
