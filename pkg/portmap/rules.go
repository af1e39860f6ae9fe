// Package portmap is the portmap-lite CNI plugin: it publishes container
// ports on the host with DNAT in the nat table, refuses ports already taken,
// and clears stale UDP conntrack entries. Rules come from pure functions.
package portmap

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/lanwire/lanwire/pkg/chains"
)

// Frozen names: changing them would orphan the rules of running containers.
const (
	Table       = "nat"
	TopChain    = "LANWIRE-HOSTPORTS"
	MasqChain   = "LANWIRE-HOSTPORTS-MASQ"
	ChainPrefix = "LWPM-"
	// MasqMark marks connections to masquerade: hairpin, same-subnet
	// clients and 127.0.0.1.
	MasqMark = "0x2000/0x2000"
)

// Mapping is one entry of the portMappings capability.
type Mapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// String renders a mapping as "8080/tcp" or "8080/tcp@10.0.0.1".
func (m Mapping) String() string {
	s := fmt.Sprintf("%d/%s", m.HostPort, m.Protocol)
	if m.HostIP != "" {
		s += "@" + m.HostIP
	}
	return s
}

// ip returns the parsed host IP, nil for "all addresses".
func (m Mapping) ip() net.IP {
	if m.HostIP == "" {
		return nil
	}
	return net.ParseIP(m.HostIP)
}

// applies reports whether the mapping is published over family f (a
// mapping without hostIP is published over both).
func (m Mapping) applies(f chains.Family) bool {
	ip := m.ip()
	return ip == nil || (ip.To4() != nil) == (f == chains.V4)
}

// Validate checks mappings and fills defaults: protocol tcp, lower case,
// hostIP 0.0.0.0 and :: meaning all addresses. Duplicates are refused.
func Validate(ms []Mapping) ([]Mapping, error) {
	seen := map[string]bool{}
	out := make([]Mapping, 0, len(ms))
	for i, m := range ms {
		m.Protocol = strings.ToLower(m.Protocol)
		if m.Protocol == "" {
			m.Protocol = "tcp"
		}
		if m.Protocol != "tcp" && m.Protocol != "udp" {
			return nil, fmt.Errorf("portMappings[%d]: protocol %q is not supported: use \"tcp\" or \"udp\"", i, m.Protocol)
		}
		if m.HostPort < 1 || m.HostPort > 65535 {
			return nil, fmt.Errorf("portMappings[%d]: hostPort %d out of range 1-65535", i, m.HostPort)
		}
		if m.ContainerPort < 1 || m.ContainerPort > 65535 {
			return nil, fmt.Errorf("portMappings[%d]: containerPort %d out of range 1-65535", i, m.ContainerPort)
		}
		if m.HostIP != "" {
			ip := net.ParseIP(m.HostIP)
			if ip == nil {
				return nil, fmt.Errorf("portMappings[%d]: hostIP %q is not an IP address", i, m.HostIP)
			}
			if ip.IsUnspecified() {
				m.HostIP = ""
			} else if ip4 := ip.To4(); ip4 != nil {
				m.HostIP = ip4.String()
			} else {
				m.HostIP = ip.String()
			}
		}
		key := m.String()
		if seen[key] {
			return nil, fmt.Errorf("portMappings[%d]: %s is given twice", i, key)
		}
		seen[key] = true
		out = append(out, m)
	}
	return out, nil
}

// Overlaps reports whether two mappings claim the same host port.
func Overlaps(a, b Mapping) bool {
	if a.HostPort != b.HostPort || a.Protocol != b.Protocol {
		return false
	}
	return a.HostIP == "" || b.HostIP == "" || a.HostIP == b.HostIP
}

// ChainName is the container's chain, named by a hash of network and container ID.
func ChainName(network, containerID string) string {
	s := sha256.Sum256([]byte(network + "\x00" + containerID))
	return ChainPrefix + strings.ToUpper(hex.EncodeToString(s[:8]))
}

// Comment names the owner and the mapping in a dispatch rule.
func Comment(network, containerID string, m Mapping) string {
	return "lanwire portmap-lite net=" + network + " id=" + containerID + " map=" + m.String()
}

// ParseComment reverses Comment.
func ParseComment(c string) (network, containerID string, m Mapping, ok bool) {
	rest, ok := strings.CutPrefix(c, "lanwire portmap-lite net=")
	if !ok {
		return "", "", m, false
	}
	i := strings.LastIndex(rest, " map=")
	j := strings.LastIndex(rest[:max(i, 0)], " id=")
	if i < 0 || j < 0 {
		return "", "", m, false
	}
	network, containerID = rest[:j], rest[j+4:i]
	spec := rest[i+5:]
	portProto, hostIP, _ := strings.Cut(spec, "@")
	port, proto, ok := strings.Cut(portProto, "/")
	p, err := strconv.Atoi(port)
	if !ok || err != nil {
		return "", "", m, false
	}
	return network, containerID, Mapping{HostPort: p, Protocol: proto, HostIP: hostIP}, true
}

// Layout is where portmap-lite's rules live for family f.
func Layout(f chains.Family) chains.Layout {
	loopback := "127.0.0.0/8"
	if f == chains.V6 {
		loopback = "::1/128"
	}
	comment := []string{"-m", "comment", "--comment", "lanwire portmap-lite"}
	return chains.Layout{
		Table: Table,
		Top:   TopChain,
		Hooks: []chains.Hook{
			// From outside: only traffic addressed to this host, never to loopback.
			{Chain: "PREROUTING", Rule: append([]string{"-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", loopback}, append(comment, "-j", TopChain)...)},
			// From the host itself.
			{Chain: "OUTPUT", Rule: append([]string{"-m", "addrtype", "--dst-type", "LOCAL"}, append(comment, "-j", TopChain)...)},
		},
		Fixed: []chains.Fixed{{
			Name:  MasqChain,
			Hook:  chains.Hook{Chain: "POSTROUTING", Rule: append(comment, "-j", MasqChain)},
			Rules: [][]string{{"-m", "mark", "--mark", MasqMark, "-j", "MASQUERADE"}},
		}},
		Lock: "/run/lanwire/portmap-lite.lock",
	}
}

// Spec is everything one container's rules depend on, for one family.
type Spec struct {
	Network     string
	ContainerID string
	Chain       string
	Family      chains.Family
	Addr        net.IPNet // the container's address (and subnet) in this family
	Mappings    []Mapping
	Localhost   bool // 127.0.0.1 reaches the mappings (IPv4 only)
	// MasqAll masquerades every published connection: needed when the
	// container's gateway is not this host (a container on the LAN, as with
	// hostbridge-dhcp), or replies would bypass the host's NAT.
	MasqAll bool
}

// Dispatch renders the top chain's rules: one per mapping.
func (s Spec) Dispatch() [][]string {
	var out [][]string
	for _, m := range s.Mappings {
		if !m.applies(s.Family) {
			continue
		}
		var r []string
		if ip := m.ip(); ip != nil {
			r = append(r, "-d", hostCIDR(ip))
		} else if s.Family == chains.V6 {
			r = append(r, "!", "-d", "::1/128")
		} else if !s.Localhost {
			r = append(r, "!", "-d", "127.0.0.0/8")
		}
		if s.Family == chains.V6 {
			r = append(r, "!", "-s", "fe80::/10") // link-local sources are never DNATed
		}
		r = append(r, "-p", m.Protocol, "--dport", strconv.Itoa(m.HostPort),
			"-m", "comment", "--comment", Comment(s.Network, s.ContainerID, m), "-j", s.Chain)
		out = append(out, r)
	}
	return out
}

// Rules renders the container's chain: per mapping, the masquerade marks
// and the DNAT.
func (s Spec) Rules() [][]string {
	var out [][]string
	subnet := net.IPNet{IP: s.Addr.IP.Mask(s.Addr.Mask), Mask: s.Addr.Mask}
	for _, m := range s.Mappings {
		if !m.applies(s.Family) {
			continue
		}
		var match []string
		if ip := m.ip(); ip != nil {
			match = append(match, "-d", hostCIDR(ip))
		}
		match = append(match, "-p", m.Protocol, "--dport", strconv.Itoa(m.HostPort))
		mark := []string{"-j", "MARK", "--set-xmark", MasqMark}
		switch {
		case s.MasqAll:
			out = append(out, concat(match, mark))
		default:
			// Clients on the container's own subnet (other containers, the
			// container itself) would get replies straight from the
			// container: masquerade them.
			out = append(out, concat(match, []string{"-s", subnet.String()}, mark))
		}
		if s.Localhost && s.Family == chains.V4 && !s.MasqAll {
			out = append(out, concat(match, []string{"-s", "127.0.0.0/8"}, mark))
		}
		to := net.JoinHostPort(s.Addr.IP.String(), strconv.Itoa(m.ContainerPort))
		if s.Family == chains.V4 {
			to = s.Addr.IP.String() + ":" + strconv.Itoa(m.ContainerPort)
		}
		out = append(out, concat(match, []string{"-j", "DNAT", "--to-destination", to}))
	}
	return out
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func hostCIDR(ip net.IP) string {
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String() + "/32"
	}
	return ip.String() + "/128"
}
