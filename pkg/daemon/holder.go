package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/lanwire/lanwire/pkg/guard"
	"github.com/lanwire/lanwire/pkg/lease"
	"github.com/lanwire/lanwire/pkg/leaseapi"
	"github.com/lanwire/lanwire/pkg/leasestore"
	"github.com/lanwire/lanwire/pkg/netconf"
)

// holder keeps one lease alive: a goroutine sleeping until the next RFC 2131
// deadline (T1, retries, T2, expiry), then acting inside the netns.
type holder struct {
	s *Server

	mu       sync.Mutex
	rec      leasestore.Record
	removed  bool // the address was taken off at expiry
	removed6 bool // the same for the DHCPv6 address
	// confirmed: a server granted or renewed the lease while this daemon
	// ran (a lease resumed from disk is not, until it is).
	confirmed bool

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newHolder(s *Server, rec leasestore.Record) *holder {
	ctx, cancel := context.WithCancel(context.Background())
	return &holder{s: s, rec: rec, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

func (h *holder) start() { go h.run() }

// stop ends the goroutine and waits for it.
func (h *holder) stop() {
	h.cancel()
	<-h.done
}

func (h *holder) view() leaseapi.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rec
	now := time.Now()
	v := leaseapi.Lease{
		Key: r.Key, Spec: r.Spec, Info: r.Info,
		Phase:       r.Info.PhaseAt(r.Acquired, now),
		Acquired:    r.Acquired,
		Expiry:      r.Acquired.Add(r.Info.LeaseTime),
		NextRenewal: r.Info.NextAttempt(r.Acquired, now, h.s.cfg.MinRetry),
	}
	if r.Info6 != nil {
		i6 := *r.Info6
		acq, exp, next := r.Acquired6, r.Acquired6.Add(i6.Valid), i6.NextAttempt(r.Acquired6, now, h.s.cfg.MinRetry)
		v.Info6, v.Phase6, v.Acquired6, v.Expiry6, v.NextRenewal6 = &i6, i6.PhaseAt(acq, now), &acq, &exp, &next
	}
	return v
}

func (h *holder) snapshot() leasestore.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rec
}

// isRemoved reports whether the address was taken off at expiry.
func (h *holder) isRemoved() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.removed
}

// isConfirmed reports whether a server granted or renewed the lease while
// this daemon ran.
func (h *holder) isConfirmed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.confirmed
}

// isRemoved6 reports whether the DHCPv6 address was taken off at expiry.
func (h *holder) isRemoved6() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.removed6
}

func (h *holder) run() {
	defer close(h.done)
	for {
		rec := h.snapshot()
		now := time.Now()
		next := rec.Info.NextAttempt(rec.Acquired, now, h.s.cfg.MinRetry)
		if rec.Info6 != nil {
			if n6 := rec.Info6.NextAttempt(rec.Acquired6, now, h.s.cfg.MinRetry); n6.Before(next) {
				next = n6
			}
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-h.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		h.step()
		h.step6()
	}
}

// step acts on the lease according to its phase.
func (h *holder) step() {
	rec := h.snapshot()
	k := rec.Key
	switch phase := rec.Info.PhaseAt(rec.Acquired, time.Now()); phase {
	case lease.Bound:
		return
	case lease.Renewing, lease.Rebinding:
		var server net.IP
		if phase == lease.Renewing {
			server = rec.Info.ServerID
		}
		ack, err := h.extend(rec, server)
		var nak *lease.NakError
		switch {
		case errors.As(err, &nak):
			// The address is no longer ours: discover again, moving the
			// interface over (new address first) when a server answers,
			// and taking the address off when none does.
			h.s.log.Printf("%s: %s refused renewal (%v); starting over", k, rec.Info.ServerID, err)
			if !h.rediscover(rec, nil) {
				h.expire(rec)
			}
		case err != nil:
			h.s.log.Printf("%s: %s of %s: %v", k, phase, rec.Info.Address.IP, err)
		default:
			h.adopt(rec, ack, string(phase))
		}
	case lease.Expired:
		if !h.isRemoved() {
			h.s.log.Printf("%s: lease on %s expired; removing the address and asking for it again", k, rec.Info.Address.IP)
			h.expire(rec)
		}
		h.rediscover(rec, rec.Info.Address.IP)
	}
}

// inNetns runs fn inside the lease's namespace.
func (h *holder) inNetns(rec leasestore.Record, fn func() error) error {
	if !netnsAlive(rec.Spec.Netns, rec.Netns()) {
		return errNetnsGone
	}
	return ns.WithNetNSPath(rec.Spec.Netns, func(ns.NetNS) error { return fn() })
}

var errNetnsGone = errors.New("netns is gone")

func (h *holder) extend(rec leasestore.Record, server net.IP) (*dhcpv4.DHCPv4, error) {
	mac, err := rec.Spec.HardwareAddr()
	if err != nil {
		return nil, err
	}
	var conn *lease.Conn
	err = h.inNetns(rec, func() error {
		var err error
		conn, err = lease.OpenBound(rec.Spec.IfName, mac, rec.Info.Address.IP)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
	defer cancel()
	return conn.Extend(ctx, rec.Spec, rec.Info.Address.IP, server)
}

// rediscover runs a full DISCOVER in the netns, asking for want, and
// reports whether a new lease was adopted.
func (h *holder) rediscover(rec leasestore.Record, want net.IP) bool {
	mac, err := rec.Spec.HardwareAddr()
	if err != nil {
		return false
	}
	var conn *lease.Conn
	err = h.inNetns(rec, func() error {
		var err error
		conn, err = lease.OpenRaw(rec.Spec.IfName, mac, nil)
		return err
	})
	if err != nil {
		h.s.log.Printf("%s: rediscovery: %v", rec.Key, err)
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
	defer cancel()
	ack, err := h.s.acquireOn(ctx, conn, rec.Spec, want)
	if err != nil {
		return false
	}
	return h.adopt(rec, ack, "rediscovery")
}

// acquireOn runs a full DHCP acquisition on conn for spec, its first
// DISCOVER aimed at the Ethernet address spec's bridge's server last
// answered from, and notes where the server answered from this time
// (forgotten when the answer came relayed, from an address conn did not
// see).
func (s *Server) acquireOn(ctx context.Context, conn *lease.Conn, spec lease.Spec, want net.IP) (*dhcpv4.DHCPv4, error) {
	s.mu.Lock()
	conn.Aim(s.servers[spec.Bridge])
	s.mu.Unlock()
	ack, err := conn.Acquire(ctx, spec, want)
	if err != nil {
		return nil, err
	}
	mac := conn.ServerMAC(ack.ServerIdentifier())
	s.mu.Lock()
	defer s.mu.Unlock()
	if mac == nil {
		delete(s.servers, spec.Bridge)
	} else {
		s.servers[spec.Bridge] = mac
	}
	return ack, nil
}

// heldAction is what an ADD does with a lease the daemon holds for its key.
type heldAction int

const (
	// answerHeld: answer the lease as it is (a repeated ADD).
	answerHeld heldAction = iota
	// confirmHeld: ask the server to confirm it (INIT-REBOOT), else DISCOVER.
	confirmHeld
	// dropHeld: release and drop it (its namespace is gone), then acquire.
	dropHeld
	// reacquire: acquire anew, asking for its address (expired, taken off,
	// another MAC).
	reacquire
)

// decideHeld decides what an ADD for spec, in the namespace id, does with
// the held lease rec. The lease is answered as it is only to the ADD of an
// interface that already had it (not newIf), unexpired and confirmed by a
// server while this daemon ran; a still-valid one is confirmed with the
// server first; one whose namespace is gone or is another one is dropped.
func decideHeld(rec leasestore.Record, id leasestore.NetnsID, alive bool, spec lease.Spec, newIf, confirmed, removed, removed6 bool, now time.Time) heldAction {
	switch {
	case rec.Netns() != id || !alive:
		return dropHeld
	case rec.Spec.MAC != spec.MAC || removed || rec.Info.PhaseAt(rec.Acquired, now) == lease.Expired:
		return reacquire
	case rec.Spec.IfName != spec.IfName || newIf || !confirmed || rec.Spec.DHCPv6 != spec.DHCPv6 || (spec.DHCPv6 && removed6):
		return confirmHeld
	}
	return answerHeld
}

// verifyOn asks the server to confirm addr for spec (INIT-REBOOT), aimed
// like acquireOn.
func (s *Server) verifyOn(ctx context.Context, conn *lease.Conn, spec lease.Spec, addr net.IP) (*dhcpv4.DHCPv4, error) {
	s.mu.Lock()
	conn.Aim(s.servers[spec.Bridge])
	s.mu.Unlock()
	return conn.Verify(ctx, spec, addr)
}

// adopt takes a new ACK: applies any change of address or routes in the
// netns and takes it into the record, together, then persists the lease.
func (h *holder) adopt(old leasestore.Record, ack *dhcpv4.DHCPv4, how string) bool {
	info, err := lease.FromACK(ack)
	if err != nil {
		h.s.log.Printf("%s: ignoring ACK: %v", old.Key, err)
		return false
	}
	changed := !info.Address.IP.Equal(old.Info.Address.IP) || info.Address.Mask.String() != old.Info.Address.Mask.String() ||
		!info.Gateway.Equal(old.Info.Gateway) || routesDiffer(info.Routes, old.Info.Routes)
	// The netns and the record change under one lock: a view asked
	// meanwhile (CHECK, leases) waits and sees them agree, never the
	// address back while the record still says expired.
	h.mu.Lock()
	removed := h.removed
	if changed || removed {
		err := h.inNetns(old, func() error {
			if removed {
				if err := netconf.Apply(old.Spec.IfName, info, old.Spec.RouteMetric, 0); err != nil {
					return err
				}
				return netconf.GratuitousARP(old.Spec.IfName, info.Address.IP)
			}
			return netconf.Change(old.Spec.IfName, old.Info, info, old.Spec.RouteMetric, 0)
		})
		if err != nil {
			h.mu.Unlock()
			h.s.log.Printf("%s: applying new lease %s: %v", old.Key, info.Address.IP, err)
			return false
		}
		h.s.log.Printf("%s: address now %s via %v (was %s)", old.Key, info.Address.String(), info.Gateway, old.Info.Address.String())
	}
	h.rec.Info = info
	h.rec.Acquired = time.Now()
	h.removed = false
	h.confirmed = true
	rec := h.rec
	h.mu.Unlock()
	if !info.Address.IP.Equal(old.Info.Address.IP) || !info.ServerID.Equal(old.Info.ServerID) {
		h.s.movePortAddr(rec.Key, old.Info.Address.IP, info.Address.IP, info.ServerID)
	}
	if err := h.s.store.Save(rec); err != nil {
		h.s.log.Printf("%s: %v (the lease is held in memory)", rec.Key, err)
	}
	h.s.log.Printf("%s: %s of %s ok, next renewal in %s", rec.Key, how, info.Address.IP, info.RenewTime)
	return true
}

// movePortAddr tells the port's guard that the container's address moved
// (its frames from the new address pass from then on).
func (s *Server) movePortAddr(k lease.Key, old, new, server net.IP) {
	if err := guard.MoveAddr(k.HostIf(), old, new, server); err != nil {
		s.log.Printf("%s: moving the port's firewall entries from %s to %s: %v", k, old, new, err)
	}
}

func routesDiffer(a, b []lease.Route) bool {
	if len(a) != len(b) {
		return true
	}
	for i := range a {
		if a[i].Dst.String() != b[i].Dst.String() || !a[i].GW.Equal(b[i].GW) {
			return true
		}
	}
	return false
}

// expire takes the address and routes off the interface.
func (h *holder) expire(rec leasestore.Record) {
	err := h.inNetns(rec, func() error {
		return netconf.Remove(rec.Spec.IfName, rec.Info, rec.Spec.RouteMetric)
	})
	if err != nil {
		h.s.log.Printf("%s: removing expired address: %v", rec.Key, err)
	}
	h.mu.Lock()
	h.removed = true
	h.mu.Unlock()
}

// sendRelease sends RELEASE (and the DHCPv6 one) from the leased address
// inside the netns, or, when the netns or its link is gone, from a
// throw-away port on the bridge.
func (h *holder) sendRelease() {
	rec := h.snapshot()
	v4 := !h.isRemoved()
	v6 := rec.Info6 != nil && !h.isRemoved6()
	mac, err := rec.Spec.HardwareAddr()
	if err != nil {
		return
	}
	if v4 {
		var conn *lease.Conn
		err = h.inNetns(rec, func() error {
			var err error
			conn, err = lease.OpenBound(rec.Spec.IfName, mac, rec.Info.Address.IP)
			if err != nil {
				conn, err = lease.OpenRaw(rec.Spec.IfName, mac, rec.Info.Address.IP)
			}
			return err
		})
		if err == nil {
			err = conn.Release(rec.Spec, rec.Info.Address.IP, rec.Info.ServerID)
			conn.Close()
			v4 = err != nil
		}
	}
	if v6 {
		var conn *lease.Conn6
		err = h.inNetns(rec, func() error {
			var err error
			conn, err = lease.OpenConn6(rec.Spec.IfName, mac, 0)
			return err
		})
		if err == nil {
			err = conn.Release6(rec.Spec, *rec.Info6)
			conn.Close()
			v6 = err != nil
		}
	}
	if !v4 && !v6 {
		return
	}
	if err := releaseViaBridge(rec, v4, v6); err != nil {
		h.s.log.Printf("%s: could not send RELEASE for %s: %v", rec.Key, rec.Info.Address.IP, err)
	}
}

// acquire obtains a first lease for req, or returns the one already held.
func (s *Server) acquire(ctx context.Context, req leaseapi.Request) leaseapi.Response {
	fail := func(code uint, msg string, err error) leaseapi.Response {
		e := &leaseapi.Error{Code: code, Msg: msg}
		if err != nil {
			e.Details = err.Error()
		}
		return leaseapi.Response{Error: e}
	}
	k := req.Key
	if err := k.Validate(); err != nil {
		return fail(7, err.Error(), nil)
	}
	if req.Spec == nil {
		return fail(7, "acquire needs a spec", nil)
	}
	spec := *req.Spec
	mac, err := spec.HardwareAddr()
	if err != nil {
		return fail(7, err.Error(), nil)
	}
	id, err := netnsID(spec.Netns)
	if err != nil {
		return fail(8, fmt.Sprintf("cannot open netns %s", spec.Netns), err)
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout <= 0 || timeout > 10*time.Minute {
		timeout = 20 * time.Second
	}

	s.mu.Lock()
	if s.acquiring[k] {
		s.mu.Unlock()
		return fail(11, fmt.Sprintf("a lease for %s is already being acquired", k), nil)
	}
	want, want6 := spec.RequestIP, spec.RequestIP6
	old := s.leases[k]
	var action heldAction
	if old != nil {
		rec := old.snapshot()
		old.mu.Lock()
		confirmed, removed, removed6 := old.confirmed, old.removed, old.removed6
		old.mu.Unlock()
		action = decideHeld(rec, id, netnsAlive(rec.Spec.Netns, rec.Netns()), spec, req.NewInterface, confirmed, removed, removed6, time.Now())
		if action == answerHeld {
			s.mu.Unlock()
			v := old.view()
			return leaseapi.Response{Lease: &v}
		}
		delete(s.leases, k)
	}
	s.acquiring[k] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.acquiring, k)
		s.mu.Unlock()
	}()
	var verify net.IP // a still-valid address to confirm with the server first
	if old != nil {
		old.stop()
		rec := old.snapshot()
		switch action {
		case dropHeld:
			s.log.Printf("%s: dropping the lease of %s: its network namespace is gone or is another one", k, rec.Info.Address.IP)
			old.sendRelease()
			if err := s.store.Delete(k); err != nil {
				s.log.Printf("%s: %v", k, err)
			}
		case confirmHeld:
			verify = rec.Info.Address.IP
		}
		if want == nil {
			want = rec.Info.Address.IP
		}
		if rec.Info6 != nil && want6 == nil {
			want6 = rec.Info6.Address
		}
	}

	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// DHCPv6 runs beside DHCPv4, in its own goroutine. Whatever fails
	// below releases the DHCPv6 lease it may have got (a closed channel,
	// read again, yields a result without a lease).
	got6 := make(chan acquired6, 1)
	if spec.DHCPv6 {
		go func() { got6 <- acquire6(actx, spec, mac, want6); close(got6) }()
	} else {
		close(got6)
	}
	committed := false
	defer func() {
		if !committed {
			cancel()
			releaseOrphan6(spec, <-got6)
		}
	}()
	var conn *lease.Conn
	err = ns.WithNetNSPath(spec.Netns, func(ns.NetNS) error {
		var err error
		conn, err = lease.OpenRaw(spec.IfName, mac, nil)
		return err
	})
	if err != nil {
		return fail(999, fmt.Sprintf("opening a DHCP socket on %s in %s", spec.IfName, spec.Netns), err)
	}
	var ack *dhcpv4.DHCPv4
	if verify != nil {
		vctx, vcancel := context.WithTimeout(actx, 2500*time.Millisecond)
		ack, err = s.verifyOn(vctx, conn, spec, verify)
		vcancel()
		if err != nil {
			s.log.Printf("%s: the server did not confirm %s (%v); discovering", k, verify, err)
			ack = nil
		}
	}
	if ack == nil {
		ack, err = s.acquireOn(actx, conn, spec, want)
	}
	// Closing a packet socket waits for an RCU grace period (the kernel's
	// packet_release calls synchronize_net): 5-25 ms here, more on a busy
	// host. Nothing waits on it, so the answer goes out first.
	go conn.Close()
	if err != nil {
		return fail(11, fmt.Sprintf("no DHCP lease on bridge %s within %s", spec.Bridge, timeout),
			fmt.Errorf("%v; check that the bridge has an uplink to the LAN with a DHCP server, that STP's forward delay is not holding new ports, and that with net.bridge.bridge-nf-call-iptables=1 the FORWARD chain accepts the bridge's traffic (see `hostbridge-dhcp doctor`)", err))
	}
	info, err := lease.FromACK(ack)
	if err != nil {
		return fail(999, "server sent an unusable lease", err)
	}
	rec := leasestore.Record{Key: k, Spec: spec, Info: info, Acquired: time.Now(), NetnsDev: id.Dev, NetnsIno: id.Ino, BootID: bootID()}
	if spec.DHCPv6 {
		r6 := <-got6
		if r6.err != nil {
			newHolder(s, rec).sendRelease()
			return fail(11, fmt.Sprintf("no DHCPv6 lease on bridge %s within %s", spec.Bridge, timeout),
				fmt.Errorf("%v; check that the LAN has a DHCPv6 server handing out addresses (dnsmasq: --dhcp-range=::100,::1ff,64), or use \"ipv6\": \"slaac\" on a LAN with router advertisements only", r6.err))
		}
		rec.Info6, rec.Acquired6 = &r6.info, r6.at
	}
	if err := s.store.Save(rec); err != nil {
		newHolder(s, rec).sendRelease() // both leases, got6 already read
		return fail(999, "could not persist the lease; released it", err)
	}
	committed = true
	h := newHolder(s, rec)
	h.confirmed = true
	s.mu.Lock()
	s.leases[k] = h
	s.mu.Unlock()
	h.start()
	s.log.Printf("%s: acquired %s from %s (lease %s)", k, info.Address.String(), info.ServerID, info.LeaseTime)
	if rec.Info6 != nil {
		s.log.Printf("%s: acquired %s over DHCPv6 (valid %s)", k, rec.Info6.Address, rec.Info6.Valid)
	}
	v := h.view()
	return leaseapi.Response{Lease: &v}
}

// acquired6 is the outcome of a first DHCPv6 exchange.
type acquired6 struct {
	info lease.Info6
	at   time.Time
	err  error
}

// acquire6 obtains a first DHCPv6 lease in spec's netns, asking for want.
func acquire6(ctx context.Context, spec lease.Spec, mac net.HardwareAddr, want net.IP) acquired6 {
	var conn *lease.Conn6
	err := ns.WithNetNSPath(spec.Netns, func(ns.NetNS) error {
		var err error
		conn, err = lease.OpenConn6(spec.IfName, mac, 3*time.Second)
		return err
	})
	if err != nil {
		return acquired6{err: err}
	}
	defer conn.Close()
	reply, err := conn.Acquire6(ctx, spec, want)
	if errors.Is(err, lease.ErrNoOffer) {
		err = errors.New("no DHCPv6 server answered SOLICIT with a usable address")
	}
	if err != nil {
		return acquired6{err: err}
	}
	info, err := lease.FromReply(reply, spec.IAID())
	return acquired6{info: info, at: time.Now(), err: err}
}

// releaseOrphan6 releases a DHCPv6 lease obtained for an ADD that failed
// on the IPv4 side.
func releaseOrphan6(spec lease.Spec, r acquired6) {
	if r.err != nil || r.info.Address == nil {
		return
	}
	mac, err := spec.HardwareAddr()
	if err != nil {
		return
	}
	_ = ns.WithNetNSPath(spec.Netns, func(ns.NetNS) error {
		conn, err := lease.OpenConn6(spec.IfName, mac, 0)
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Release6(spec, r.info)
	})
}
