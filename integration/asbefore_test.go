package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// hostState is what lanwire may change on the host and must put back:
// the nftables ruleset (iptables-nft's tables included), the bridge's
// switches and sysctls, and its ports' flags.
func hostState(t *testing.T, bridge string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(ruleset(t))
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(tool).Output()
		// Comments carry the time of the dump.
		b.WriteString(regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(string(out), ""))
	}
	files := []string{
		"/proc/sys/net/bridge/bridge-nf-call-iptables", "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
		"/sys/class/net/" + bridge + "/bridge/nf_call_iptables", "/sys/class/net/" + bridge + "/bridge/nf_call_ip6tables",
		"/proc/sys/net/ipv4/conf/" + bridge + "/forwarding", "/proc/sys/net/ipv4/conf/" + bridge + "/route_localnet",
		"/proc/sys/net/ipv4/ip_forward",
	}
	ports, _ := filepath.Glob("/sys/class/net/" + bridge + "/brif/*/hairpin_mode")
	for _, f := range append(files, ports...) {
		v, err := os.ReadFile(f)
		fmt.Fprintf(&b, "%s=%s %v\n", f, strings.TrimSpace(string(v)), err != nil)
	}
	return b.String()
}

// After DEL of the last container, the host is exactly as it was before
// the first ADD (tables, FORWARD rules, the bridge's switches and sysctls,
// port flags); the same after an ADD that fails half-way and the DEL a
// runtime sends then. Not parallel: it needs no other container on the host.
func TestHostAsBefore(t *testing.T) {
	g := newOfflineGround(t, "2m")
	l := g.lan
	pm := map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}, "localhost": true}
	n := g.network(t, "asbefore", g.offlineConf(), pm)
	before := hostState(t, l.Bridge)

	a := attach{ID: "asbefore-1", Netns: container(t, l), Caps: maps(tcpMap(38301, 80, ""),
		tcpMap(38302, 80, "127.0.0.1"))}
	n.MustAdd(a)
	if during := hostState(t, l.Bridge); during == before {
		t.Fatal("the host looks the same with a container attached: the comparison would prove nothing")
	}
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
	if after := settled(t, l.Bridge, before); after != before {
		t.Errorf("after the last DEL the host differs from before the first ADD:\n%s", lineDiff(before, after))
	}

	// portmap-lite, last in the chain, refuses a port a host process holds:
	// hostbridge-dhcp and offline-egress succeeded before it.
	serveTCP(t, "", ":38303", "host process")
	b := attach{ID: "asbefore-2", Netns: container(t, l), Caps: maps(tcpMap(38303, 80, ""))}
	if _, err := n.Add(b); err == nil {
		t.Fatal("ADD took a port a host process holds")
	}
	if err := n.Del(b); err != nil {
		t.Fatalf("DEL after the failed ADD: %v", err)
	}
	if after := settled(t, l.Bridge, before); after != before {
		t.Errorf("after a failed ADD and its DEL the host differs from before:\n%s", lineDiff(before, after))
	}
}

// settled returns the host's state once it is before again, or as it is
// after the lease daemon's time to remove lanwire's empty tables (which
// the last DEL leaves, see guard.Linger) has passed twice over.
func settled(t *testing.T, bridge, before string) string {
	t.Helper()
	deadline := time.Now().Add(2*testLinger + 2*pollInterval + time.Second)
	for {
		s := hostState(t, bridge)
		if s == before || time.Now().After(deadline) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lineDiff lists the lines only in a (-) or only in b (+).
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !inb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ina[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
