package lease

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// Info6 is what a DHCPv6 server granted in one IA_NA (RFC 8415).
type Info6 struct {
	Address net.IP `json:"address"`
	// ServerID is the granting server's DUID, as sent.
	ServerID   []byte        `json:"serverID"`
	Preferred  time.Duration `json:"preferred"`
	Valid      time.Duration `json:"valid"`
	RenewTime  time.Duration `json:"renewTime"`
	RebindTime time.Duration `json:"rebindTime"`
	DNS        []net.IP      `json:"dns,omitempty"`
	Search     []string      `json:"search,omitempty"`
}

// Prefix is the address as a /128, the way a DHCPv6 address is configured:
// the on-link prefix comes from router advertisements, not from DHCPv6.
func (i Info6) Prefix() net.IPNet {
	return net.IPNet{IP: i.Address, Mask: net.CIDRMask(128, 128)}
}

// timing maps the IA_NA's timers onto Info's, whose phases are the same.
func (i Info6) timing() Info {
	return Info{LeaseTime: i.Valid, RenewTime: i.RenewTime, RebindTime: i.RebindTime}
}

// PhaseAt reports where the lease stands at now.
func (i Info6) PhaseAt(acquired, now time.Time) Phase { return i.timing().PhaseAt(acquired, now) }

// NextAttempt is when the client should next act on the lease.
func (i Info6) NextAttempt(acquired, now time.Time, minRetry time.Duration) time.Time {
	return i.timing().NextAttempt(acquired, now, minRetry)
}

// DUID is the client's DHCPv6 identity: DUID-LL from the spec's MAC, so it
// is the same for every exchange and across daemon restarts.
func (s Spec) DUID() (dhcpv6.DUID, error) {
	mac, err := s.HardwareAddr()
	if err != nil {
		return nil, err
	}
	return &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac}, nil
}

// IAID is the IA_NA's identifier: the last four bytes of the MAC.
func (s Spec) IAID() [4]byte {
	var id [4]byte
	if mac, err := s.HardwareAddr(); err == nil && len(mac) >= 4 {
		copy(id[:], mac[len(mac)-4:])
	}
	return id
}

// NoBindingError is a server saying it holds no binding for our IA (the
// DHCPv6 counterpart of a NAK): the client starts over with SOLICIT.
type NoBindingError struct{ Msg string }

func (e *NoBindingError) Error() string { return "server has no binding for our IA: " + e.Msg }

// FromReply parses and checks a server's REPLY (or ADVERTISE) for the IA_NA
// iaid: a status of success, one usable global address with a non-zero
// valid lifetime, and the server's DUID.
func FromReply(msg *dhcpv6.Message, iaid [4]byte) (Info6, error) {
	var info Info6
	if msg == nil {
		return info, errors.New("no reply")
	}
	if st := msg.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
		if st.StatusCode == iana.StatusNoBinding {
			return info, &NoBindingError{Msg: st.StatusMessage}
		}
		return info, fmt.Errorf("server status %s: %s", st.StatusCode, st.StatusMessage)
	}
	sid := msg.Options.ServerID()
	if sid == nil {
		return info, errors.New("reply has no server identifier")
	}
	info.ServerID = sid.ToBytes()
	var ia *dhcpv6.OptIANA
	for _, x := range msg.Options.IANA() {
		if x.IaId == iaid {
			ia = x
		}
	}
	if ia == nil {
		return info, fmt.Errorf("reply has no IA_NA %x", iaid)
	}
	if st := ia.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
		if st.StatusCode == iana.StatusNoBinding {
			return info, &NoBindingError{Msg: st.StatusMessage}
		}
		return info, fmt.Errorf("IA_NA status %s: %s", st.StatusCode, st.StatusMessage)
	}
	for _, a := range ia.Options.Addresses() {
		ip := a.IPv6Addr
		if ip.To16() == nil || ip.To4() != nil || !ip.IsGlobalUnicast() || a.ValidLifetime <= 0 {
			continue
		}
		info.Address = ip.To16()
		info.Preferred, info.Valid = a.PreferredLifetime, a.ValidLifetime
		break
	}
	if info.Address == nil {
		return info, errors.New("IA_NA holds no usable address")
	}
	if info.Valid < minLeaseTime {
		info.Valid = minLeaseTime
	}
	info.RenewTime, info.RebindTime = timers(info.Valid, ia.T1, ia.T2)
	for _, d := range msg.Options.DNS() {
		if d.To4() == nil && !d.IsUnspecified() && !d.IsLoopback() && !d.IsMulticast() {
			info.DNS = append(info.DNS, d)
		}
	}
	if l := msg.Options.DomainSearchList(); l != nil {
		info.Search = append(info.Search, l.Labels...)
	}
	return info, nil
}
