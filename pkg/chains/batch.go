package chains

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
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
// family in ts in one nf_tables transaction, over netlink, with no iptables
// process, and leaves the wait for the deleted rules to be freed to a
// short-lived child (closeLater). It handles only the common case: in each
// family either nothing of the container's is left, or its chain exists and
// other containers' dispatch rules stay in the top chain. It reports false,
// having changed nothing, in every other case (an iptables-legacy host, the
// last container, a partial state), and the caller then removes family by
// family with Remove.
func removeTogether(ts []*Tables, layout func(Family) Layout, chain string) bool {
	if len(ts) == 0 {
		return false
	}
	held := -1
	var nc *netlink.Conn
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(conn *netlink.Conn) error {
		nc = conn
		rc, err := conn.SyscallConn()
		if err != nil {
			return nil
		}
		return rc.Control(func(fd uintptr) { held, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	}))
	if err != nil || nc == nil {
		return false
	}
	flushed := false
	defer func() {
		_ = c.CloseLasting()
		switch {
		case held >= 0 && flushed:
			closeLater(held)
		case held >= 0:
			_ = unix.Close(held) // nothing deleted: no wait
		}
	}()
	touched := 0
	for _, t := range ts {
		l := layout(t.Family)
		table := &nftables.Table{Name: l.Table, Family: t.Family.nft()}
		top := &nftables.Chain{Name: l.Top, Table: table}
		mine, others, err := jumpsIn(nc, t.Family, l.Table, l.Top, chain)
		if err != nil && !errors.Is(err, unix.ENOENT) { // a missing top chain holds no rules
			return false
		}
		own := &nftables.Chain{Name: chain, Table: table}
		// One dump of the container's chain says whether it exists and
		// which shared chains it goes to.
		gotos, err := gotosIn(nc, t.Family, l.Table, chain)
		exists := err == nil
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return false
		}
		switch {
		case len(mine) == 0 && !exists:
			continue // nothing of this container's in this family
		case len(mine) == 0 || !exists || others == 0:
			return false // a partial state, or the last container
		}
		for _, h := range mine {
			if err := c.DelRule(&nftables.Rule{Table: table, Chain: top, Handle: h}); err != nil {
				return false
			}
		}
		c.FlushChain(own)
		c.DelChain(own)
		// A shared chain only this container used goes with it.
		for target, n := range gotos {
			if !l.ownsShared(target) {
				continue
			}
			if refs, err := referrers(nc, t.Family, l.Table, target); err == nil && refs == n {
				sh := &nftables.Chain{Name: target, Table: table}
				c.FlushChain(sh)
				c.DelChain(sh)
			}
		}
		touched++
	}
	if touched == 0 {
		return false
	}
	// One batch: the kernel applies all of it or none.
	flushed = c.Flush() == nil
	return flushed
}

// nft is f's nf_tables family.
func (f Family) nft() nftables.TableFamily {
	if f == V6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}

// hooks asks the kernel's nf_tables, over nc (nil: no netlink), whether every hook of l is in place (a
// rule of the hook's chain jumping to the top or fixed chain) and every
// fixed chain holds its number of rules: a dump of each small built-in
// chain. known is false when nf_tables cannot tell: no netlink, or a table
// or chain it does not hold (an iptables-legacy host, a table not used yet).
func (t *Tables) hooks(nc *netlink.Conn, l Layout) (inPlace, known bool) {
	if nc == nil {
		return false, false
	}
	type want struct {
		chain, target string
		rules         int // with target "": the chain's rule count
	}
	var wants []want
	for _, h := range l.Hooks {
		wants = append(wants, want{chain: h.Chain, target: l.Top})
	}
	for _, f := range l.Fixed {
		wants = append(wants, want{chain: f.Hook.Chain, target: f.Name}, want{chain: f.Name, rules: len(f.Rules)})
	}
	for _, w := range wants {
		j, others, err := jumpsIn(nc, t.Family, l.Table, w.chain, w.target)
		switch {
		case err != nil:
			return false, false
		case w.target != "" && len(j) == 0, w.target == "" && others != w.rules:
			return false, true
		}
	}
	return true, true
}

// closeLater closes fd, a netfilter netlink socket that deleted rules, in a
// short-lived child process. The kernel frees deleted rules after an RCU
// grace period, and whoever closes a netfilter netlink socket while such
// frees are pending waits for them (nf_tables flushes its destroy work on
// NETLINK_URELEASE): some 13 ms here. The rules are gone once the
// transaction is committed; the child carries the wait, so DEL answers
// without it. Without a `sleep` binary the socket is closed here.
func closeLater(fd int) {
	f := os.NewFile(uintptr(fd), "nfnetlink")
	defer f.Close()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return
	}
	cmd := exec.Command(sleep, "0.2")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		_ = cmd.Process.Release()
	}
}

// jumpsIn lists the rules of table's chain (one netlink dump, read without
// decoding every expression): the handles of those that jump to target, and
// how many others there are. A missing table or chain is an error wrapping
// ENOENT.
func jumpsIn(nc *netlink.Conn, fam Family, table, chain, target string) (mine []uint64, others int, err error) {
	msgs, err := dumpRules(nc, fam, table, chain)
	if err != nil {
		return nil, 0, err
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		handle, jumps, err := parseRule(m.Data[4:], target)
		if err != nil {
			return nil, 0, err
		}
		if jumps {
			mine = append(mine, handle)
		} else {
			others++
		}
	}
	return mine, others, nil
}

// dumpRules asks nf_tables for the rules of table's chain; a missing chain
// or table is an error wrapping ENOENT. nf_tables answers a rule dump of a
// missing chain as one of an empty chain, so an empty answer is settled by
// asking for the chain itself (one more round trip, only then).
func dumpRules(nc *netlink.Conn, fam Family, table, chain string) ([]netlink.Message, error) {
	msgs, err := nftGet(nc, fam, unix.NFT_MSG_GETRULE, netlink.Dump,
		netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: []byte(table + "\x00")},
		netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")})
	if err == nil && len(msgs) == 0 {
		if _, err := chainUse(nc, fam, table, chain); err != nil {
			return nil, err
		}
	}
	return msgs, err
}

// nftGet sends one nf_tables get request of type msg (with flags added to
// Request) for family fam and returns the answers.
func nftGet(nc *netlink.Conn, fam Family, msg uint16, flags netlink.HeaderFlags, attrs ...netlink.Attribute) ([]netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, err
	}
	return nc.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg),
			Flags: netlink.Request | flags,
		},
		Data: append([]byte{byte(fam.nft()), unix.NFNETLINK_V0, 0, 0}, data...),
	})
}

// parseRule returns a rule message's handle and whether one of its
// expressions is an immediate jump to chain.
func parseRule(b []byte, chain string) (handle uint64, jumps bool, err error) {
	err = eachAttr(b, func(typ uint16, data []byte) {
		switch typ {
		case unix.NFTA_RULE_HANDLE:
			if len(data) == 8 {
				handle = binary.BigEndian.Uint64(data)
			}
		case unix.NFTA_RULE_EXPRESSIONS:
			_ = eachAttr(data, func(_ uint16, e []byte) {
				if code, target := verdictOf(e); code == unix.NFT_JUMP && target == chain {
					jumps = true
				}
			})
		}
	})
	return handle, jumps, err
}

// verdictOf returns the verdict code and chain of an immediate expression
// that sets a verdict (code 0 for any other expression).
func verdictOf(e []byte) (code int32, chain string) {
	if cString(attr(e, unix.NFTA_EXPR_NAME)) != "immediate" {
		return 0, ""
	}
	verdict := attr(attr(attr(e, unix.NFTA_EXPR_DATA), unix.NFTA_IMMEDIATE_DATA), unix.NFTA_DATA_VERDICT)
	c := attr(verdict, unix.NFTA_VERDICT_CODE)
	if len(c) != 4 {
		return 0, ""
	}
	return int32(binary.BigEndian.Uint32(c)), cString(attr(verdict, unix.NFTA_VERDICT_CHAIN))
}

// gotosIn counts, by target, the gotos of table's chain (one netlink dump).
func gotosIn(nc *netlink.Conn, fam Family, table, chain string) (map[string]uint32, error) {
	msgs, err := dumpRules(nc, fam, table, chain)
	if err != nil {
		return nil, err
	}
	gotos := map[string]uint32{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		err := eachAttr(m.Data[4:], func(typ uint16, data []byte) {
			if typ != unix.NFTA_RULE_EXPRESSIONS {
				return
			}
			_ = eachAttr(data, func(_ uint16, e []byte) {
				if code, target := verdictOf(e); code == unix.NFT_GOTO {
					gotos[target]++
				}
			})
		})
		if err != nil {
			return nil, err
		}
	}
	return gotos, nil
}

// eachAttr calls fn with the type (flags masked off) and data of every
// netlink attribute in b.
func eachAttr(b []byte, fn func(typ uint16, data []byte)) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		fn(ad.Type(), ad.Bytes())
	}
	return ad.Err()
}

// attr returns the data of b's first attribute of type typ, nil if none.
func attr(b []byte, typ uint16) []byte {
	var out []byte
	_ = eachAttr(b, func(t uint16, data []byte) {
		if t == typ && out == nil {
			out = data
		}
	})
	return out
}

// cString is a NUL-terminated netlink string.
func cString(b []byte) string { return strings.TrimRight(string(b), "\x00") }
