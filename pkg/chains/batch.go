package chains

import (
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// RemoveAll removes a container's rules from every family in ts: in one
// transaction for all of them when it can (removeTogether), else family by
// family with Remove. layout gives each family's layout.
func RemoveAll(ts []*Tables, layout func(Family) Layout, chain string) error {
	if removeTogether(ts, layout, chain) {
		return nil
	}
	return Each(ts, func(t *Tables) error { return t.Remove(layout(t.Family), chain) })
}

// removeTogether deletes a container's dispatch rules and chain from every
// family in ts in one nf_tables transaction, over netlink. Rule deletions
// cost the kernel an RCU grace period per transaction (some 15 ms here), so
// one transaction for IPv4 and IPv6 halves a DEL's wait, and no iptables
// process runs. It handles only the common case: in each family either
// nothing of the container's is left, or its chain exists and other
// containers' dispatch rules stay in the top chain. It
// reports false, having changed nothing, in every other case (an
// iptables-legacy host, the last container, a partial state), and the
// caller then removes family by family with Remove.
func removeTogether(ts []*Tables, layout func(Family) Layout, chain string) bool {
	if len(ts) == 0 {
		return false
	}
	c, err := nftables.New()
	if err != nil {
		return false
	}
	touched := 0
	for _, t := range ts {
		l := layout(t.Family)
		fam := nftables.TableFamilyIPv4
		if t.Family == V6 {
			fam = nftables.TableFamilyIPv6
		}
		table := &nftables.Table{Name: l.Table, Family: fam}
		// A missing top chain (or table) lists as no rules.
		rules, err := c.GetRules(table, &nftables.Chain{Name: l.Top, Table: table})
		if err != nil {
			return false
		}
		var mine []*nftables.Rule
		others := 0
		for _, r := range rules {
			if jumpsTo(r, chain) {
				mine = append(mine, r)
			} else {
				others++
			}
		}
		own := &nftables.Chain{Name: chain, Table: table}
		exists, err := chainExists(c, table, chain)
		if err != nil {
			return false
		}
		switch {
		case len(mine) == 0 && !exists:
			continue // nothing of this container's in this family
		case len(mine) == 0 || !exists || others == 0:
			return false // a partial state, or the last container
		}
		for _, r := range mine {
			if err := c.DelRule(r); err != nil {
				return false
			}
		}
		c.FlushChain(own)
		c.DelChain(own)
		touched++
	}
	if touched == 0 {
		return false
	}
	// One batch: the kernel applies all of it or none.
	return c.Flush() == nil
}

// jumpsTo reports whether rule r ends in a jump to chain.
func jumpsTo(r *nftables.Rule, chain string) bool {
	for _, e := range r.Exprs {
		if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictJump && v.Chain == chain {
			return true
		}
	}
	return false
}

// chainExists asks the kernel for one chain. The library flattens the
// netlink error into text, so ENOENT is recognised by its message.
func chainExists(c *nftables.Conn, table *nftables.Table, name string) (bool, error) {
	_, err := c.ListChain(table, name)
	switch {
	case err == nil:
		return true, nil
	case strings.Contains(err.Error(), "no such file or directory"):
		return false, nil
	}
	return false, err
}
