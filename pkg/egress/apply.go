package egress

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"golang.org/x/sys/unix"
)

// LockFile serializes offline-egress's own changes, so a DEL that removes
// the emptied TopChain never races an ADD that is about to use it.
var LockFile = "/run/lanwire/offline-egress.lock"

// Lock takes LockFile; call the returned func to release it.
func Lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(LockFile), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", LockFile, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", LockFile, err)
	}
	return func() { f.Close() }, nil
}

// LockWait is how long (seconds) an iptables change waits for the xtables lock.
const LockWait = 5

// ErrLocked is returned when another process held the xtables lock too long.
var ErrLocked = errors.New("another process holds the xtables lock")

// Table is one family's mangle table, changed with iptables-restore.
type Tables struct {
	Family  Family
	ipt     *iptables.IPTables
	restore string
}

// Open returns the tables of family f, or an error when its iptables
// binaries are missing or unusable.
func Open(f Family) (*Tables, error) {
	proto, restore := iptables.ProtocolIPv4, "iptables-restore"
	if f == V6 {
		proto, restore = iptables.ProtocolIPv6, "ip6tables-restore"
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(LockWait))
	if err != nil {
		return nil, fmt.Errorf("%s firewall not usable: %w", f, err)
	}
	path, err := exec.LookPath(restore)
	if err != nil {
		return nil, fmt.Errorf("%s firewall not usable: %w", f, err)
	}
	return &Tables{Family: f, ipt: ipt, restore: path}, nil
}

// quote renders one rule for iptables-restore.
func quote(args []string) string {
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

// ensureTop creates TopChain and the hook's jump to it (first in the hook).
func (t *Tables) ensureTop() error {
	ok, err := t.ipt.ChainExists(Table, TopChain)
	if err != nil {
		return fmt.Errorf("listing %s chains: %w", t.Family, err)
	}
	if !ok {
		if err := t.ipt.NewChain(Table, TopChain); err != nil {
			if exists, _ := t.ipt.ChainExists(Table, TopChain); !exists {
				return fmt.Errorf("creating %s chain %s: %w", t.Family, TopChain, err)
			}
		}
	}
	ok, err = t.ipt.Exists(Table, Hook, HookRule()...)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", t.Family, Hook, err)
	}
	if !ok {
		if err := t.ipt.Insert(Table, Hook, 1, HookRule()...); err != nil {
			return fmt.Errorf("adding the %s jump to %s: %w", t.Family, TopChain, err)
		}
	}
	return nil
}

// dispatchLines returns TopChain's rules (as `-A ...` lines) that jump to chain.
func (t *Tables) dispatchLines(chain string) ([]string, error) {
	ok, err := t.ipt.ChainExists(Table, TopChain)
	if err != nil || !ok {
		return nil, err
	}
	lines, err := t.ipt.List(Table, TopChain)
	if err != nil {
		return nil, fmt.Errorf("listing %s %s: %w", t.Family, TopChain, err)
	}
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") && strings.HasSuffix(l, " -j "+chain) {
			out = append(out, l)
		}
	}
	return out, nil
}

// Install puts the container's chain and its dispatch rule in place in one
// atomic change, replacing an earlier version (ADD is idempotent).
func (t *Tables) Install(s Spec) error {
	if err := t.ensureTop(); err != nil {
		return err
	}
	old, err := t.dispatchLines(s.Chain)
	if err != nil {
		return err
	}
	return t.Restore(RenderInstall(s, t.Family, old))
}

// RenderInstall is the iptables-restore input that installs s, deleting the
// dispatch lines old (as listed by -S) first.
func RenderInstall(s Spec, f Family, old []string) string {
	var b strings.Builder
	b.WriteString("*" + Table + "\n")
	b.WriteString(":" + s.Chain + " - [0:0]\n") // creates, or flushes, the chain
	for _, l := range old {
		b.WriteString("-D " + strings.TrimPrefix(l, "-A ") + "\n")
	}
	b.WriteString("-A " + TopChain + " " + quote(s.DispatchRule()) + "\n")
	for _, r := range s.Rules(f) {
		b.WriteString("-A " + s.Chain + " " + quote(r) + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Remove deletes the container's dispatch rules and chain in one change.
// What is already gone is not an error.
func (t *Tables) Remove(chain string) error {
	old, err := t.dispatchLines(chain)
	if err != nil {
		return err
	}
	exists, err := t.ipt.ChainExists(Table, chain)
	if err != nil {
		return fmt.Errorf("listing %s chains: %w", t.Family, err)
	}
	if !exists && len(old) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("*" + Table + "\n")
	for _, l := range old {
		b.WriteString("-D " + strings.TrimPrefix(l, "-A ") + "\n")
	}
	if exists {
		b.WriteString("-F " + chain + "\n-X " + chain + "\n")
	}
	b.WriteString("COMMIT\n")
	if err := t.Restore(b.String()); err != nil {
		return err
	}
	return t.removeTopIfEmpty()
}

// removeTopIfEmpty takes TopChain and its hook jump away once no container
// uses them, so an idle host carries no lanwire rules.
func (t *Tables) removeTopIfEmpty() error {
	lines, err := t.ipt.List(Table, TopChain)
	if err != nil {
		return nil // already gone
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			return nil
		}
	}
	if err := t.ipt.DeleteIfExists(Table, Hook, HookRule()...); err != nil {
		return fmt.Errorf("removing the %s jump to %s: %w", t.Family, TopChain, err)
	}
	if err := t.ipt.ClearAndDeleteChain(Table, TopChain); err != nil {
		return fmt.Errorf("removing %s %s: %w", t.Family, TopChain, err)
	}
	return nil
}

// Check verifies the hook jump, the dispatch rule and every rule of the
// chain, and that the chain holds nothing else.
func (t *Tables) Check(s Spec) error {
	ok, err := t.ipt.Exists(Table, Hook, HookRule()...)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", t.Family, Hook, err)
	}
	if !ok {
		return fmt.Errorf("%s jump from %s %s to %s is missing", t.Family, Table, Hook, TopChain)
	}
	if ok, err := t.ipt.Exists(Table, TopChain, s.DispatchRule()...); err != nil || !ok {
		return fmt.Errorf("%s dispatch rule to %s is missing (%v)", t.Family, s.Chain, err)
	}
	want := s.Rules(t.Family)
	for _, r := range want {
		ok, err := t.ipt.Exists(Table, s.Chain, r...)
		if err != nil || !ok {
			return fmt.Errorf("%s rule missing from %s: %s", t.Family, s.Chain, strings.Join(r, " "))
		}
	}
	lines, err := t.ipt.List(Table, s.Chain)
	if err != nil {
		return fmt.Errorf("listing %s: %w", s.Chain, err)
	}
	if got := len(lines) - 1; got != len(want) { // List includes the -N line
		return fmt.Errorf("%s chain %s holds %d rules, want %d", t.Family, s.Chain, got, len(want))
	}
	return nil
}

// Owners lists the comment of every dispatch rule, by chain, for GC.
func (t *Tables) Owners() (map[string]string, error) {
	ok, err := t.ipt.ChainExists(Table, TopChain)
	if err != nil || !ok {
		return nil, err
	}
	lines, err := t.ipt.List(Table, TopChain)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range lines {
		i := strings.Index(l, "--comment ")
		j := strings.LastIndex(l, " -j ")
		if i < 0 || j < 0 {
			continue
		}
		comment := strings.Trim(strings.TrimSpace(l[i+len("--comment "):j]), `"`)
		out[l[j+4:]] = comment
	}
	return out, nil
}

// Comment is the comment that names a container in its dispatch rule.
func Comment(network, containerID string) string {
	return "lanwire offline-egress net=" + network + " id=" + containerID
}

// ParseComment returns the network and container ID of a Comment.
func ParseComment(c string) (network, containerID string, ok bool) {
	rest, ok := strings.CutPrefix(c, "lanwire offline-egress net=")
	if !ok {
		return "", "", false
	}
	network, containerID, ok = strings.Cut(rest, " id=")
	return network, containerID, ok
}
