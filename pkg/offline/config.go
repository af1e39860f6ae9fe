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
	"github.com/containernetworking/cni/pkg/version"

	"github.com/lanwire/lanwire/pkg/egress"
)

// Config is offline-egress's network configuration.
type Config struct {
	types.PluginConf
	Allow      []AllowEntry `json:"allow,omitempty"`
	AllowDHCP  *bool        `json:"allowDHCP,omitempty"`
	LogBlocked bool         `json:"logBlocked,omitempty"`
	DNS        []string     `json:"dns,omitempty"`

	allow []egress.Allow
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
		var a egress.Allow
		switch e.To {
		case "":
			return nil, invalid("\"allow\"[%d]: \"to\" is required: a CIDR such as \"192.168.1.0/24\", an address, or \"host\"", i)
		case "host":
			a.Host = true
		default:
			n, err := parseNet(e.To)
			if err != nil {
				return nil, invalid("\"allow\"[%d]: %v", i, err)
			}
			a.Net = n
		}
		for _, p := range e.Ports {
			pr, err := egress.ParsePort(p)
			if err != nil {
				return nil, invalid("\"allow\"[%d]: %v", i, err)
			}
			a.Ports = append(a.Ports, pr)
		}
		c.allow = append(c.allow, a)
	}
	for _, d := range c.DNS {
		ip := net.ParseIP(d)
		if ip == nil {
			return nil, invalid("\"dns\": %q is not an IP address", d)
		}
		c.dns = append(c.dns, ip)
	}
	if c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return nil, invalid("parsing prevResult: %v", err)
		}
	}
	return &c, nil
}

// parseNet accepts a CIDR or a single address.
func parseNet(s string) (*net.IPNet, error) {
	if ip := net.ParseIP(s); ip != nil {
		bits := 128
		if ip4 := ip.To4(); ip4 != nil {
			ip, bits = ip4, 32
		}
		return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
	}
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a CIDR, an address nor \"host\"", s)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("%q has host bits set; did you mean %s?", s, n)
	}
	return n, nil
}
