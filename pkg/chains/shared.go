package chains

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Shared is a chain of rules kept once for all the container chains that
// would hold exactly these rules: each of them holds only a goto to it.
// nf_tables checks a whole table at every commit that adds a rule with a
// verdict, walking the chains each path from a hook reaches. With a copy of
// the rules per container, each ADD walked every container's rules (IPv6,
// 500 containers: 2.1 ms more per restore than with none). Shared, the
// restore adding a container took 2.7 ms per family with 5 containers and
// 2.9 (IPv4) and 3.2 ms (IPv6) with 500: the kernel does not walk the
// shared chain again for every goto to it (Linux 6.18 here). A RETURN in
// the shared chain goes back to the top chain, as one in the container's
// chain would.
type Shared struct {
	Name  string
	Rules [][]string
}

// goTo is the only rule of a container chain that uses s.
func (s *Shared) goTo() [][]string { return [][]string{{"-g", s.Name}} }

// render is the iptables-restore input that creates s, or flushes and
// fills it again with the same rules, within a transaction.
func (s *Shared) render() string {
	var b strings.Builder
	b.WriteString(":" + s.Name + " - [0:0]\n")
	for _, r := range s.Rules {
		b.WriteString("-A " + s.Name + " " + Quote(r) + "\n")
	}
	return b.String()
}

// InstallShared is Install for a container chain whose rules are sh's: the
// container's chain holds a goto to sh, which is created when missing.
func (t *Tables) InstallShared(l Layout, chain string, dispatch [][]string, sh Shared) error {
	return t.install(l, chain, dispatch, sh.goTo(), &sh)
}

// CheckShared is Check for a chain installed with InstallShared: the
// container chain's goto and every rule of the shared chain, nothing else.
func (t *Tables) CheckShared(l Layout, chain string, dispatch [][]string, sh Shared) error {
	if err := t.Check(l, chain, dispatch, sh.goTo()); err != nil {
		return err
	}
	return t.checkRules(l.Table, sh.Name, sh.Rules)
}

// sharedInPlace asks nf_tables, over nc (nil: no netlink), whether table holds sh with as many rules
// as it should (a rule deleted by hand is noticed; a changed one is left to
// CHECK); false also when it cannot tell (no netlink, iptables-legacy).
func (t *Tables) sharedInPlace(nc *netlink.Conn, table string, sh *Shared) bool {
	if nc == nil {
		return false
	}
	rules, err := dumpRules(nc, t.Family, table, sh.Name)
	return err == nil && len(rules) == len(sh.Rules)
}

// chainUse returns nf_tables' use count of chain, asking for that one
// chain: the rules it holds plus the rules that jump or go to it. A missing
// chain is an error wrapping ENOENT.
func chainUse(nc *netlink.Conn, fam Family, table, chain string) (uint32, error) {
	msgs, err := nftGet(nc, fam, unix.NFT_MSG_GETCHAIN, 0,
		netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: []byte(table + "\x00")},
		netlink.Attribute{Type: unix.NFTA_CHAIN_NAME, Data: []byte(chain + "\x00")})
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		if use := attr(m.Data[4:], unix.NFTA_CHAIN_USE); len(use) == 4 {
			return binary.BigEndian.Uint32(use), nil
		}
	}
	return 0, fmt.Errorf("no use count for chain %s", chain)
}

// referrers is how many rules jump or go to chain: its use count less its
// own rules.
func referrers(nc *netlink.Conn, fam Family, table, chain string) (uint32, error) {
	use, err := chainUse(nc, fam, table, chain)
	if err != nil {
		return 0, err
	}
	own, err := dumpRules(nc, fam, table, chain)
	if err != nil {
		return 0, err
	}
	return use - uint32(len(own)), nil
}

// ownsShared reports whether chain is one of l's shared chains: only those
// are ever removed with a container.
func (l Layout) ownsShared(chain string) bool {
	return l.SharedPrefix != "" && strings.HasPrefix(chain, l.SharedPrefix)
}

// sharedTargets lists l's shared chains that chain's rules go to (-g), as
// iptables -S prints them; nothing when chain is missing or l has no
// shared chains (no iptables process then).
func (t *Tables) sharedTargets(l Layout, chain string) []string {
	if l.SharedPrefix == "" {
		return nil
	}
	lines, err := t.List(l.Table, chain)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range lines {
		if _, target, ok := strings.Cut(line, " -g "); ok && l.ownsShared(strings.Fields(target)[0]) {
			out = append(out, strings.Fields(target)[0])
		}
	}
	return out
}

// SweepShared deletes l's shared chains that no rule goes to any more, for
// GC: a DEL that could not count a shared chain's users (or a process
// killed between transactions) leaves one behind. A chain still in use is
// kept: the kernel refuses its deletion.
func (t *Tables) SweepShared(l Layout) error {
	if l.SharedPrefix == "" {
		return nil
	}
	c, err := t.cmd()
	if err != nil {
		return err
	}
	names, err := c.ListChains(l.Table)
	if err != nil {
		return fmt.Errorf("listing %s %s chains: %w", t.Family, l.Table, err)
	}
	for _, n := range names {
		if l.ownsShared(n) {
			t.dropUnused(l.Table, n)
		}
	}
	return nil
}

// dropUnused deletes chain when no rule uses it any more: the deletion
// fails, changing nothing, while one does.
func (t *Tables) dropUnused(table, chain string) {
	_ = t.Restore("*" + table + "\n-F " + chain + "\n-X " + chain + "\nCOMMIT\n")
}
