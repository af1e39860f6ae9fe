// Package offline is the offline-egress CNI plugin: chained after an
// interface plugin, it blocks everything a container sends except replies,
// DHCP and an allowlist, enforced on the host where the container cannot
// lift it.
package offline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/lanwire/lanwire/pkg/egress"
)

// Config is offline-egress's network configuration.
type Config struct {
	types.PluginConf
	Allow      []AllowEntry `json:"allow,omitempty"`
	AllowDHCP  *bool        `json:"allowDHCP,omitempty"`
	LogBlocked bool         `json:"logBlocked,omitempty"`
	DNS        []string     `json:"dns,omitempty"`
	// DaemonSocket is the lease daemon the plugin hands its firewall
	// socket to (hostbridge-dhcp's own setting is used when it made the port).
	DaemonSocket string `json:"daemonSocket,omitempty"`

	allow []egress.Allow // the allowlist with the DNS entries
	dns   []net.IP
}

// AllowEntry is one allowlist entry as written in the config.
type AllowEntry struct {
	To    string   `json:"to"`
	Ports []string `json:"ports,omitempty"`
}

func invalid(format string, a ...any) error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// Parse decodes and checks the config; every failure is CNI error 7.
func Parse(stdin []byte) (*Config, error) {
	var c Config
	if err := json.NewDecoder(bytes.NewReader(stdin)).Decode(&c); err != nil {
		return nil, invalid("parsing offline-egress configuration: %v", err)
	}
	if c.Name == "" {
		return nil, invalid("network configuration has no \"name\"")
	}
	if c.AllowDHCP == nil {
		t := true
		c.AllowDHCP = &t
	}
	for i, e := range c.Allow {
		a, err := egress.ParseAllow(e.To, e.Ports)
		if err != nil {
			return nil, invalid("\"allow\"[%d]: %v", i, err)
		}
		c.allow = append(c.allow, a)
	}
	for _, d := range c.DNS {
		ip := net.ParseIP(d)
		if ip == nil {
			return nil, invalid("\"dns\": %q is not an IP address", d)
		}
		c.dns = append(c.dns, ip)
		c.allow = append(c.allow, egress.DNS(ip))
	}
	return &c, nil
}
