package integration

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
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
