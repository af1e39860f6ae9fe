// Package chain holds what lanwire's chained plugins (offline-egress,
// portmap-lite) and the doctor check of the chain they are in, and the
// conversion of the prevResult a runtime passes to any of its plugins.
package chain

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/version"
)

// VersionProblem says what is wrong with a chain's cniVersion ("" when
// nothing is): without one, or below 0.3.0, the chain passes results in the
// 0.1.0/0.2.0 format, which names no interfaces, so offline-egress and
// portmap-lite cannot find the container's port.
func VersionProblem(v string) string {
	if v == "" {
		return "the conflist has no \"cniVersion\": the chain then passes results in the 0.1.0 format, which names no interfaces, so offline-egress and portmap-lite cannot find the container's port"
	}
	if ok, err := version.GreaterThanOrEqualTo(v, "0.3.0"); err != nil || !ok {
		return fmt.Sprintf("the conflist's \"cniVersion\" is %q: before 0.3.0 results name no interfaces, so offline-egress and portmap-lite cannot find the container's port", v)
	}
	return ""
}
