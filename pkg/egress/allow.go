// Package egress is offline-egress's allowlist: destinations (this host or
// a CIDR) with the protocols and ports a container may send to.
package egress

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// PortRange is one "8000-8100/tcp" item.
type PortRange struct {
	Proto    string // tcp or udp
	From, To int
}

// String renders it as written in the config.
func (p PortRange) String() string {
	if p.From == p.To {
		return fmt.Sprintf("%d/%s", p.From, p.Proto)
	}
	return fmt.Sprintf("%d-%d/%s", p.From, p.To, p.Proto)
}

// ParsePort parses "5000/tcp", "53/udp" or "8000-8100/tcp".
func ParsePort(s string) (PortRange, error) {
	num, proto, ok := strings.Cut(s, "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return PortRange{}, fmt.Errorf("port %q must end in /tcp or /udp, e.g. \"8000/tcp\"", s)
	}
	from, to, isRange := strings.Cut(num, "-")
	if !isRange {
		to = from
	}
	f, err1 := strconv.Atoi(from)
	t, err2 := strconv.Atoi(to)
	if err1 != nil || err2 != nil || f < 1 || t > 65535 || f > t {
		return PortRange{}, fmt.Errorf("port %q: ports are 1-65535, a range is low-high", s)
	}
	return PortRange{Proto: proto, From: f, To: t}, nil
}

// Allow is one allowlist entry: a destination (Host, or a CIDR) and ports
// (none means every protocol and port).
type Allow struct {
	Host  bool
	Net   *net.IPNet
	Ports []PortRange
}

// allowJSON is how an Allow is stored: as written in a config.
type allowJSON struct {
	To    string   `json:"to"`
	Ports []string `json:"ports,omitempty"`
}

// MarshalJSON writes the entry as a config would.
func (a Allow) MarshalJSON() ([]byte, error) {
	j := allowJSON{To: "host"}
	if !a.Host {
		j.To = a.Net.String()
	}
	for _, p := range a.Ports {
		j.Ports = append(j.Ports, p.String())
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads an entry written by MarshalJSON.
func (a *Allow) UnmarshalJSON(b []byte) error {
	var j allowJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	got, err := ParseAllow(j.To, j.Ports)
	if err != nil {
		return err
	}
	*a = got
	return nil
}

// ParseAllow parses an entry: to is "host", a CIDR or an address.
func ParseAllow(to string, ports []string) (Allow, error) {
	var a Allow
	switch to {
	case "":
		return a, fmt.Errorf("\"to\" is required: a CIDR such as \"192.168.1.0/24\", an address, or \"host\"")
	case "host":
		a.Host = true
	default:
		n, err := ParseNet(to)
		if err != nil {
			return a, err
		}
		a.Net = n
	}
	for _, p := range ports {
		pr, err := ParsePort(p)
		if err != nil {
			return a, err
		}
		a.Ports = append(a.Ports, pr)
	}
	return a, nil
}

// ParseNet accepts a CIDR or a single address.
func ParseNet(s string) (*net.IPNet, error) {
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

// DNS is the allowlist entry for a nameserver: port 53 over UDP and TCP.
func DNS(ip net.IP) Allow {
	bits := 128
	if ip4 := ip.To4(); ip4 != nil {
		ip, bits = ip4, 32
	}
	return Allow{Net: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)},
		Ports: []PortRange{{Proto: "udp", From: 53, To: 53}, {Proto: "tcp", From: 53, To: 53}}}
}

// LogPrefix is the kernel log prefix for a container (at most 29 bytes).
func LogPrefix(containerID string) string {
	id := containerID
	if len(id) > 12 {
		id = id[:12]
	}
	return "lanwire-egress " + id + ": "
}
