package egress

import (
	"strings"

	"github.com/lanwire/lanwire/pkg/chains"
)

// Layout is where offline-egress's rules live: TopChain in mangle,
// reached first from PREROUTING, which sees a container's packets before any
// filter chain, bridged or routed, to the host or beyond.
var Layout = chains.Layout{
	Table: Table,
	Top:   TopChain,
	Hooks: []chains.Hook{{Chain: Hook, Rule: HookRule()}},
	Lock:  "/run/lanwire/offline-egress.lock",

	SharedPrefix: SharedPrefix,
}

// Comment is the comment that names a container in its dispatch rule.
func Comment(network, containerID string) string {
	return "lanwire offline-egress net=" + network + " id=" + containerID
}

// ParseComment returns the network and container ID of a Comment.
func ParseComment(c string) (network, containerID string, ok bool) {
	rest, ok := strings.CutPrefix(c, "lanwire offline-egress net=")
	if !ok {
		return "", "", false
	}
	network, containerID, ok = strings.Cut(rest, " id=")
	return network, containerID, ok
}

// RenderInstall is the iptables-restore input that installs s for family f
// with its rules in its own chain, deleting the dispatch lines old first.
// The plugin puts the rules in a shared chain instead (Spec.Shared); this
// form shows the rules and dispatch as iptables-restore reads them.
func RenderInstall(s Spec, f Family, old []string) string {
	return chains.RenderInstall(Layout, s.Chain, old, [][]string{s.DispatchRule()}, s.Rules(f), nil)
}
