// Package forward keeps the one rule lanwire puts in a chain it does not
// own: the accept, at the top of FORWARD, for a bridge's own traffic, which
// a host whose bridged frames cross iptables (br_netfilter with
// bridge-nf-call-iptables, as Docker sets it) and whose FORWARD policy is
// DROP would otherwise drop. It is looked for, inserted and removed over
// netlink, written in iptables-nft's own form (iptables lists and deletes
// it as one of its rules); it goes with the last port that needed it.
package forward

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/pkg/marker"
	"github.com/lanwire/lanwire/pkg/nft"
)

// Comment names the rule of a bridge.
func Comment(bridge string) string { return "lanwire hostbridge-dhcp: bridged traffic of " + bridge }

// Rule is the rule as iptables writes it.
func Rule(bridge string) []string {
	return []string{"-i", bridge, "-o", bridge, "-m", "comment", "--comment", Comment(bridge), "-j", "ACCEPT"}
}

type family struct {
	nf     nftables.TableFamily
	sysctl string // the global switch
	attr   string // the bridge's own switch
}

var families = []family{
	{nftables.TableFamilyIPv4, "bridge-nf-call-iptables", "nf_call_iptables"},
	{nftables.TableFamilyIPv6, "bridge-nf-call-ip6tables", "nf_call_ip6tables"},
}

func on(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// crosses reports whether bridge's frames of family f go through the IP hooks.
func (f family) crosses(bridge string) bool {
	return on("/proc/sys/net/bridge/"+f.sysctl) || on(filepath.Join("/sys/class/net", bridge, "bridge", f.attr))
}

// find returns the handles of the bridge's rule in FORWARD of family f;
// exists is false when iptables-nft has no FORWARD chain there (then
// nothing can drop the bridge's traffic).
func find(c *nft.Conn, f family, bridge string) (handles []*nftables.Rule, exists bool, err error) {
	t := &nftables.Table{Family: f.nf, Name: "filter"}
	if ok, err := c.TableExists(t); err != nil || !ok {
		return nil, false, err
	}
	if _, err := c.ListChain(t, "FORWARD"); err != nil {
		return nil, false, nil
	}
	rules, err := c.GetRules(t, &nftables.Chain{Table: t, Name: "FORWARD"})
	if err != nil {
		return nil, true, fmt.Errorf("reading FORWARD: %w", err)
	}
	want := Comment(bridge)
	for _, r := range rules {
		for _, e := range r.Exprs {
			if m, ok := e.(*expr.Match); ok && m.Name == "comment" {
				if cm, ok := m.Info.(*xt.Comment); ok && strings.TrimRight(string(*cm), "\x00") == want {
					handles = append(handles, r)
				}
			}
		}
	}
	return handles, true, nil
}

// Dir holds, per bridge, one marker per port that needs the bridge's rule:
// the last port to go takes the rule with it.
var Dir = "/run/lanwire/forward"

// lock serialises Ensure and Release: a port's release that saw no other
// user must not delete the rule a concurrent ADD has just found in place.
func lock() (func(), error) { return nft.Lock(Dir + ".lock") }

// Held reports whether port holds the bridge's rule (Ensure ran for it).
func Held(bridge, port string) bool {
	_, err := os.Stat(filepath.Join(Dir, bridge, port))
	return err == nil
}

func hold(bridge, port string) error {
	return marker.Set(filepath.Join(Dir, bridge, port), Dir+".marker")
}

// Ensure puts the bridge's rule at the top of FORWARD for port (a
// container's host veth), for each family whose bridged frames cross the
// IP hooks and whose FORWARD chain exists. Other rules and policies are
// left alone. The first port on a bridge looks for the rule (netlink
// requests, no process) and inserts what is missing; the next ones, while
// other ports hold it, only record their hold: the lease daemon looks
// again at every bridge some port holds at each poll (Tidy), so a rule
// removed by hand comes back.
// Equivalent to: `iptables -I FORWARD -i BR -o BR -j ACCEPT`.
func Ensure(c *nft.Conn, bridge, port string) error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	othersHold := !nft.Idle(filepath.Join(Dir, bridge), 0)
	if err := hold(bridge, port); err != nil {
		return fmt.Errorf("recording the FORWARD rule's user: %w", err)
	}
	if othersHold {
		return nil
	}
	return ensure(c, bridge)
}

// ensure looks for the bridge's rule and inserts it where it is missing.
func ensure(c *nft.Conn, bridge string) error {
	var missing []family
	for _, f := range families {
		if !f.crosses(bridge) {
			continue
		}
		hs, exists, err := find(c, f, bridge)
		if err != nil {
			return err
		}
		if exists && len(hs) == 0 {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	for _, f := range missing {
		c.InsertRule(rule(f, bridge))
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("bridged traffic of %s crosses the FORWARD chain; letting it through: %w", bridge, err)
	}
	return nil
}

// rule is the bridge's rule for family f, expression for expression as
// iptables-nft writes `-i BR -o BR -m comment --comment C -j ACCEPT`, so
// that iptables lists it, and deletes it, as its own.
func rule(f family, bridge string) *nftables.Rule {
	t := &nftables.Table{Family: f.nf, Name: "filter"}
	name := []byte(bridge + "\x00")
	comment := xt.Comment(Comment(bridge))
	return &nftables.Rule{Table: t, Chain: &nftables.Chain{Table: t, Name: "FORWARD"}, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Match{Name: "comment", Rev: 0, Info: &comment},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}}
}

// Release drops port's need of the bridge's rule. When no port needs it
// any more, the rule goes at once, or, when a lease daemon at daemonSocket
// takes c's socket, is left for Tidy (the next container on the bridge
// then finds it in place).
func Release(c *nft.Conn, bridge, port, daemonSocket string) error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	d := filepath.Join(Dir, bridge)
	if err := os.Remove(filepath.Join(d, port)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if !nft.Idle(d, 0) || c.HandOff(daemonSocket) {
		return nil
	}
	_ = os.Remove(d)
	return remove(c, bridge)
}

// remove deletes the bridge's rule from both families' FORWARD chains.
func remove(c *nft.Conn, bridge string) error {
	var errs []error
	for _, f := range families {
		hs, _, err := find(c, f, bridge)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range hs {
			if err := c.DelRule(r); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, c.Flush())
	}
	return errors.Join(errs...)
}

// Tidy keeps each bridge's rule as its ports need it (the lease daemon
// calls it at each poll): a bridge no port has needed for grace (what
// Release left to the daemon) loses its rule; a bridge some port holds
// gets it back where it is missing (removed by hand, or by a tool that
// rewrote FORWARD).
func Tidy(grace time.Duration) error {
	es, err := os.ReadDir(Dir)
	if err != nil {
		return nil
	}
	if len(es) == 0 {
		return nil
	}
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close("")
	var errs []error
	for _, e := range es {
		bridge, d := e.Name(), filepath.Join(Dir, e.Name())
		switch {
		case !e.IsDir():
		case nft.Idle(d, grace):
			if err := remove(c, bridge); err != nil {
				errs = append(errs, err)
				continue
			}
			_ = os.Remove(d)
		case !nft.Idle(d, 0):
			if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); err == nil {
				errs = append(errs, ensure(c, bridge))
			} // a bridge that is gone: GC prunes its holders
		}
	}
	return errors.Join(errs...)
}
