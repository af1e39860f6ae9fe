package netavark

import (
	"reflect"
	"testing"

	"github.com/lanwire/lanwire/pkg/offline"
)

func TestParseAllow(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    []offline.AllowEntry
		wantErr bool
	}{
		{in: "", want: []offline.AllowEntry{}},
		{in: "host", want: []offline.AllowEntry{{To: "host"}}},
		{in: "host:8000/tcp", want: []offline.AllowEntry{{To: "host", Ports: []string{"8000/tcp"}}}},
		{in: "host:8000/tcp, 10.1.2.0/24:53/udp+53/tcp", want: []offline.AllowEntry{
			{To: "host", Ports: []string{"8000/tcp"}}, {To: "10.1.2.0/24", Ports: []string{"53/udp", "53/tcp"}}}},
		// IPv6: an address or a CIDR alone is not split at its colons.
		{in: "fd00::1", want: []offline.AllowEntry{{To: "fd00::1"}}},
		{in: "2001:db8::/32", want: []offline.AllowEntry{{To: "2001:db8::/32"}}},
		{in: "2001:db8::/32:443/tcp", want: []offline.AllowEntry{{To: "2001:db8::/32", Ports: []string{"443/tcp"}}}},
		{in: "fd00::1:8000/tcp", want: []offline.AllowEntry{{To: "fd00::1", Ports: []string{"8000/tcp"}}}},
		{in: "registry.lan:5000/tcp", wantErr: true},
		{in: "host:", wantErr: true},
		{in: "10.0.0.0/33", wantErr: true},
	} {
		got, err := ParseAllow(c.in)
		if (err != nil) != c.wantErr {
			t.Errorf("ParseAllow(%q) error %v, want error %v", c.in, err, c.wantErr)
			continue
		}
		if !c.wantErr && !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseAllow(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}
