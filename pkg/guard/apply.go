package guard

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/lanwire/lanwire/pkg/bridgeport"
	"github.com/lanwire/lanwire/pkg/forward"
	"github.com/lanwire/lanwire/pkg/hostknob"
	"github.com/lanwire/lanwire/pkg/marker"
	"github.com/lanwire/lanwire/pkg/nft"
)

// Dir holds the port records (one JSON file per guarded port), the
// markers of active and offline ports, and an index by container (a hard
// link to the port's first record, which names the port). The
// kernel's tables are built from the records: a table found missing (a
// `flush ruleset`, say) is rebuilt with every port's elements.
var Dir = "/run/lanwire/guard"

// Knobs is where the bridge options the guard turns on are remembered.
var Knobs = hostknob.Knobs{Dir: hostknob.DefaultDir}

// DefaultDaemon is the lease daemon's socket when a port names none.
const DefaultDaemon = "/run/cni/hostbridge-dhcp.sock"

func portFile(ifname string) string { return filepath.Join(Dir, "ports", ifname+".json") }
func markerPath(kind, ifname string) string {
	return filepath.Join(Dir, kind, ifname)
}
func idFile(network, id string) string {
	s := sha256.Sum256([]byte(network + "\x00" + id))
	return filepath.Join(Dir, "ids", hex.EncodeToString(s[:12]))
}
func anchor() string { return filepath.Join(Dir, ".marker") }

// indexed returns the port name a container's index entry gives: a
// record's (a link to the port's record) or, as an earlier layout wrote
// it, the name itself.
func indexed(network, id string) (string, error) {
	b, err := os.ReadFile(idFile(network, id))
	if err != nil {
		return "", err
	}
	if len(b) > 0 && b[0] == '{' {
		var p Port
		if err := json.Unmarshal(b, &p); err != nil {
			return "", fmt.Errorf("reading %s: %w", idFile(network, id), err)
		}
		return p.IfName, nil
	}
	return strings.TrimSpace(string(b)), nil
}

// Lock serializes changes to the guard's tables and records.
func Lock() (func(), error) { return nft.Lock(filepath.Join(Dir, "lock")) }

// Load returns the record of port ifname, nil when there is none (or the
// name cannot be an interface's).
func Load(ifname string) (*Port, error) {
	if !bridgeport.ValidName(ifname) {
		return nil, nil
	}
	b, err := os.ReadFile(portFile(ifname))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p Port
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("reading %s: %w", portFile(ifname), err)
	}
	return &p, nil
}

// Find returns the record of a container's port, nil when there is none.
func Find(network, containerID string) (*Port, error) {
	ifname, err := indexed(network, containerID)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := Load(ifname)
	if p != nil && (p.Network != network || p.ContainerID != containerID) {
		return nil, nil
	}
	return p, err
}

// records lists every port record.
func records() ([]Port, error) {
	es, err := os.ReadDir(filepath.Join(Dir, "ports"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Port
	for _, e := range es {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if p, err := Load(name); err == nil && p != nil {
			out = append(out, *p)
		}
	}
	return out, nil
}

// othersIn reports whether a marker directory holds another port than ifname.
func othersIn(kind, ifname string) bool {
	f, err := os.Open(filepath.Join(Dir, kind))
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(2)
	for _, n := range names {
		if n != ifname {
			return true
		}
	}
	return false
}

// writeRecord records port p, whose record was old (nil: none). Only the
// record is a new file: markers and the index entry are links, set when
// they change.
func writeRecord(old *Port, p Port) error {
	if err := os.MkdirAll(filepath.Join(Dir, "ports"), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp := portFile(p.IfName) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, portFile(p.IfName)); err != nil {
		return err
	}
	for kind, on := range map[string]bool{"active": p.Guarded(), "offline": p.Offline != nil} {
		if err := setMarker(kind, p.IfName, on); err != nil {
			return err
		}
	}
	if old != nil && old.Network == p.Network && old.ContainerID == p.ContainerID {
		if name, err := indexed(p.Network, p.ContainerID); err == nil && name == p.IfName {
			return nil
		}
	}
	idf := idFile(p.Network, p.ContainerID)
	if err := marker.Clear(idf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(idf), 0o700); err != nil {
		return err
	}
	return os.Link(portFile(p.IfName), idf)
}

func setMarker(kind, ifname string, on bool) error {
	if !on {
		return marker.Clear(markerPath(kind, ifname))
	}
	return marker.Set(markerPath(kind, ifname), anchor())
}

func dropRecord(p Port) {
	os.Remove(portFile(p.IfName))
	os.Remove(markerPath("active", p.IfName))
	os.Remove(markerPath("offline", p.IfName))
	if name, err := indexed(p.Network, p.ContainerID); err == nil && name == p.IfName {
		os.Remove(idFile(p.Network, p.ContainerID))
	}
}

func daemonOf(p *Port) string {
	if p != nil && p.Daemon != "" {
		return p.Daemon
	}
	return DefaultDaemon
}

// Apply installs port p's rules in place of what the port had, in one
// transaction, and records it. A port that is not guarded (no spoofCheck,
// not offline) is only recorded, so that offline-egress and the lease
// daemon find it.
func Apply(p Port) error {
	unlock, err := Lock()
	if err != nil {
		return err
	}
	defer unlock()
	old, err := Load(p.IfName)
	if err != nil {
		return err
	}
	if err := change(old, &p); err != nil {
		if old == nil || old.Offline == nil {
			_ = Knobs.Release("guard:"+p.IfName, nil, bridgeKnobs(p.Bridge)...) // what ensureBridgeNetfilter turned on
		}
		return err
	}
	if err := writeRecord(old, p); err != nil {
		return fmt.Errorf("recording port %s: %w", p.IfName, err)
	}
	if p.Offline == nil && old != nil && old.Offline != nil {
		return Knobs.Release("guard:"+p.IfName, nft.DaemonUp(daemonOf(&p)), bridgeKnobs(old.Bridge)...)
	}
	return nil
}

// Remove takes away everything of port ifname; the last port takes the
// tables with it. Removing a port that is not there succeeds.
func Remove(ifname string) error {
	unlock, err := Lock()
	if err != nil {
		return err
	}
	defer unlock()
	old, err := Load(ifname)
	if err != nil || old == nil {
		return err
	}
	if err := change(old, nil); err != nil {
		return err
	}
	dropRecord(*old)
	if old.Offline == nil {
		return nil
	}
	return Knobs.Release("guard:"+ifname, nft.DaemonUp(daemonOf(old)), bridgeKnobs(old.Bridge)...)
}

// change moves the kernel from port old's elements (nil: none) to new's
// (nil: none), creating the tables the first guarded port needs and
// deleting those the last leaves. On any failure it rebuilds both tables
// from the records, in one transaction, which also heals a table someone
// flushed or changed by hand.
func change(old, new *Port) error {
	ifname := ""
	if old != nil {
		ifname = old.IfName
	}
	if new != nil {
		ifname = new.IfName
	}
	var daemon string
	if new != nil {
		daemon = daemonOf(new)
	} else {
		daemon = daemonOf(old)
	}
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close(daemon)
	if new != nil && new.Offline != nil {
		crossing, err := ensureBridgeNetfilter(new.Bridge, new.IfName)
		if err != nil {
			return err
		}
		// With the bridge's switches on, its traffic crosses FORWARD. The
		// port's hold on the rule, when hostbridge-dhcp took it with the
		// switches as they are, means the rule was just looked after.
		if crossing || !forward.Held(new.Bridge, new.IfName) {
			if err := forward.Ensure(c, new.Bridge, new.IfName); err != nil {
				return err
			}
		}
	}
	err = fastChange(c, old, new, ifname, daemon)
	if err != nil {
		if rerr := rebuild(c, new, ifname); rerr != nil {
			return fmt.Errorf("changing the rules of port %s: %v; rebuilding lanwire's tables: %w", ifname, err, rerr)
		}
	}
	if old != nil && old.Offline != nil && (new == nil || new.Offline == nil) {
		return forward.Release(c, old.Bridge, old.IfName, daemon)
	}
	return nil
}

func fastChange(c *nft.Conn, old, new *Port, ifname, daemon string) error {
	var oldE, newE []Element
	var err error
	if old != nil {
		if oldE, err = Elements(*old); err != nil {
			return err
		}
	}
	if new != nil {
		if newE, err = Elements(*new); err != nil {
			return err
		}
	}
	br, eg := BridgeSets(), egressRef() // the full tables only to create them
	othersActive, othersOffline := othersIn("active", ifname), othersIn("offline", ifname)
	wantBridge := (new != nil && new.Guarded()) || othersActive
	wantEgress := (new != nil && new.Offline != nil) || othersOffline
	// A table other ports need is there: if someone deleted it, the
	// transaction fails and change rebuilds both from the records. Only
	// the first or last port asks.
	hasBridge, hasEgress := othersActive, othersOffline
	if !othersActive {
		if hasBridge, err = c.TableExists(br.Ref()); err != nil {
			return err
		}
	}
	if !othersOffline {
		if hasEgress, err = c.TableExists(eg.Ref()); err != nil {
			return err
		}
	}
	// The last port leaves the tables, empty, for the lease daemon to
	// delete once they have been unused for a while (Tidy): the next
	// container would otherwise create them again, and a table deleted
	// makes the kernel's next transaction wait for its release (~10-40 ms
	// measured here). With no daemon there, they go at once.
	asked, kept := false, false
	linger := func() bool {
		if !asked {
			asked, kept = true, c.HandOff(daemon)
		}
		return kept
	}
	switch {
	case !wantBridge && hasBridge && !linger():
		c.Delete(br)
	case !wantBridge:
		if hasBridge {
			delElements(c, br, oldE)
		}
	case !hasBridge:
		if err := c.Create(Bridge()); err != nil {
			return err
		}
		addElements(c, br, newE, new.Comment())
	default:
		delElements(c, br, diff(oldE, newE))
		if new != nil {
			// All of them: adding one that is there changes nothing, and
			// one removed by hand comes back.
			addElements(c, br, newE, new.Comment())
		}
	}
	switch {
	case !wantEgress && hasEgress && !linger():
		c.Delete(eg)
	case !wantEgress:
		if hasEgress && old != nil && old.Offline != nil && old.Offline.LogPrefix != "" {
			if err := delLogRules(c, old.Comment()); err != nil {
				return err
			}
		}
	case !hasEgress:
		if err := c.Create(Egress()); err != nil {
			return err
		}
		addLogRules(c, new)
	default:
		if old != nil && old.Offline != nil && old.Offline.LogPrefix != "" {
			if err := delLogRules(c, old.Comment()); err != nil {
				return err
			}
		}
		addLogRules(c, new)
	}
	return c.Flush()
}

// rebuild replaces both tables with fresh ones holding every recorded
// port's elements (new in place of ifname's record), in one transaction.
func rebuild(c *nft.Conn, new *Port, ifname string) error {
	recs, err := records()
	if err != nil {
		return err
	}
	var ports []Port
	for _, p := range recs {
		if p.IfName != ifname && p.Guarded() {
			ports = append(ports, p)
		}
	}
	if new != nil && new.Guarded() {
		ports = append(ports, *new)
	}
	br, eg := Bridge(), Egress()
	for _, t := range []nft.Table{br, eg} {
		if ok, _ := c.TableExists(t.Ref()); ok {
			c.Delete(t)
		}
	}
	offline := false
	if len(ports) > 0 {
		if err := c.Create(br); err != nil {
			return err
		}
	}
	for _, p := range ports {
		es, err := Elements(p)
		if err != nil {
			return err
		}
		addElements(c, br, es, p.Comment())
		offline = offline || p.Offline != nil
	}
	if offline {
		if err := c.Create(eg); err != nil {
			return err
		}
		for i := range ports {
			addLogRules(c, &ports[i])
		}
	}
	return c.Flush()
}

func addElements(c *nft.Conn, t nft.Table, es []Element, comment string) {
	order, m := bySet(es, comment)
	for _, s := range order {
		_ = c.SetAddElements(t.SetRef(s), m[s])
	}
}

func delElements(c *nft.Conn, t nft.Table, es []Element) {
	order, m := bySet(es, "")
	for _, s := range order {
		_ = c.SetDeleteElements(t.SetRef(s), m[s])
	}
}

// logRules are the rules that log what port p sends and is blocked, one
// per address, in the egress table's log chain.
func logRules(p *Port) []nft.Rule {
	if p == nil || p.Offline == nil || p.Offline.LogPrefix == "" {
		return nil
	}
	var out []nft.Rule
	for _, ip := range p.Addrs {
		var match []nft.Part
		if ip4 := ip.To4(); ip4 != nil {
			match = []nft.Part{nft.Is(nft.NFProto, "ipv4", nft.U8(2)), nft.Is(nft.IPSaddr, ip4.String(), ip4)}
		} else {
			match = []nft.Part{nft.Is(nft.NFProto, "ipv6", nft.U8(10)), nft.Is(nft.IP6Saddr, ip.String(), ip.To16())}
		}
		out = append(out, nft.R(p.Comment(), append(match, nft.LogLimited(p.Offline.LogPrefix)...)...))
	}
	return out
}

func addLogRules(c *nft.Conn, p *Port) {
	t := egressRef().Ref()
	ch := &nftables.Chain{Table: t, Name: LogChain}
	for _, r := range logRules(p) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.Exprs(), UserData: r.UserData()})
	}
}

func delLogRules(c *nft.Conn, comment string) error {
	t := egressRef().Ref()
	rules, err := c.GetRules(t, &nftables.Chain{Table: t, Name: LogChain})
	if err != nil {
		return err
	}
	for _, r := range rules {
		if nft.CommentOf(r.UserData) == comment {
			if err := c.DelRule(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensureBridgeNetfilter makes the bridge hand its IPv4 and IPv6 frames to
// the IP hooks (where the egress table checks replies), through the
// bridge's own switches, never the global sysctls; each goes back when the
// last offline port on the bridge goes. Loading br_netfilter turns the
// global switches on: they are put back off at once, so other bridges are
// untouched. newlyCrossing reports whether a family's frames cross the IP
// hooks now that did not before (its global switch off and the bridge's
// was off): only then can a FORWARD chain start to see them.
// Equivalent to: `ip link set BR type bridge nf_call_iptables 1 nf_call_ip6tables 1`.
func ensureBridgeNetfilter(bridge, ifname string) (newlyCrossing bool, err error) {
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		if err := loadBrNetfilter(); err != nil {
			return false, err
		}
	}
	knobs := bridgeKnobs(bridge)
	for i, sw := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
		if !isOn(knobs[i]) && !isOn("/proc/sys/net/bridge/"+sw) {
			newlyCrossing = true
		}
	}
	if err := Knobs.Need("1", "guard:"+ifname, knobs...); err != nil {
		return newlyCrossing, fmt.Errorf("turning on the netfilter switches of bridge %s: %w", bridge, err)
	}
	return newlyCrossing, nil
}

// bridgeKnobs are the bridge's switches ensureBridgeNetfilter turns on.
func bridgeKnobs(bridge string) []string {
	return []string{
		filepath.Join("/sys/class/net", bridge, "bridge", "nf_call_iptables"),
		filepath.Join("/sys/class/net", bridge, "bridge", "nf_call_ip6tables"),
	}
}

func isOn(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// Check verifies port p: both tables hold their rules, and every element
// of the port is there.
func Check(p Port) error {
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close(daemonOf(&p))
	tables := []nft.Table{Bridge()}
	if p.Offline != nil {
		tables = append(tables, Egress())
	}
	if !p.Guarded() {
		return nil
	}
	for _, t := range tables {
		if ok, err := c.TableExists(t.Ref()); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("lanwire's table %s is missing (was the ruleset flushed?): re-add the container, or run any ADD to rebuild it", t.Name)
		}
		diff, err := c.Verify(t)
		if err != nil {
			return err
		}
		if diff != "" {
			return errors.New(diff)
		}
	}
	want, err := Elements(p)
	if err != nil {
		return err
	}
	have, err := portElements(c, p.IfName)
	if err != nil {
		return err
	}
	if missing := diff(want, have); len(missing) > 0 {
		return fmt.Errorf("port %s: %d of its %d firewall entries are missing (the first in set %s)", p.IfName, len(missing), len(want), missing[0].Set)
	}
	if extra := diff(have, want); len(extra) > 0 {
		return fmt.Errorf("port %s: %d firewall entries are not its own any more (the first in set %s)", p.IfName, len(extra), extra[0].Set)
	}
	if p.Offline != nil && p.Offline.LogPrefix != "" {
		t := Egress().Ref()
		rules, err := c.GetRules(t, &nftables.Chain{Table: t, Name: LogChain})
		if err != nil {
			return err
		}
		n := 0
		for _, r := range rules {
			if nft.CommentOf(r.UserData) == p.Comment() {
				n++
			}
		}
		if want := len(logRules(&p)); n != want {
			return fmt.Errorf("port %s: %d logging rules, want %d", p.IfName, n, want)
		}
	}
	return nil
}

// portElements dumps the per-port sets and returns ifname's elements.
func portElements(c *nft.Conn, ifname string) ([]Element, error) {
	br := Bridge()
	var out []Element
	for _, s := range PerPortSets {
		es, err := c.GetSetElements(br.SetRef(s))
		if err != nil {
			return nil, fmt.Errorf("reading set %s: %w", s, err)
		}
		for _, e := range es {
			if e.IntervalEnd || !ownsKey(e.Key, ifname) {
				continue
			}
			el := Element{Set: s, Key: e.Key}
			if len(e.KeyEnd) > 0 {
				el.KeyEnd = e.KeyEnd
			}
			out = append(out, el)
		}
	}
	return out, nil
}

// GC removes the ports of network whose container is not valid (the veth
// first, then its entries), then rebuilds the tables if they hold elements
// of ports no record knows. Ports hostbridge-dhcp made are left to its own
// GC (withHostBridge false) unless their veth is gone.
func GC(network string, valid func(containerID string) bool, withHostBridge bool) error {
	recs, err := records()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range recs {
		if !linkExists(p.IfName) {
			// The port is gone with its container's netns, whatever the
			// network: its record and elements only take room.
			errs = append(errs, prune(p))
			continue
		}
		if p.Network != network || valid(p.ContainerID) {
			continue
		}
		if p.HostBridge && !withHostBridge && linkExists(p.IfName) {
			continue
		}
		// A stale container's port goes before its guard: never a port
		// left unguarded.
		if l, err := netlink.LinkByName(p.IfName); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("removing the port %s of stale container %s: %w", p.IfName, p.ContainerID, err))
				continue
			}
		}
		errs = append(errs, prune(p))
	}
	return errors.Join(append(errs, sweep())...)
}

// Forget removes everything of port ifname, whose veth went with its
// netns without a DEL: its entries, its record and its hold on the
// bridge's FORWARD rule. A port with no record is left alone.
func Forget(ifname string) error {
	p, err := Load(ifname)
	if err != nil || p == nil {
		return err
	}
	return prune(*p)
}

// prune removes the entries and record of port p, whose veth is gone, and
// its hold on the bridge's FORWARD rule.
func prune(p Port) error {
	err := Remove(p.IfName)
	c, cerr := nft.Open()
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	defer c.Close(daemonOf(&p))
	return errors.Join(err, forward.Release(c, p.Bridge, p.IfName, daemonOf(&p)))
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// sweep rebuilds the tables when their rules differ from lanwire's (changed
// by hand) or they hold elements of a port without a record (left by a
// process killed between the kernel change and the record), or removes
// tables no record needs.
func sweep() error {
	unlock, err := Lock()
	if err != nil {
		return err
	}
	defer unlock()
	recs, err := records()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, p := range recs {
		if p.Guarded() {
			known[p.IfName] = true
		}
	}
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close(DefaultDaemon)
	stale := false
	for _, t := range []nft.Table{Bridge(), Egress()} {
		if ok, _ := c.TableExists(t.Ref()); ok {
			if diff, err := c.Verify(t); err != nil || diff != "" {
				stale = true // a rule changed by hand
			}
		}
	}
	if ok, _ := c.TableExists(Bridge().Ref()); ok {
		for _, s := range PerPortSets {
			es, err := c.GetSetElements(Bridge().SetRef(s))
			if err != nil {
				return err
			}
			for _, e := range es {
				if len(e.Key) >= 16 && !known[strings.TrimRight(string(e.Key[:16]), "\x00")] {
					stale = true
				}
			}
		}
	} else if len(known) > 0 {
		stale = true
	}
	if !stale {
		return nil
	}
	return rebuild(c, nil, "")
}

// Linger is how long lanwire's tables stay, empty, after the last port
// that needed them went, when a lease daemon is there to remove them.
const Linger = 30 * time.Second

// Tidy deletes the tables no port has needed for grace. The last port's
// removal leaves them, empty, when a lease daemon runs; the daemon calls
// Tidy(Linger) at each namespace poll, and Tidy(0) when it stops.
func Tidy(grace time.Duration) error {
	type tableOf struct {
		kind  string // the port markers that need it
		table nft.Table
	}
	all := []tableOf{{"active", Bridge()}, {"offline", Egress()}}
	if !unused(all[0].kind, grace) && !unused(all[1].kind, grace) {
		return nil
	}
	c, err := nft.Open()
	if err != nil {
		return err
	}
	defer c.Close("")
	var doomed []tableOf
	for _, t := range all {
		if ok, _ := c.TableExists(t.table.Ref()); ok && unused(t.kind, grace) {
			doomed = append(doomed, t)
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	unlock, err := Lock()
	if err != nil {
		return err
	}
	defer unlock()
	n := 0
	for _, t := range doomed {
		if unused(t.kind, grace) { // again: a port may have come meanwhile
			c.Delete(t.table)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return c.Flush()
}

// unused reports whether no port has had marker kind for grace.
func unused(kind string, grace time.Duration) bool { return nft.Idle(filepath.Join(Dir, kind), grace) }

// MoveAddr replaces address old of a recorded port with new (and, when
// server is set, its DHCP servers with server), as the lease daemon does
// when a lease moves to another address. A port with no record, or
// without old, is left alone.
func MoveAddr(ifname string, old, new, server net.IP) error {
	unlock, err := Lock()
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := Load(ifname)
	if err != nil || rec == nil {
		return err
	}
	p := *rec
	p.Addrs = nil
	found := false
	for _, a := range rec.Addrs {
		if a.Equal(old) {
			a, found = new, true
		}
		p.Addrs = append(p.Addrs, a)
	}
	if server != nil && new.To4() != nil {
		p.DHCP = []net.IP{server}
	}
	if !found || (old.Equal(new) && fmt.Sprint(p.DHCP) == fmt.Sprint(rec.DHCP)) {
		return nil
	}
	if err := change(rec, &p); err != nil {
		return err
	}
	return writeRecord(rec, p)
}

// loadBrNetfilter loads br_netfilter and turns the global switches that
// loading turns on back off, so that only bridges that ask for it hand
// their frames to the IP hooks.
func loadBrNetfilter() error {
	if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
		return fmt.Errorf("offline containers need the br_netfilter kernel module (their replies are checked with conntrack); load it with `modprobe br_netfilter` (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	for _, s := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
		_ = os.WriteFile("/proc/sys/net/bridge/"+s, []byte("0"), 0o644)
	}
	return nil
}
