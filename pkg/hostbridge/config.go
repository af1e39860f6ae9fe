// Package hostbridge is the hostbridge-dhcp CNI plugin: a veth from the
// container to an existing host bridge, addressed by the LAN's DHCP server
// through the lease daemon.
package hostbridge

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// Config is the plugin's network configuration.
type Config struct {
	types.PluginConf
	Bridge          string            `json:"bridge"`
	MTU             int               `json:"mtu,omitempty"`
	UseLeaseMTU     bool              `json:"useLeaseMTU,omitempty"`
	IPv6            string            `json:"ipv6,omitempty"`
	LeaseTimeout    Duration          `json:"leaseTimeout,omitempty"`
	ClientID        string            `json:"clientID,omitempty"`
	Hostname        string            `json:"hostname,omitempty"`
	VendorClass     *string           `json:"vendorClass,omitempty"`
	SendOptions     map[string]Option `json:"sendOptions,omitempty"`
	RequestOptions  []OptionName      `json:"requestOptions,omitempty"`
	SkipRoutes      bool              `json:"skipRoutes,omitempty"`
	IgnoreConflicts bool              `json:"ignoreConflicts,omitempty"`
	RouteMetric     int               `json:"routeMetric,omitempty"`
	DaemonSocket    string            `json:"daemonSocket,omitempty"`
	// AutoStartDaemon starts the lease daemon on ADD when its socket does
	// not answer. Default true.
	AutoStartDaemon *bool `json:"autoStartDaemon,omitempty"`
	// DaemonStateDir is passed to a daemon the plugin starts itself.
	DaemonStateDir string `json:"daemonStateDir,omitempty"`
	// SpoofCheck makes the container's frames carry its own MAC, ARP
	// sender and IP source addresses. Default true.
	SpoofCheck *bool `json:"spoofCheck,omitempty"`

	RuntimeConfig struct {
		MAC string   `json:"mac,omitempty"`
		IPs []string `json:"ips,omitempty"`
	} `json:"runtimeConfig,omitempty"`

	// Filled in by Parse.
	sendCodes    map[uint8]Option
	requestCodes []uint8
}

// Duration is a time.Duration written as a Go duration string ("20s").
type Duration struct{ time.Duration }

// UnmarshalJSON accepts "20s" style strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"20s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: use a form such as \"20s\" or \"1m\"", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Option is a value for sendOptions: a string sent as its bytes, or
// {"fromArg": "NAME"} to take the value from CNI_ARGS.
type Option struct {
	Value   string `json:"value,omitempty"`
	FromArg string `json:"fromArg,omitempty"`
}

// UnmarshalJSON accepts "text" or {"fromArg": "NAME"} or {"value": "text"}.
func (o *Option) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &o.Value)
	}
	type plain Option
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("an option value must be a string or {\"fromArg\": \"NAME\"}: %v", err)
	}
	*o = Option(p)
	return nil
}

// OptionName is a DHCP option given by code (number or numeric string) or name.
type OptionName struct{ Code uint8 }

// UnmarshalJSON accepts 42, "42" or "ntp-servers".
func (n *OptionName) UnmarshalJSON(b []byte) error {
	var num float64
	if err := json.Unmarshal(b, &num); err == nil {
		if num < 1 || num > 254 || num != float64(int(num)) {
			return fmt.Errorf("DHCP option code %v out of range 1-254", num)
		}
		n.Code = uint8(num)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a DHCP option must be a code or a name, got %s", b)
	}
	c, err := optionCode(s)
	n.Code = c
	return err
}

var optionNames = map[string]uint8{
	"subnet-mask": 1, "router": 3, "dns-server": 6, "domain-name-server": 6, "hostname": 12, "host-name": 12,
	"domain-name": 15, "interface-mtu": 26, "broadcast": 28, "static-route": 33, "ntp-server": 42, "ntp-servers": 42,
	"vendor-specific": 43, "requested-address": 50, "vendor-class": 60, "client-id": 61, "user-class": 77,
	"fqdn": 81, "domain-search": 119, "classless-static-route": 121,
}

// reservedSend are options the client manages itself.
var reservedSend = map[uint8]bool{50: true, 51: true, 53: true, 54: true, 55: true, 57: true, 61: true, 255: true, 0: true}

func optionCode(s string) (uint8, error) {
	if c, ok := optionNames[strings.ToLower(s)]; ok {
		return c, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > 254 {
		return 0, fmt.Errorf("unknown DHCP option %q: use a code from 1 to 254 or a name such as \"ntp-servers\"", s)
	}
	return uint8(v), nil
}

// Defaults.
const (
	DefaultLeaseTimeout = 20 * time.Second
	IPv6Off             = "off"
	IPv6DHCPv6          = "dhcpv6"
	IPv6SLAAC           = "slaac"
	IPv6Auto            = "auto"
)

// WantsDHCPv6 reports whether the ipv6 mode takes a DHCPv6 (IA_NA) lease.
func (c *Config) WantsDHCPv6() bool { return c.IPv6 == IPv6DHCPv6 || c.IPv6 == IPv6Auto }

// WantsSLAAC reports whether the ipv6 mode takes a SLAAC address.
func (c *Config) WantsSLAAC() bool { return c.IPv6 == IPv6SLAAC || c.IPv6 == IPv6Auto }

// Parse decodes and checks a plugin config. Every failure is a *types.Error
// with code 7 and a message that says what to fix.
func Parse(stdin []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(stdin))
	if err := dec.Decode(&c); err != nil {
		return nil, invalid("parsing network configuration: %v", err)
	}
	if c.Name == "" {
		return nil, invalid("network configuration has no \"name\"")
	}
	if c.Bridge == "" {
		return nil, invalid("\"bridge\" is required: name an existing Linux bridge on the host, e.g. \"bridge\": \"br0\"")
	}
	if len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/ \t\n:") {
		return nil, invalid("\"bridge\" %q is not a valid interface name", c.Bridge)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return nil, invalid("\"mtu\" %d out of range 576-65535", c.MTU)
	}
	switch c.IPv6 {
	case "":
		c.IPv6 = IPv6Off
	case IPv6Off, IPv6DHCPv6, IPv6SLAAC, IPv6Auto:
	default:
		return nil, invalid("\"ipv6\" must be \"off\", \"dhcpv6\", \"slaac\" or \"auto\", got %q", c.IPv6)
	}
	if c.LeaseTimeout.Duration == 0 {
		c.LeaseTimeout.Duration = DefaultLeaseTimeout
	}
	if c.LeaseTimeout.Duration < time.Second || c.LeaseTimeout.Duration > 10*time.Minute {
		return nil, invalid("\"leaseTimeout\" %s out of range 1s-10m", c.LeaseTimeout.Duration)
	}
	if c.ClientID == "" {
		c.ClientID = "mac"
	}
	if len(c.ClientID) > 250 {
		return nil, invalid("\"clientID\" is longer than 250 bytes")
	}
	if c.Hostname != "" {
		if err := checkHostname(c.Hostname); err != nil {
			return nil, invalid("\"hostname\": %v", err)
		}
	}
	if c.VendorClass == nil {
		v := "lanwire"
		c.VendorClass = &v
	}
	c.sendCodes = map[uint8]Option{}
	for name, v := range c.SendOptions {
		code, err := optionCode(name)
		if err != nil {
			return nil, invalid("\"sendOptions\": %v", err)
		}
		if reservedSend[code] {
			return nil, invalid("\"sendOptions\": option %d is set by the client itself and cannot be overridden", code)
		}
		if _, dup := c.sendCodes[code]; dup {
			return nil, invalid("\"sendOptions\": option %d is given twice (as a name and as a code?)", code)
		}
		if v.Value == "" && v.FromArg == "" {
			return nil, invalid("\"sendOptions\" %q: give a value or {\"fromArg\": \"NAME\"}", name)
		}
		c.sendCodes[code] = v
	}
	for _, o := range c.RequestOptions {
		c.requestCodes = append(c.requestCodes, o.Code)
	}
	if c.RouteMetric < 0 {
		return nil, invalid("\"routeMetric\" must not be negative")
	}
	if c.DaemonSocket == "" {
		c.DaemonSocket = leaseapi.DefaultSocket
	}
	if !strings.HasPrefix(c.DaemonSocket, "/") {
		return nil, invalid("\"daemonSocket\" must be an absolute path, got %q", c.DaemonSocket)
	}
	if c.RuntimeConfig.MAC != "" {
		if _, err := parseMAC(c.RuntimeConfig.MAC); err != nil {
			return nil, invalid("runtimeConfig \"mac\": %v", err)
		}
	}
	for _, ip := range c.RuntimeConfig.IPs {
		addr, err := parseAnyIP(ip)
		if err != nil {
			return nil, invalid("runtimeConfig \"ips\": %v", err)
		}
		if addr.To4() == nil && !c.WantsDHCPv6() {
			return nil, invalid("runtimeConfig \"ips\": %s is an IPv6 address, which only a DHCPv6 lease can ask for: set \"ipv6\" to \"dhcpv6\" or \"auto\"", ip)
		}
	}
	return &c, nil
}

func invalid(format string, a ...any) error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

func checkHostname(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", h)
	}
	for _, r := range h {
		if !(r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("%q holds %q: use letters, digits, '-' and '.'", h, r)
		}
	}
	return nil
}

// parseMAC accepts a unicast Ethernet MAC.
func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%q is not an Ethernet MAC such as \"02:42:ac:11:00:02\"", s)
	}
	if mac[0]&1 == 1 {
		return nil, fmt.Errorf("%q is a multicast MAC; a container needs a unicast one", s)
	}
	if bytes.Equal(mac, make([]byte, 6)) {
		return nil, fmt.Errorf("%q is the zero MAC", s)
	}
	return mac, nil
}

// parseAnyIP accepts an address with or without a prefix length.
func parseAnyIP(s string) (net.IP, error) {
	ip := net.ParseIP(s)
	if ip == nil {
		var err error
		ip, _, err = net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4, nil
	}
	return ip, nil
}

// parseIP accepts "10.0.0.5" or "10.0.0.5/24" and returns the IPv4 address.
func parseIP(s string) (net.IP, error) {
	ip, err := parseAnyIP(s)
	if err != nil {
		return nil, err
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("%q is not an IPv4 address (CNI_ARGS IP= asks DHCPv4 for an address; ask for an IPv6 one with the ips capability)", s)
	}
	return ip, nil
}

// DeriveMAC returns the MAC a container gets when none is given: stable for
// (containerID, ifname), locally administered, unicast.
func DeriveMAC(containerID, ifname string) net.HardwareAddr {
	s := sha256.Sum256([]byte("lanwire-mac/" + containerID + "/" + ifname))
	mac := net.HardwareAddr(append([]byte(nil), s[:6]...))
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

// Spoof reports whether spoofCheck is on (the default).
func (c *Config) Spoof() bool { return c.SpoofCheck == nil || *c.SpoofCheck }
