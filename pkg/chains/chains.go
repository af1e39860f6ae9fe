// Package chains keeps per-container iptables chains: a frozen top chain
// reached from built-in hooks, one dispatch rule set and one chain per
// container (holding its rules, or a goto to a Shared chain of them), each
// change applied atomically: ADD with iptables-restore
// --noflush per family, DEL in one nf_tables transaction for both families
// (RemoveAll), callers serialized by the layout's lock.
package chains

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/coreos/go-iptables/iptables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// LockWait is how long (seconds) an iptables change waits for the xtables lock.
const LockWait = 5

// ErrLocked is returned when another process held the xtables lock, or the
// plugin's own lock, too long.
var ErrLocked = errors.New("another process holds the firewall lock")

// Family is an IP family.
type Family int

// The two families.
const (
	V4 Family = 4
	V6 Family = 6
)

func (f Family) String() string {
	if f == V6 {
		return "IPv6"
	}
	return "IPv4"
}

// Hook is a jump from a built-in chain to the top chain, kept first.
type Hook struct {
	Chain string
	Rule  []string
}

// Fixed is a frozen chain with fixed rules, reached from a built-in chain
// (such as a MASQUERADE chain in POSTROUTING).
type Fixed struct {
	Name  string
	Hook  Hook
	Rules [][]string
}

// Layout says where a plugin's rules live.
type Layout struct {
	Table string
	Top   string
	Hooks []Hook
	Fixed []Fixed
	// Lock serializes the plugin's changes (a file path).
	Lock string
	// SharedPrefix starts the names of the layout's Shared chains (empty:
	// it has none); a container's removal takes only such chains with it.
	SharedPrefix string
}

// TakeLock takes the layout's lock file, waiting at most LockWait seconds
// (then ErrLocked); call the returned func to release it.
func (l Layout) TakeLock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(l.Lock), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	f, err := os.OpenFile(l.Lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", l.Lock, err)
	}
	deadline := time.Now().Add(LockWait * time.Second)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", l.Lock, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: %s held for more than %ds", ErrLocked, l.Lock, LockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Tables is one family's iptables.
type Tables struct {
	Family  Family
	proto   iptables.Protocol
	bin     string // iptables or ip6tables
	restore string

	once   sync.Once
	ipt    *iptables.IPTables
	iptErr error
}

// Open returns the tables of family f, or an error when its iptables
// binaries are missing. It runs nothing: the common ADD needs only
// iptables-restore, and go-iptables (which asks iptables for its version)
// is set up on first use.
func Open(f Family) (*Tables, error) {
	proto, bin, restore := iptables.ProtocolIPv4, "iptables", "iptables-restore"
	if f == V6 {
		proto, bin, restore = iptables.ProtocolIPv6, "ip6tables", "ip6tables-restore"
	}
	binPath, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%s firewall not usable: %w", f, err)
	}
	path, err := exec.LookPath(restore)
	if err != nil {
		return nil, fmt.Errorf("%s firewall not usable: %w", f, err)
	}
	return &Tables{Family: f, proto: proto, bin: binPath, restore: path}, nil
}

// cmd returns the go-iptables handle, made on first use.
func (t *Tables) cmd() (*iptables.IPTables, error) {
	t.once.Do(func() {
		t.ipt, t.iptErr = iptables.New(iptables.IPFamily(t.proto), iptables.Timeout(LockWait))
		if t.iptErr != nil {
			t.iptErr = fmt.Errorf("%s firewall not usable: %w", t.Family, t.iptErr)
		}
	})
	return t.ipt, t.iptErr
}

// HasRule reports whether rule is in table's chain, with one iptables -C
// and no version probe; false also when that check could not run (callers
// then take the careful path through Exists).
func (t *Tables) HasRule(table, chain string, rule ...string) bool {
	return exec.Command(t.bin, append([]string{"-t", table, "-C", chain}, rule...)...).Run() == nil
}

// Exists reports whether rule is in table's chain (iptables -C).
func (t *Tables) Exists(table, chain string, rule ...string) (bool, error) {
	c, err := t.cmd()
	if err != nil {
		return false, err
	}
	return c.Exists(table, chain, rule...)
}

// ChainExists reports whether table has chain.
func (t *Tables) ChainExists(table, chain string) (bool, error) {
	c, err := t.cmd()
	if err != nil {
		return false, err
	}
	return c.ChainExists(table, chain)
}

// List returns chain's rules as iptables -S prints them.
func (t *Tables) List(table, chain string) ([]string, error) {
	c, err := t.cmd()
	if err != nil {
		return nil, err
	}
	return c.List(table, chain)
}

// Insert puts rule at pos in table's chain.
func (t *Tables) Insert(table, chain string, pos int, rule ...string) error {
	c, err := t.cmd()
	if err != nil {
		return err
	}
	return c.Insert(table, chain, pos, rule...)
}

// Quote renders one rule for iptables-restore.
func Quote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// Restore applies a ruleset fragment atomically: iptables-restore --noflush,
// waiting at most LockWait seconds for the xtables lock.
func (t *Tables) Restore(text string) error {
	cmd := exec.Command(t.restore, "-w", fmt.Sprint(LockWait), "--noflush")
	cmd.Stdin = strings.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "lock") {
			return fmt.Errorf("%w (waited %ds): %s", ErrLocked, LockWait, msg)
		}
		return fmt.Errorf("%s: %v: %s", t.restore, err, msg)
	}
	return nil
}

func (t *Tables) ensureChain(table, chain string) error {
	ok, err := t.ChainExists(table, chain)
	if err != nil {
		return fmt.Errorf("listing %s %s chains: %w", t.Family, table, err)
	}
	if ok {
		return nil
	}
	ipt, err := t.cmd()
	if err != nil {
		return err
	}
	if err := ipt.NewChain(table, chain); err != nil {
		if exists, _ := t.ChainExists(table, chain); !exists {
			return fmt.Errorf("creating %s chain %s: %w", t.Family, chain, err)
		}
	}
	return nil
}

func (t *Tables) ensureHook(table string, h Hook) error {
	ok, err := t.Exists(table, h.Chain, h.Rule...)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", t.Family, h.Chain, err)
	}
	if !ok {
		if err := t.Insert(table, h.Chain, 1, h.Rule...); err != nil {
			return fmt.Errorf("adding the %s jump from %s: %w", t.Family, h.Chain, err)
		}
	}
	return nil
}

// ensureTop makes sure the top and fixed chains and their hooks exist. A
// present hook proves its chain exists, so the common case costs one -C per
// hook and rule, whatever the number of containers.
func (t *Tables) ensureTop(l Layout) error {
	for _, f := range l.Fixed {
		for _, r := range f.Rules {
			ok, err := t.Exists(l.Table, f.Name, r...)
			if err != nil || !ok {
				if err := t.ensureChain(l.Table, f.Name); err != nil {
					return err
				}
				ipt, err := t.cmd()
				if err != nil {
					return err
				}
				if err := ipt.AppendUnique(l.Table, f.Name, r...); err != nil {
					return fmt.Errorf("filling %s: %w", f.Name, err)
				}
			}
		}
		if err := t.ensureHook(l.Table, f.Hook); err != nil {
			return err
		}
	}
	for _, h := range l.Hooks {
		if ok, err := t.Exists(l.Table, h.Chain, h.Rule...); err == nil && ok {
			continue
		}
		if err := t.ensureChain(l.Table, l.Top); err != nil {
			return err
		}
		if err := t.ensureHook(l.Table, h); err != nil {
			return err
		}
	}
	return nil
}

// TopLines returns the top chain's rules as `-A ...` lines.
func (t *Tables) TopLines(l Layout) ([]string, error) {
	ok, err := t.ChainExists(l.Table, l.Top)
	if err != nil || !ok {
		return nil, err
	}
	lines, err := t.List(l.Table, l.Top)
	if err != nil {
		return nil, fmt.Errorf("listing %s %s: %w", t.Family, l.Top, err)
	}
	var out []string
	for _, line := range lines {
		if strings.HasPrefix(line, "-A ") {
			out = append(out, line)
		}
	}
	return out, nil
}

// dispatchLines returns the top chain's rules that jump to chain.
func (t *Tables) dispatchLines(l Layout, chain string) ([]string, error) {
	lines, err := t.TopLines(l)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range lines {
		if strings.HasSuffix(line, " -j "+chain) {
			out = append(out, line)
		}
	}
	return out, nil
}

// Install puts the container's chain and its dispatch rules in place in one
// atomic change, replacing an earlier version (ADD is idempotent).
func (t *Tables) Install(l Layout, chain string, dispatch, rules [][]string) error {
	return t.install(l, chain, dispatch, rules, nil)
}

// install is Install; with sh set, rules is the goto to sh, and sh is put
// in place in the same transaction unless nf_tables says it is.
func (t *Tables) install(l Layout, chain string, dispatch, rules [][]string, sh *Shared) error {
	// The common case in one process and one transaction: the hooks and
	// fixed rules are in place, the container's chain is new (-N), and its
	// dispatch rules and rules go in. Anything else (a first container, a
	// repeated ADD, a hook removed by hand) aborts it whole, and the
	// careful path below runs. The hooks are checked over netlink where
	// nf_tables holds them: iptables-restore's -C would read the top
	// chain's rules too, a cost that grows with every container. Where
	// they cannot be checked so (iptables-legacy), the transaction checks
	// them itself with -C; where they are known to be missing, the
	// careful path runs at once.
	nc, err := netlink.Dial(unix.NETLINK_NETFILTER, nil) // nil when it fails
	if err == nil {
		defer nc.Close()
	}
	if inPlace, known := t.hooks(nc, l); inPlace || !known {
		// A shared chain in place is left alone: refilling one that
		// 500 containers go to took 16 ms. Missing, short of a rule, or
		// where nf_tables cannot tell, it is (re)filled in the same
		// transaction.
		fastSh := sh
		if sh != nil && t.sharedInPlace(nc, l.Table, sh) {
			fastSh = nil
		}
		if t.Restore(RenderFastInstall(l, chain, dispatch, rules, !known, fastSh)) == nil {
			return nil
		}
	}
	// The read-only checks run at once: every hook and fixed rule in place
	// (a present hook proves its chain exists) and whether the container's
	// chain exists. Dispatch rules and their chain come and go together, so
	// only an existing chain (a repeated ADD) has old rules to find, and
	// only then is the top chain listed.
	checks := []func() (bool, error){func() (bool, error) { return t.ChainExists(l.Table, chain) }}
	for _, h := range l.Hooks {
		checks = append(checks, func() (bool, error) { return t.Exists(l.Table, h.Chain, h.Rule...) })
	}
	for _, f := range l.Fixed {
		checks = append(checks, func() (bool, error) { return t.Exists(l.Table, f.Hook.Chain, f.Hook.Rule...) })
		for _, r := range f.Rules {
			checks = append(checks, func() (bool, error) { return t.Exists(l.Table, f.Name, r...) })
		}
	}
	found, errs := allOf(checks)
	for i := 1; i < len(found); i++ {
		if !found[i] || errs[i] != nil {
			if err := t.ensureTop(l); err != nil {
				return err
			}
			break
		}
	}
	if errs[0] != nil {
		return fmt.Errorf("looking for %s: %w", chain, errs[0])
	}
	var old []string
	if found[0] {
		var err error
		if old, err = t.dispatchLines(l, chain); err != nil {
			return err
		}
	}
	return t.Restore(RenderInstall(l, chain, old, dispatch, rules, sh))
}

// allOf runs read-only checks concurrently (each is an iptables process).
func allOf(checks []func() (bool, error)) ([]bool, []error) {
	found := make([]bool, len(checks))
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			found[i], errs[i] = c()
		}()
	}
	wg.Wait()
	return found, errs
}

// OpenAll opens the given families. Families whose iptables is missing get
// a nil entry and their error.
func OpenAll(fams ...Family) ([]*Tables, []error) {
	ts := make([]*Tables, len(fams))
	errs := make([]error, len(fams))
	for i, f := range fams {
		ts[i], errs[i] = Open(f)
	}
	return ts, errs
}

// RenderFastInstall is the iptables-restore input of Install's fast path:
// it fails, changing nothing, when chain exists already, or, with
// checkHooks, when a hook or fixed rule is missing. sh, when set, is
// created (or refilled) first.
func RenderFastInstall(l Layout, chain string, dispatch, rules [][]string, checkHooks bool, sh *Shared) string {
	var b strings.Builder
	b.WriteString("*" + l.Table + "\n")
	if checkHooks {
		for _, f := range l.Fixed {
			b.WriteString("-C " + f.Hook.Chain + " " + Quote(f.Hook.Rule) + "\n")
			for _, r := range f.Rules {
				b.WriteString("-C " + f.Name + " " + Quote(r) + "\n")
			}
		}
		for _, h := range l.Hooks {
			b.WriteString("-C " + h.Chain + " " + Quote(h.Rule) + "\n")
		}
	}
	if sh != nil {
		b.WriteString(sh.render())
	}
	b.WriteString("-N " + chain + "\n")
	for _, d := range dispatch {
		b.WriteString("-A " + l.Top + " " + Quote(d) + "\n")
	}
	for _, r := range rules {
		b.WriteString("-A " + chain + " " + Quote(r) + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// RenderInstall is the iptables-restore input that installs a chain,
// deleting the dispatch lines old (as listed by -S) first; sh, when set,
// is created (or refilled) first.
func RenderInstall(l Layout, chain string, old []string, dispatch, rules [][]string, sh *Shared) string {
	var b strings.Builder
	b.WriteString("*" + l.Table + "\n")
	if sh != nil {
		b.WriteString(sh.render())
	}
	b.WriteString(":" + chain + " - [0:0]\n") // creates, or flushes, the chain
	for _, line := range old {
		b.WriteString("-D " + strings.TrimPrefix(line, "-A ") + "\n")
	}
	for _, d := range dispatch {
		b.WriteString("-A " + l.Top + " " + Quote(d) + "\n")
	}
	for _, r := range rules {
		b.WriteString("-A " + chain + " " + Quote(r) + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Remove deletes the container's dispatch rules and chain in one change,
// then the top chain and hooks once no container uses them. What is
// already gone is not an error.
func (t *Tables) Remove(l Layout, chain string) error {
	targets := t.sharedTargets(l, chain)
	err := t.remove(l, chain)
	for _, sh := range targets {
		t.dropUnused(l.Table, sh)
	}
	return err
}

// remove is Remove without the shared chains.
func (t *Tables) remove(l Layout, chain string) error {
	if t.fastRemove(l, chain) {
		return nil
	}
	old, err := t.dispatchLines(l, chain)
	if err != nil {
		return err
	}
	exists, err := t.ChainExists(l.Table, chain)
	if err != nil {
		return fmt.Errorf("listing %s chains: %w", t.Family, err)
	}
	if exists || len(old) > 0 {
		var b strings.Builder
		b.WriteString("*" + l.Table + "\n")
		for _, line := range old {
			b.WriteString("-D " + strings.TrimPrefix(line, "-A ") + "\n")
		}
		if exists {
			b.WriteString("-F " + chain + "\n-X " + chain + "\n")
		}
		b.WriteString("COMMIT\n")
		if err := t.Restore(b.String()); err != nil {
			return err
		}
	}
	return t.removeTopIfEmpty(l)
}

// fastRemove is Remove in two processes: the top chain listed, then one
// transaction deleting the container's dispatch rules and chain and, when
// no other container is left, the top and fixed chains and their hooks. It
// reports false, having changed nothing, when the state is anything but
// the common one (the careful path then runs).
func (t *Tables) fastRemove(l Layout, chain string) bool {
	out, err := exec.Command(t.bin, "-t", l.Table, "-S", l.Top).Output()
	if err != nil {
		return false
	}
	var b strings.Builder
	b.WriteString("*" + l.Table + "\n")
	mine, others := 0, 0
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case !strings.HasPrefix(line, "-A "):
		case strings.HasSuffix(line, " -j "+chain):
			b.WriteString("-D " + strings.TrimPrefix(line, "-A ") + "\n")
			mine++
		default:
			others++
		}
	}
	if mine == 0 {
		return false
	}
	b.WriteString("-F " + chain + "\n-X " + chain + "\n")
	if others == 0 {
		b.WriteString(renderTopRemoval(l))
	}
	b.WriteString("COMMIT\n")
	return t.Restore(b.String()) == nil
}

// renderTopRemoval is the iptables-restore input that removes the (empty)
// top chain, the fixed chains and their hooks.
func renderTopRemoval(l Layout) string {
	var b strings.Builder
	for _, h := range l.Hooks {
		b.WriteString("-D " + h.Chain + " " + Quote(h.Rule) + "\n")
	}
	b.WriteString("-X " + l.Top + "\n")
	for _, f := range l.Fixed {
		b.WriteString("-D " + f.Hook.Chain + " " + Quote(f.Hook.Rule) + "\n")
		b.WriteString("-F " + f.Name + "\n-X " + f.Name + "\n")
	}
	return b.String()
}

// removeTopIfEmpty takes the top and fixed chains and their hooks away once
// no container uses them, so an idle host carries no lanwire rules.
func (t *Tables) removeTopIfEmpty(l Layout) error {
	if ok, err := t.ChainExists(l.Table, l.Top); err != nil || !ok {
		return nil
	}
	lines, err := t.TopLines(l)
	if err != nil || len(lines) > 0 {
		return err
	}
	ipt, err := t.cmd()
	if err != nil {
		return err
	}
	for _, h := range l.Hooks {
		if err := ipt.DeleteIfExists(l.Table, h.Chain, h.Rule...); err != nil {
			return fmt.Errorf("removing the %s jump from %s: %w", t.Family, h.Chain, err)
		}
	}
	if err := ipt.ClearAndDeleteChain(l.Table, l.Top); err != nil {
		return fmt.Errorf("removing %s %s: %w", t.Family, l.Top, err)
	}
	for _, f := range l.Fixed {
		if err := ipt.DeleteIfExists(l.Table, f.Hook.Chain, f.Hook.Rule...); err != nil {
			return err
		}
		if err := ipt.ClearAndDeleteChain(l.Table, f.Name); err != nil {
			return err
		}
	}
	return nil
}

// Check verifies the hooks, the dispatch rules and every rule of the chain,
// and that the chain holds nothing else.
func (t *Tables) Check(l Layout, chain string, dispatch, rules [][]string) error {
	for _, h := range l.Hooks {
		ok, err := t.Exists(l.Table, h.Chain, h.Rule...)
		if err != nil {
			return fmt.Errorf("checking %s %s: %w", t.Family, h.Chain, err)
		}
		if !ok {
			return fmt.Errorf("%s jump from %s %s to %s is missing", t.Family, l.Table, h.Chain, l.Top)
		}
	}
	for _, f := range l.Fixed {
		for _, r := range f.Rules {
			if ok, err := t.Exists(l.Table, f.Name, r...); err != nil || !ok {
				return fmt.Errorf("%s rule missing from %s: %s", t.Family, f.Name, strings.Join(r, " "))
			}
		}
		if ok, err := t.Exists(l.Table, f.Hook.Chain, f.Hook.Rule...); err != nil || !ok {
			return fmt.Errorf("%s jump from %s to %s is missing", t.Family, f.Hook.Chain, f.Name)
		}
	}
	for _, d := range dispatch {
		if ok, err := t.Exists(l.Table, l.Top, d...); err != nil || !ok {
			return fmt.Errorf("%s dispatch rule to %s is missing: %s", t.Family, chain, strings.Join(d, " "))
		}
	}
	return t.checkRules(l.Table, chain, rules)
}

// checkRules verifies that chain holds every rule of rules and nothing else.
func (t *Tables) checkRules(table, chain string, rules [][]string) error {
	for _, r := range rules {
		ok, err := t.Exists(table, chain, r...)
		if err != nil || !ok {
			return fmt.Errorf("%s rule missing from %s: %s", t.Family, chain, strings.Join(r, " "))
		}
	}
	lines, err := t.List(table, chain)
	if err != nil {
		return fmt.Errorf("listing %s: %w", chain, err)
	}
	if got := len(lines) - 1; got != len(rules) { // List includes the -N line
		return fmt.Errorf("%s chain %s holds %d rules, want %d", t.Family, chain, got, len(rules))
	}
	return nil
}

// Owners returns, by chain, the comments of the top chain's dispatch rules.
func (t *Tables) Owners(l Layout) (map[string][]string, error) {
	lines, err := t.TopLines(l)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, line := range lines {
		i := strings.Index(line, "--comment ")
		j := strings.LastIndex(line, " -j ")
		if i < 0 || j < 0 || j < i {
			continue
		}
		comment := strings.Trim(strings.TrimSpace(line[i+len("--comment "):j]), `"`)
		if k := strings.Index(comment, `" `); k >= 0 {
			comment = comment[:k]
		}
		out[line[j+4:]] = append(out[line[j+4:]], comment)
	}
	return out, nil
}

// Each runs fn on every table concurrently and joins the errors.
func Each(ts []*Tables, fn func(*Tables) error) error {
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(t)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Usable opens every family whose iptables works, concurrently.
func Usable() []*Tables {
	ts, _ := OpenAll(V4, V6)
	var out []*Tables
	for _, t := range ts {
		if t != nil {
			out = append(out, t)
		}
	}
	return out
}

// RemoveStale removes every container chain (and its dispatch rules) whose
// dispatch comment stale says is no longer wanted, for GC. It returns the
// chains removed.
func (t *Tables) RemoveStale(l Layout, stale func(comment string) bool) ([]string, error) {
	owners, err := t.Owners(l)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for chain, comments := range owners {
		if !stale(comments[0]) {
			continue
		}
		if err := t.Remove(l, chain); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, chain)
	}
	return removed, errors.Join(errs...)
}

// Status is the CNI STATUS answer of a firewall plugin: nil when iptables
// can be used, else error 50 (plugin not available) saying what to install.
func Status(plugin string) error {
	if _, err := Open(V4); err != nil {
		return types.NewError(50, plugin+" cannot use iptables: install iptables", err.Error())
	}
	return nil
}

// CNIError turns a firewall failure into CNI error JSON: ErrLocked is
// error 11 (try again later), anything else 999 with action as context.
func CNIError(action string, err error) error {
	if errors.Is(err, ErrLocked) {
		return types.NewError(types.ErrTryAgainLater, "the firewall is busy: another process held its lock; try again", err.Error())
	}
	return types.NewError(types.ErrInternal, action, err.Error())
}
