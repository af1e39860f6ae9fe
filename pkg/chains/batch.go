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
		fam := nftables.TableFamilyIPv4
		if t.Family == V6 {
			fam = nftables.TableFamilyIPv6
		}
		table := &nftables.Table{Name: l.Table, Family: fam}
		top := &nftables.Chain{Name: l.Top, Table: table}
		mine, others, err := jumpsIn(nc, fam, l.Table, l.Top, chain)
		if err != nil {
			return false
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
		for _, h := range mine {
			if err := c.DelRule(&nftables.Rule{Table: table, Chain: top, Handle: h}); err != nil {
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
	flushed = c.Flush() == nil
	return flushed
}

// hooksInPlace reports whether the kernel's nf_tables holds every hook of l
// (a rule of the hook's chain jumping to the top or fixed chain) and every
// fixed chain with its number of rules: a dump of each small built-in
// chain. False also when it cannot tell, as on an iptables-legacy host.
func (t *Tables) hooksInPlace(l Layout) bool {
	nc, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return false
	}
	defer nc.Close()
	fam := nftables.TableFamilyIPv4
	if t.Family == V6 {
		fam = nftables.TableFamilyIPv6
	}
	jumps := func(chain, target string) bool {
		j, _, err := jumpsIn(nc, fam, l.Table, chain, target)
		return err == nil && len(j) > 0
	}
	for _, h := range l.Hooks {
		if !jumps(h.Chain, l.Top) {
			return false
		}
	}
	for _, f := range l.Fixed {
		if !jumps(f.Hook.Chain, f.Name) {
			return false
		}
		if j, others, err := jumpsIn(nc, fam, l.Table, f.Name, ""); err != nil || len(j)+others != len(f.Rules) {
			return false
		}
	}
	return true
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
// how many others there are. A missing table or chain holds no rules.
func jumpsIn(nc *netlink.Conn, fam nftables.TableFamily, table, chain, target string) (mine []uint64, others int, err error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(table + "\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")},
	})
	if err != nil {
		return nil, 0, err
	}
	msgs, err := nc.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{byte(fam), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, 0, nil
	}
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

// parseRule returns a rule message's handle and whether one of its
// expressions is an immediate jump to chain.
func parseRule(b []byte, chain string) (handle uint64, jumps bool, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, false, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_HANDLE:
			if v := ad.Bytes(); len(v) == 8 {
				handle = binary.BigEndian.Uint64(v)
			}
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					list.Nested(func(e *netlink.AttributeDecoder) error {
						var name string
						var data []byte
						for e.Next() {
							switch e.Type() {
							case unix.NFTA_EXPR_NAME:
								name = e.String()
							case unix.NFTA_EXPR_DATA:
								data = e.Bytes()
							}
						}
						if name == "immediate" && jumpData(data, chain) {
							jumps = true
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	return handle, jumps, ad.Err()
}

// jumpData reports whether an immediate expression's data is a jump to chain.
func jumpData(b []byte, chain string) bool {
	var code uint32
	var target string
	walk := func(b []byte, typ uint16, fn func(*netlink.AttributeDecoder)) {
		ad, err := netlink.NewAttributeDecoder(b)
		if err != nil {
			return
		}
		for ad.Next() {
			if ad.Type() == typ {
				fn(ad)
			}
		}
	}
	walk(b, unix.NFTA_IMMEDIATE_DATA, func(ad *netlink.AttributeDecoder) {
		walk(ad.Bytes(), unix.NFTA_DATA_VERDICT, func(ad *netlink.AttributeDecoder) {
			v, err := netlink.NewAttributeDecoder(ad.Bytes())
			if err != nil {
				return
			}
			for v.Next() {
				switch v.Type() {
				case unix.NFTA_VERDICT_CODE:
					if x := v.Bytes(); len(x) == 4 {
						code = binary.BigEndian.Uint32(x)
					}
				case unix.NFTA_VERDICT_CHAIN:
					target = v.String()
				}
			}
		})
	})
	return int32(code) == unix.NFT_JUMP && target == chain
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
