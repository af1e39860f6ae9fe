package lease

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

func reply6(t *testing.T, iaid [4]byte, t1, t2 time.Duration, addrs []dhcpv6.OptIAAddress, extra ...dhcpv6.Option) *dhcpv6.Message {
	t.Helper()
	m, err := dhcpv6.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	m.MessageType = dhcpv6.MessageTypeReply
	m.AddOption(dhcpv6.OptServerID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}))
	ia := &dhcpv6.OptIANA{IaId: iaid, T1: t1, T2: t2}
	for i := range addrs {
		ia.Options.Add(&addrs[i])
	}
	m.AddOption(ia)
	for _, o := range extra {
		m.AddOption(o)
	}
	return m
}

func TestFromReply(t *testing.T) {
	iaid := [4]byte{1, 2, 3, 4}
	good := net.ParseIP("fd00::123")
	addr := func(ip string, pref, valid time.Duration) []dhcpv6.OptIAAddress {
		return []dhcpv6.OptIAAddress{{IPv6Addr: net.ParseIP(ip), PreferredLifetime: pref, ValidLifetime: valid}}
	}
	tests := []struct {
		name      string
		msg       *dhcpv6.Message
		iaid      [4]byte
		want      net.IP
		t1, t2    time.Duration
		valid     time.Duration
		errSubstr string
		noBinding bool
	}{
		{name: "ok with timers", msg: reply6(t, iaid, 60*time.Second, 105*time.Second, addr("fd00::123", time.Minute, 2*time.Minute), dhcpv6.OptDNS(net.ParseIP("fd00::1"))),
			iaid: iaid, want: good, t1: 60 * time.Second, t2: 105 * time.Second, valid: 2 * time.Minute},
		{name: "timers absent: 0.5 and 0.875 of valid", msg: reply6(t, iaid, 0, 0, addr("fd00::123", time.Hour, time.Hour)),
			iaid: iaid, want: good, t1: 30 * time.Minute, t2: 52*time.Minute + 30*time.Second, valid: time.Hour},
		{name: "short valid lifetime raised to 30 s", msg: reply6(t, iaid, 0, 0, addr("fd00::123", time.Second, time.Second)),
			iaid: iaid, want: good, t1: 15 * time.Second, t2: 26250 * time.Millisecond, valid: 30 * time.Second},
		{name: "other IAID", msg: reply6(t, [4]byte{9, 9, 9, 9}, 0, 0, addr("fd00::123", time.Hour, time.Hour)), iaid: iaid, errSubstr: "no IA_NA"},
		{name: "link-local address", msg: reply6(t, iaid, 0, 0, addr("fe80::1", time.Hour, time.Hour)), iaid: iaid, errSubstr: "no usable address"},
		{name: "multicast address", msg: reply6(t, iaid, 0, 0, addr("ff02::1", time.Hour, time.Hour)), iaid: iaid, errSubstr: "no usable address"},
		{name: "valid lifetime 0", msg: reply6(t, iaid, 0, 0, addr("fd00::123", 0, 0)), iaid: iaid, errSubstr: "no usable address"},
		{name: "no address", msg: reply6(t, iaid, 0, 0, nil), iaid: iaid, errSubstr: "no usable address"},
		{name: "NoBinding status", msg: reply6(t, iaid, 0, 0, nil, &dhcpv6.OptStatusCode{StatusCode: iana.StatusNoBinding, StatusMessage: "gone"}),
			iaid: iaid, noBinding: true},
		{name: "NoAddrsAvail status", msg: reply6(t, iaid, 0, 0, nil, &dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail}), iaid: iaid, errSubstr: "NoAddrsAvail"},
		{name: "nil", msg: nil, iaid: iaid, errSubstr: "no reply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := FromReply(tc.msg, tc.iaid)
			var nb *NoBindingError
			switch {
			case tc.noBinding:
				if !errors.As(err, &nb) {
					t.Fatalf("want a NoBindingError, got %v", err)
				}
				return
			case tc.errSubstr != "":
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("want error containing %q, got %v", tc.errSubstr, err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if !info.Address.Equal(tc.want) || info.RenewTime != tc.t1 || info.RebindTime != tc.t2 || info.Valid != tc.valid {
				t.Errorf("got %s T1 %s T2 %s valid %s; want %s %s %s %s", info.Address, info.RenewTime, info.RebindTime, info.Valid, tc.want, tc.t1, tc.t2, tc.valid)
			}
			if p := info.Prefix(); p.String() != tc.want.String()+"/128" {
				t.Errorf("prefix %s", p.String())
			}
		})
	}
}

func TestSpecDUIDAndIAIDStable(t *testing.T) {
	s := Spec{MAC: "02:11:22:33:44:55"}
	d1, err := s.DUID()
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := s.DUID()
	if string(d1.ToBytes()) != string(d2.ToBytes()) {
		t.Error("DUID differs between calls")
	}
	if d1.DUIDType() != dhcpv6.DUID_LL {
		t.Errorf("DUID type %v, want DUID-LL", d1.DUIDType())
	}
	if s.IAID() != [4]byte{0x22, 0x33, 0x44, 0x55} {
		t.Errorf("IAID %x, want the MAC's last four bytes", s.IAID())
	}
}
