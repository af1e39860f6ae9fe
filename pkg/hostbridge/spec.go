package hostbridge

import (
	"crypto/sha256"
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/lanwire/lanwire/pkg/lease"
)

// parseArgs splits CNI_ARGS ("K=V;K=V").
func parseArgs(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %q is not KEY=VALUE", kv), "")
		}
		out[k] = v
	}
	return out, nil
}

// hostnameArgs are the CNI_ARGS a runtime puts the container's name in, in order of preference.
var hostnameArgs = []string{"HOSTNAME", "K8S_POD_NAME", "NERDCTL_CNI_DHCP_HOSTNAME"}

// keyOf names the lease of this attachment.
func keyOf(c *Config, args *skel.CmdArgs) lease.Key {
	return lease.Key{ContainerID: args.ContainerID, Network: c.Name, IfName: args.IfName}
}

// hostVethName is the host end's name, derived from the key so DEL finds it
// without state.
func hostVethName(k lease.Key) string { return k.HostIf() }

// macFor picks the container MAC: the mac capability, then CNI_ARGS MAC=,
// then one derived from container ID and ifname.
func macFor(c *Config, args *skel.CmdArgs, cargs map[string]string) (net.HardwareAddr, error) {
	if c.RuntimeConfig.MAC != "" {
		return parseMAC(c.RuntimeConfig.MAC)
	}
	if m, ok := cargs["MAC"]; ok {
		mac, err := parseMAC(m)
		if err != nil {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS MAC: "+err.Error(), "")
		}
		return mac, nil
	}
	return DeriveMAC(args.ContainerID, args.IfName), nil
}

// buildSpec turns config and runtime inputs into what the daemon needs.
func buildSpec(c *Config, args *skel.CmdArgs) (lease.Spec, error) {
	cargs, err := parseArgs(args.Args)
	if err != nil {
		return lease.Spec{}, err
	}
	mac, err := macFor(c, args, cargs)
	if err != nil {
		return lease.Spec{}, err
	}
	s := lease.Spec{
		Netns: args.Netns, IfName: args.IfName, Bridge: c.Bridge, MAC: mac.String(),
		VendorClass: *c.VendorClass, RequestOptions: c.requestCodes, RouteMetric: c.RouteMetric,
	}
	s.DHCPv6 = c.WantsDHCPv6()
	for _, a := range c.RuntimeConfig.IPs {
		ip, _ := parseAnyIP(a)
		switch {
		case ip.To4() != nil && s.RequestIP == nil:
			s.RequestIP = ip
		case ip.To4() == nil && s.RequestIP6 == nil:
			s.RequestIP6 = ip
		}
	}
	switch {
	case s.RequestIP != nil:
	case cargs["IP"] != "":
		ip, err := parseIP(cargs["IP"])
		if err != nil {
			return s, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS IP: "+err.Error(), "")
		}
		s.RequestIP = ip
	}
	s.Hostname = c.Hostname
	for _, a := range hostnameArgs {
		if s.Hostname != "" {
			break
		}
		if v := cargs[a]; v != "" && checkHostname(v) == nil {
			s.Hostname = v
		}
	}
	switch c.ClientID {
	case "mac":
		s.ClientID = append([]byte{1}, mac...)
	case "container":
		// RFC 4361 form: type 255, IAID, DUID-UUID from container ID and ifname.
		h := sha256.Sum256([]byte("lanwire-clientid/" + args.ContainerID + "/" + args.IfName))
		s.ClientID = append([]byte{255}, h[:4]...)
		s.ClientID = append(s.ClientID, 0, 4)
		s.ClientID = append(s.ClientID, h[4:20]...)
	default:
		s.ClientID = append([]byte{0}, c.ClientID...)
	}
	if len(c.sendCodes) > 0 {
		s.SendOptions = map[uint8][]byte{}
		for code, o := range c.sendCodes {
			v := o.Value
			if o.FromArg != "" {
				av, ok := cargs[o.FromArg]
				if !ok {
					continue // nothing to send for this container
				}
				v = av
			}
			if len(v) > 255 {
				return s, invalid("\"sendOptions\": value of option %d is longer than 255 bytes", code)
			}
			s.SendOptions[code] = []byte(v)
		}
	}
	return s, nil
}
