package egress

import (
	"encoding/json"
	"net"
	"reflect"
	"testing"
)

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"5000/tcp", "5000/tcp", false},
		{"53/udp", "53/udp", false},
		{"8000-8100/tcp", "8000-8100/tcp", false},
		{"80", "", true},
		{"80/icmp", "", true},
		{"0/tcp", "", true},
		{"70000/tcp", "", true},
		{"9-1/tcp", "", true},
		{"a/tcp", "", true},
	}
	for _, tc := range tests {
		got, err := ParsePort(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if err == nil && got.String() != tc.want {
			t.Errorf("%q: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseAllow(t *testing.T) {
	tests := []struct {
		to      string
		ports   []string
		want    string // as JSON
		wantErr bool
	}{
		{"host", []string{"8000/tcp"}, `{"to":"host","ports":["8000/tcp"]}`, false},
		{"192.168.1.0/24", nil, `{"to":"192.168.1.0/24"}`, false},
		{"10.0.0.5", []string{"53/udp", "53/tcp"}, `{"to":"10.0.0.5/32","ports":["53/udp","53/tcp"]}`, false},
		{"fd00::1", nil, `{"to":"fd00::1/128"}`, false},
		{"192.168.1.1/24", nil, "", true},
		{"", nil, "", true},
		{"nowhere", nil, "", true},
		{"host", []string{"80"}, "", true},
	}
	for _, tc := range tests {
		a, err := ParseAllow(tc.to, tc.ports)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q %v: err %v", tc.to, tc.ports, err)
			continue
		}
		if err != nil {
			continue
		}
		got, _ := json.Marshal(a)
		if string(got) != tc.want {
			t.Errorf("%q %v: got %s, want %s", tc.to, tc.ports, got, tc.want)
		}
		var back Allow
		if err := json.Unmarshal(got, &back); err != nil || !reflect.DeepEqual(back, a) {
			t.Errorf("%s does not read back: %+v, %v", got, back, err)
		}
	}
}

func TestDNS(t *testing.T) {
	got, _ := json.Marshal(DNS(net.ParseIP("10.1.2.1")))
	if want := `{"to":"10.1.2.1/32","ports":["53/udp","53/tcp"]}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestLogPrefix(t *testing.T) {
	if got := LogPrefix("0123456789abcdef"); got != "lanwire-egress 0123456789ab: " || len(got) > 29 {
		t.Errorf("got %q", got)
	}
}
