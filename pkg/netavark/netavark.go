// Package netavark is lanwire as a netavark plugin (podman 5 and later):
// `lanwire create|setup NETNS|teardown NETNS|info`, JSON in and out as
// netavark's plugin API 1.0.0 says. A network's options are
// hostbridge-dhcp's, offline-egress's and portmap-lite's conflist fields
// (`-o bridge=br0 -o ipv6=auto`), plus `allow`, offline-egress's allowlist
// written `TO[:PORTS],...`; setup runs the same code as the CNI chain
// hostbridge-dhcp, offline-egress (when `allow` is set) and portmap-lite,
// in-process.
package netavark

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/lanwire/lanwire/pkg/hostbridge"
	"github.com/lanwire/lanwire/pkg/offline"
	"github.com/lanwire/lanwire/pkg/portmap"
)

// APIVersion is the netavark plugin API lanwire speaks.
const APIVersion = "1.0.0"

// Network is the part of podman's network config the plugin reads.
type Network struct {
	Name    string            `json:"name"`
	ID      string            `json:"id"`
	Driver  string            `json:"driver"`
	Options map[string]string `json:"options"`
	Subnets []json.RawMessage `json:"subnets"`
}

// PortMapping is a published port as podman passes it.
type PortMapping struct {
	ContainerPort int    `json:"container_port"`
	HostIP        string `json:"host_ip"`
	HostPort      int    `json:"host_port"`
	Protocol      string `json:"protocol"`
	Range         int    `json:"range"`
}

// PerNetwork is the container's options on one network.
type PerNetwork struct {
	InterfaceName string   `json:"interface_name"`
	StaticIPs     []string `json:"static_ips"`
	StaticMAC     string   `json:"static_mac"`
}

// Exec is the input of setup and teardown.
type Exec struct {
	ContainerID    string        `json:"container_id"`
	ContainerName  string        `json:"container_name"`
	PortMappings   []PortMapping `json:"port_mappings"`
	Network        Network       `json:"network"`
	NetworkOptions PerNetwork    `json:"network_options"`
}

// Status is setup's answer.
type Status struct {
	DNSSearchDomains []string             `json:"dns_search_domains"`
	DNSServerIPs     []string             `json:"dns_server_ips"`
	Interfaces       map[string]Interface `json:"interfaces"`
}

// Interface is one container interface in a Status.
type Interface struct {
	MACAddress string    `json:"mac_address"`
	Subnets    []Address `json:"subnets"`
}

// Address is an address of an Interface, with its prefix, and its gateway.
type Address struct {
	IPNet   string `json:"ipnet"`
	Gateway string `json:"gateway,omitempty"`
}

// Info is the info subcommand's answer.
type Info struct {
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
}

// Create checks network (podman's config, as a JSON object) and returns it
// completed: addresses come from the LAN's DHCP server, so podman gets the
// "dhcp" IPAM driver and allocates none itself, and no DNS server of its
// own (the containers get the LAN's).
func Create(network []byte) ([]byte, error) {
	var raw map[string]any
	if err := json.Unmarshal(network, &raw); err != nil {
		return nil, fmt.Errorf("reading the network config: %w", err)
	}
	var n Network
	if err := json.Unmarshal(network, &n); err != nil {
		return nil, fmt.Errorf("reading the network config: %w", err)
	}
	if len(n.Subnets) > 0 {
		return nil, errors.New("a lanwire network takes its addresses from the LAN's DHCP server: create it without --subnet, --gateway or --ip-range")
	}
	if ipam, _ := raw["ipam_options"].(map[string]any); ipam != nil {
		if d, _ := ipam["driver"].(string); d != "" && d != "dhcp" {
			return nil, fmt.Errorf("a lanwire network takes its addresses from the LAN's DHCP server: --ipam-driver %s cannot be used", d)
		}
	}
	if _, err := configs(n, Exec{ContainerID: "create", NetworkOptions: PerNetwork{InterfaceName: "eth0"}, Network: n}, true); err != nil {
		return nil, err
	}
	raw["ipam_options"] = map[string]any{"driver": "dhcp"}
	raw["dns_enabled"] = false
	return json.Marshal(raw)
}

// plugin is one plugin of the chain: its config and its functions.
type plugin struct {
	name  string
	conf  map[string]any
	parse func([]byte) error // the plugin's own config check
	add   func(*skel.CmdArgs) (*current.Result, string, error)
	del   func(*skel.CmdArgs) error
}

// configs builds the chain a conflist would hold for network n and the
// container of e: hostbridge-dhcp, offline-egress when "allow" is set,
// portmap-lite. With check, each config is parsed as its plugin would.
func configs(n Network, e Exec, check bool) ([]plugin, error) {
	hb := map[string]any{"type": "hostbridge-dhcp"}
	oe := map[string]any{"type": "offline-egress"}
	pm := map[string]any{"type": "portmap-lite"}
	_, isOffline := n.Options["allow"]
	keys := make([]string, 0, len(n.Options))
	for k := range n.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := n.Options[k]
		if k == "allow" {
			allow, err := ParseAllow(v)
			if err != nil {
				return nil, err
			}
			oe["allow"] = allow
			continue
		}
		found := false
		for _, t := range []struct {
			conf   map[string]any
			config any
		}{{hb, hostbridge.Config{}}, {oe, offline.Config{}}, {pm, portmap.Config{}}} {
			typ, ok := fieldType(reflect.TypeOf(t.config), k)
			if !ok {
				continue
			}
			val, err := optionValue(typ, v)
			if err != nil {
				return nil, fmt.Errorf("option %s=%q: %w", k, v, err)
			}
			t.conf[k] = val
			found = true
		}
		if !found {
			return nil, fmt.Errorf("unknown option %q: lanwire takes hostbridge-dhcp's, offline-egress's and portmap-lite's conflist fields (%s) and allow", k, strings.Join(knownOptions(), ", "))
		}
	}
	if _, ok := hb["bridge"]; !ok {
		return nil, errors.New("option bridge is missing: `podman network create -d lanwire -o bridge=BR NAME`, BR an existing bridge on your LAN")
	}
	if !isOffline {
		for k := range oe {
			if k != "type" && k != "daemonSocket" {
				return nil, fmt.Errorf("option %s is offline-egress's: set allow too (allow= for no exception)", k)
			}
		}
	}
	if mac := e.NetworkOptions.StaticMAC; mac != "" {
		hb["runtimeConfig"] = map[string]any{"mac": mac}
	}
	if len(e.NetworkOptions.StaticIPs) > 0 {
		return nil, errors.New("a lanwire network's addresses come from the LAN's DHCP server: --ip cannot be used (reserve the address for the container's MAC, --mac-address, in the DHCP server)")
	}
	ms, err := mappings(e.PortMappings)
	if err != nil {
		return nil, err
	}
	pm["runtimeConfig"] = map[string]any{"portMappings": ms}
	// podman holds the host ports it publishes (and refuses ports a host
	// process holds) before netavark runs the plugin.
	pm["listenCheck"] = false
	chain := []plugin{{"hostbridge-dhcp", hb, func(b []byte) error { _, err := hostbridge.Parse(b); return err },
		hostbridge.Attach, hostbridge.Del}}
	if isOffline {
		chain = append(chain, plugin{"offline-egress", oe, func(b []byte) error { _, err := offline.Parse(b); return err },
			offline.Lockdown, offline.Del})
	}
	chain = append(chain, plugin{"portmap-lite", pm, func(b []byte) error { _, err := portmap.Parse(b); return err },
		portmap.Publish, portmap.Del})
	for _, p := range chain {
		p.conf["cniVersion"] = "1.1.0"
		p.conf["name"] = n.Name
		if check {
			data, _ := json.Marshal(p.conf)
			if err := p.parse(data); err != nil {
				return nil, message(err)
			}
		}
	}
	return chain, nil
}

// knownOptions lists the option names a network takes.
func knownOptions() []string {
	seen := map[string]bool{"allow": true}
	for _, c := range []any{hostbridge.Config{}, offline.Config{}, portmap.Config{}} {
		t := reflect.TypeOf(c)
		for i := 0; i < t.NumField(); i++ {
			if name := jsonName(t.Field(i)); name != "" {
				seen[name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// jsonName is a config field's name in a conflist, "" for fields an
// option cannot set (the CNI ones, runtimeConfig, unexported ones).
func jsonName(f reflect.StructField) string {
	if !f.IsExported() || f.Anonymous {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" || name == "-" || name == "runtimeConfig" {
		return ""
	}
	return name
}

// fieldType is the type of the config field called name in a conflist.
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		if jsonName(t.Field(i)) == name {
			return t.Field(i).Type, true
		}
	}
	return nil, false
}

// optionValue turns an option's text into the JSON value of a field of
// type t: booleans and numbers parsed, lists split at commas, anything
// else that is not a string read as JSON.
func optionValue(t reflect.Type, v string) (any, error) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return strconv.ParseBool(v)
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return strconv.Atoi(v)
	case reflect.String:
		return v, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			if v == "" {
				return []string{}, nil
			}
			return strings.Split(v, ","), nil
		}
	case reflect.Struct:
		if _, ok := reflect.New(t).Interface().(json.Unmarshaler); ok && !strings.HasPrefix(v, "{") {
			return v, nil // a duration: "20s"
		}
	}
	var out any
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("want a JSON value: %w", err)
	}
	return out, nil
}

// ParseAllow reads the allow option: comma-separated entries TO or
// TO:PORTS, TO "host" or a CIDR, PORTS one or more of offline-egress's port
// specs joined by "+" ("host:8000/tcp,10.1.2.0/24:53/udp+53/tcp"). An empty
// value allows nothing (the container is offline, but for DHCP).
func ParseAllow(v string) ([]offline.AllowEntry, error) {
	out := []offline.AllowEntry{}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		to, ports := item, ""
		// An IPv6 address holds colons too: only an entry that is not a
		// destination by itself is split at its last one.
		if i := strings.LastIndex(item, ":"); !isDest(item) && i >= 0 {
			to, ports = item[:i], item[i+1:]
		}
		if !isDest(to) || (ports == "" && to != item) {
			return nil, fmt.Errorf("allow entry %q: want host or a CIDR, then :PORTS (8000/tcp, several joined by +)", item)
		}
		e := offline.AllowEntry{To: to}
		if ports != "" {
			e.Ports = strings.Split(ports, "+")
		}
		out = append(out, e)
	}
	return out, nil
}

// isDest reports whether s is an allow entry's destination: "host", a CIDR
// or an address.
func isDest(s string) bool {
	if s == "host" || net.ParseIP(s) != nil {
		return true
	}
	_, _, err := net.ParseCIDR(s)
	return err == nil
}

// mappings turns podman's port mappings into portmap-lite's.
func mappings(pms []PortMapping) ([]portmap.Mapping, error) {
	out := []portmap.Mapping{}
	for _, p := range pms {
		n := p.Range
		if n < 1 {
			n = 1
		}
		protos := strings.Split(p.Protocol, ",")
		if p.Protocol == "" {
			protos = []string{"tcp"}
		}
		for _, proto := range protos {
			if proto != "tcp" && proto != "udp" {
				return nil, fmt.Errorf("port %d/%s: lanwire publishes tcp and udp ports", p.HostPort, proto)
			}
			for i := 0; i < n; i++ {
				out = append(out, portmap.Mapping{HostPort: p.HostPort + i, ContainerPort: p.ContainerPort + i, Protocol: proto, HostIP: p.HostIP})
			}
		}
	}
	return out, nil
}

// args is the runtime's part of a plugin call for container e.
func args(e Exec, netns string, conf map[string]any) *skel.CmdArgs {
	data, _ := json.Marshal(conf)
	cargs := "IgnoreUnknown=1"
	if e.ContainerName != "" {
		cargs += ";K8S_POD_NAME=" + e.ContainerName
	}
	ifname := e.NetworkOptions.InterfaceName
	if ifname == "" {
		ifname = "eth0"
	}
	return &skel.CmdArgs{ContainerID: e.ContainerID, Netns: netns, IfName: ifname, Args: cargs, StdinData: data}
}

// Setup attaches the container as the CNI chain would and answers its
// interface, addresses and DNS.
func Setup(netns string, input []byte) (*Status, error) {
	var e Exec
	if err := json.Unmarshal(input, &e); err != nil {
		return nil, fmt.Errorf("reading setup's input: %w", err)
	}
	chain, err := configs(e.Network, e, false)
	if err != nil {
		return nil, err
	}
	var prev *current.Result
	for i, p := range chain {
		if prev != nil {
			raw, _ := json.Marshal(prev)
			p.conf["prevResult"] = json.RawMessage(raw)
		}
		res, _, err := p.add(args(e, netns, p.conf))
		if err != nil {
			// What the chain did so far is undone, as a runtime's DEL would.
			for j := i; j >= 0; j-- {
				delete(chain[j].conf, "prevResult")
				_ = chain[j].del(args(e, netns, chain[j].conf))
			}
			return nil, fmt.Errorf("%s: %w", p.name, message(err))
		}
		prev = res
	}
	return status(prev, e), nil
}

// Teardown removes the container as the CNI chain's DEL would, last
// plugin first; it succeeds when nothing is left.
func Teardown(netns string, input []byte) error {
	var e Exec
	if err := json.Unmarshal(input, &e); err != nil {
		return fmt.Errorf("reading teardown's input: %w", err)
	}
	chain, err := configs(e.Network, e, false)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(chain) - 1; i >= 0; i-- {
		if err := chain[i].del(args(e, netns, chain[i].conf)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", chain[i].name, message(err)))
		}
	}
	return errors.Join(errs...)
}

// status is the chain's result as netavark wants it.
func status(r *current.Result, e Exec) *Status {
	s := &Status{DNSSearchDomains: []string{}, DNSServerIPs: []string{}, Interfaces: map[string]Interface{}}
	s.DNSServerIPs = append(s.DNSServerIPs, r.DNS.Nameservers...)
	s.DNSSearchDomains = append(s.DNSSearchDomains, r.DNS.Search...)
	if r.DNS.Domain != "" && len(r.DNS.Search) == 0 {
		s.DNSSearchDomains = append(s.DNSSearchDomains, r.DNS.Domain)
	}
	for i, ifc := range r.Interfaces {
		if ifc.Sandbox == "" {
			continue
		}
		out := Interface{MACAddress: ifc.Mac, Subnets: []Address{}}
		for _, ip := range r.IPs {
			if ip.Interface == nil || *ip.Interface != i || ip.Address.IP.IsLinkLocalUnicast() {
				continue
			}
			a := Address{IPNet: ip.Address.String()}
			if ip.Gateway != nil {
				a.Gateway = ip.Gateway.String()
			}
			out.Subnets = append(out.Subnets, a)
		}
		s.Interfaces[ifc.Name] = out
	}
	return s
}

// message is a plugin error as a person reads it: a CNI error's message
// and details, anything else as it is.
func message(err error) error {
	var te *types.Error
	if errors.As(err, &te) {
		if te.Details != "" {
			return fmt.Errorf("%s: %s", te.Msg, te.Details)
		}
		return errors.New(te.Msg)
	}
	return err
}
