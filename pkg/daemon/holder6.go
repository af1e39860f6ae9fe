package daemon

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/lanwire/lanwire/pkg/lease"
	"github.com/lanwire/lanwire/pkg/leasestore"
	"github.com/lanwire/lanwire/pkg/netconf"
)

// step6 acts on the DHCPv6 lease according to its phase: RENEW at T1, REBIND
// at T2, SOLICIT again on NoBinding, and at expiry the address removed and
// asked for again.
func (h *holder) step6() {
	rec := h.snapshot()
	if rec.Info6 == nil {
		return
	}
	k, info := rec.Key, *rec.Info6
	switch phase := info.PhaseAt(rec.Acquired6, time.Now()); phase {
	case lease.Bound:
		return
	case lease.Renewing, lease.Rebinding:
		reply, err := h.extend6(rec, phase == lease.Rebinding)
		var nb *lease.NoBindingError
		switch {
		case errors.As(err, &nb):
			h.s.log.Printf("%s: DHCPv6 %v; starting over", k, err)
			if !h.rediscover6(rec, nil) {
				h.expire6(rec)
			}
		case err != nil:
			h.s.log.Printf("%s: DHCPv6 %s of %s: %v", k, phase, info.Address, err)
		default:
			h.adopt6(rec, reply, "DHCPv6 "+string(phase))
		}
	case lease.Expired:
		if !h.isRemoved6() {
			h.s.log.Printf("%s: DHCPv6 lease on %s expired; removing the address and asking for it again", k, info.Address)
			h.expire6(rec)
		}
		h.rediscover6(rec, info.Address)
	}
}

// open6 opens a DHCPv6 client on the lease's interface inside its netns.
func (h *holder) open6(rec leasestore.Record) (*lease.Conn6, error) {
	mac, err := rec.Spec.HardwareAddr()
	if err != nil {
		return nil, err
	}
	var conn *lease.Conn6
	err = h.inNetns(rec, func() error {
		var err error
		conn, err = lease.OpenConn6(rec.Spec.IfName, mac, time.Second)
		return err
	})
	return conn, err
}

func (h *holder) extend6(rec leasestore.Record, rebind bool) (*dhcpv6.Message, error) {
	conn, err := h.open6(rec)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
	defer cancel()
	return conn.Extend6(ctx, rec.Spec, *rec.Info6, rebind)
}

func (h *holder) rediscover6(rec leasestore.Record, want net.IP) bool {
	conn, err := h.open6(rec)
	if err != nil {
		h.s.log.Printf("%s: DHCPv6 rediscovery: %v", rec.Key, err)
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
	defer cancel()
	reply, err := conn.Acquire6(ctx, rec.Spec, want)
	if err != nil {
		return false
	}
	return h.adopt6(rec, reply, "DHCPv6 rediscovery")
}

// adopt6 takes a new REPLY: a changed address is applied in the netns (new
// first, old removed), then the lease is persisted.
func (h *holder) adopt6(old leasestore.Record, reply *dhcpv6.Message, how string) bool {
	info, err := lease.FromReply(reply, old.Spec.IAID())
	if err != nil {
		h.s.log.Printf("%s: ignoring DHCPv6 REPLY: %v", old.Key, err)
		return false
	}
	h.mu.Lock() // netns and record change together, as in adopt
	removed := h.removed6
	if old.Info6 == nil || removed || !info.Address.Equal(old.Info6.Address) {
		err := h.inNetns(old, func() error {
			if old.Info6 == nil || removed {
				return netconf.Apply6(old.Spec.IfName, info)
			}
			return netconf.Change6(old.Spec.IfName, *old.Info6, info)
		})
		if err != nil {
			h.mu.Unlock()
			h.s.log.Printf("%s: applying new DHCPv6 lease %s: %v", old.Key, info.Address, err)
			return false
		}
		h.s.log.Printf("%s: DHCPv6 address now %s", old.Key, info.Address)
	}
	h.rec.Info6 = &info
	h.rec.Acquired6 = time.Now()
	h.removed6 = false
	rec := h.rec
	h.mu.Unlock()
	if old.Info6 != nil && !info.Address.Equal(old.Info6.Address) {
		h.s.movePortAddr(rec.Key, old.Info6.Address, info.Address, nil)
	}
	if err := h.s.store.Save(rec); err != nil {
		h.s.log.Printf("%s: %v (the lease is held in memory)", rec.Key, err)
	}
	h.s.log.Printf("%s: %s of %s ok, next renewal in %s", rec.Key, how, info.Address, info.RenewTime)
	return true
}

// expire6 takes the DHCPv6 address off the interface.
func (h *holder) expire6(rec leasestore.Record) {
	if rec.Info6 == nil {
		return
	}
	err := h.inNetns(rec, func() error { return netconf.Remove6(rec.Spec.IfName, *rec.Info6) })
	if err != nil {
		h.s.log.Printf("%s: removing expired DHCPv6 address: %v", rec.Key, err)
	}
	h.mu.Lock()
	h.removed6 = true
	h.mu.Unlock()
}
