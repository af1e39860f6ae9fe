package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanwire/lanwire/pkg/forward"
)

// ruleset is `nft list ruleset` (what a user would look at).
func ruleset(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v %s", err, out)
	}
	return string(out)
}

// entriesOf counts the set elements and rules that name container id in
// lanwire's tables (their comments say "net=NETWORK id=ID").
func entriesOf(t testing.TB, network, id string) int {
	t.Helper()
	re := regexp.MustCompile(`comment "lanwire[^"]* net=` + regexp.QuoteMeta(network) + ` id=` + regexp.QuoteMeta(id) + `[" ]`)
	return len(re.FindAllString(ruleset(t), -1))
}

// portmapEntries counts portmap-lite's entries for container id.
func portmapEntries(t testing.TB, network, id string) int {
	t.Helper()
	re := regexp.MustCompile(`comment "lanwire portmap-lite net=` + regexp.QuoteMeta(network) + ` id=` + regexp.QuoteMeta(id) + `[" ]`)
	return len(re.FindAllString(ruleset(t), -1))
}

// mappingEntries counts the DNAT entries that publish mapping m ("8080/tcp")
// for container id.
func mappingEntries(t testing.TB, network, id, m string) int {
	t.Helper()
	return strings.Count(ruleset(t), `net=`+network+` id=`+id+` map=`+m+`"`)
}

// lanwireTables lists lanwire's tables ("bridge lanwire", ...).
func lanwireTables(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v %s", err, out)
	}
	var ts []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasPrefix(f[2], "lanwire") {
			ts = append(ts, f[1]+" "+f[2])
		}
	}
	return ts
}

// nftRun runs nft with args, failing the test on an error.
func nftRun(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("nft", args...).CombinedOutput(); err != nil {
		t.Fatalf("nft %v: %v %s", args, err, out)
	}
}

// ruleHandle returns the handle of the rule with comment in chain.
func ruleHandle(t testing.TB, family, table, chain, comment string) string {
	t.Helper()
	out, err := exec.Command("nft", "-a", "list", "chain", family, table, chain).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list chain %s %s %s: %v %s", family, table, chain, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `comment "`+comment+`"`) {
			if i := strings.LastIndex(line, "# handle "); i >= 0 {
				return strings.TrimSpace(line[i+len("# handle "):])
			}
		}
	}
	t.Fatalf("no rule %q in %s %s %s:\n%s", comment, family, table, chain, out)
	return ""
}

// deleteRule removes the rule with comment from chain by hand, as an
// administrator or another tool might.
func deleteRule(t testing.TB, family, table, chain, comment string) {
	t.Helper()
	nftRun(t, "delete", "rule", family, table, chain, "handle", ruleHandle(t, family, table, chain, comment))
}

// The last container's DEL leaves lanwire's tables, empty, for the next
// container; the lease daemon removes them once they have been unused for
// --tables-linger, or when it stops. With no daemon to remove them later,
// DEL removes them itself. Not parallel: it needs no other container.
func TestTablesLinger(t *testing.T) {
	g := newOfflineGround(t, "2m")
	g.d.Stop()
	g.d.Linger = 4 * time.Second
	g.d.Start()
	pm := map[string]any{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}}
	n := g.network(t, "linger", g.offlineConf(), pm)
	want := []string{"bridge lanwire", "inet lanwire_egress", "inet lanwire_portmap"}
	hasAll := func() bool { got := lanwireTables(t); slices.Sort(got); return slices.Equal(got, want) }
	cycle := func(id string) {
		a := attach{ID: id, Netns: container(t, g.lan), Caps: maps(tcpMap(38401, 80, ""))}
		n.MustAdd(a)
		if !hasAll() {
			t.Fatalf("with a container attached, lanwire's tables are %v, want %v", lanwireTables(t), want)
		}
		if err := n.Del(a); err != nil {
			t.Fatal(err)
		}
		if e := entriesOf(t, n.Name, id); e != 0 {
			t.Errorf("%d entries of the deleted container are left", e)
		}
	}

	fwd := append([]string{"-C", "FORWARD"}, forward.Rule(g.lan.Bridge)...)
	// The rule goes only into a FORWARD chain iptables made (a fresh host
	// has none, and nothing to drop the bridge's frames).
	hasForward := exec.Command("nft", "list", "chain", "ip", "filter", "FORWARD").Run() == nil
	// The bridge's own switch, which offline ports turn on, lingers too.
	knob := filepath.Join("/sys/class/net", g.lan.Bridge, "bridge", "nf_call_iptables")
	switchIs := func() string { b, _ := os.ReadFile(knob); return strings.TrimSpace(string(b)) }
	orig := switchIs()
	if orig != "0" {
		t.Fatalf("%s is %q on the fresh test bridge, want 0 (the check would prove nothing)", knob, orig)
	}
	cycle("linger-1")
	deleted := time.Now()
	if !hasAll() {
		t.Errorf("right after the last DEL lanwire's tables are %v, want them kept (empty) for the next container", lanwireTables(t))
	}
	if hasForward && exec.Command("iptables", fwd...).Run() != nil {
		t.Error("right after the last DEL the bridge's FORWARD rule is gone, want it kept for the next container")
	}
	if v := switchIs(); v != "1" {
		t.Errorf("right after the last DEL %s is %s, want it kept on for the next container", knob, v)
	}
	waitFor(t, g.d.Linger+2*pollInterval+time.Second, "the daemon to remove the unused tables and put the bridge's switch back", func() bool {
		return len(lanwireTables(t)) == 0 && exec.Command("iptables", fwd...).Run() != nil && switchIs() == orig
	})
	if took := time.Since(deleted); took < g.d.Linger {
		t.Errorf("the tables went %s after the last DEL, before --tables-linger (%s)", took, g.d.Linger)
	}

	cycle("linger-2")
	g.d.Stop()
	if tables := lanwireTables(t); len(tables) != 0 || exec.Command("iptables", fwd...).Run() == nil {
		t.Errorf("the daemon stopped and left the unused tables %v or the FORWARD rule", tables)
	}
	if v := switchIs(); v != orig {
		t.Errorf("the daemon stopped and left %s at %s, want %s", knob, v, orig)
	}

	// No daemon: nothing would remove them later.
	g.d.Start()
	a := attach{ID: "linger-3", Netns: container(t, g.lan), Caps: maps(tcpMap(38401, 80, ""))}
	n.MustAdd(a)
	g.d.Stop()
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
	if tables := lanwireTables(t); len(tables) != 0 || exec.Command("iptables", fwd...).Run() == nil {
		t.Errorf("with no lease daemon, the last DEL left the tables %v or the FORWARD rule", tables)
	}
	if v := switchIs(); v != orig {
		t.Errorf("with no lease daemon, the last DEL left %s at %s, want %s", knob, v, orig)
	}
	g.d.Start()
}
