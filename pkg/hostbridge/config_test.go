package hostbridge

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/lanwire/lanwire/pkg/chain/chaintest"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"1.1.0","name":"lan","type":"hostbridge-dhcp","bridge":"br0"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.IPv6 != "off" || c.LeaseTimeout.Duration != 20*time.Second || c.ClientID != "mac" ||
		*c.VendorClass != "lanwire" || c.DaemonSocket != "/run/cni/hostbridge-dhcp.sock" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	base := `"cniVersion":"1.1.0","name":"lan","type":"hostbridge-dhcp"`
	tests := []struct {
		name, conf, want string
	}{
		{"not json", `{`, "parsing network configuration"},
		{"no name", `{"bridge":"br0"}`, "no \"name\""},
		{"no bridge", `{` + base + `}`, "\"bridge\" is required"},
		{"bridge type", `{` + base + `,"bridge":1}`, "bridge"},
		{"ipv6 mode", `{` + base + `,"bridge":"br0","ipv6":"maybe"}`, "\"ipv6\" must be"},
		{"duration", `{` + base + `,"bridge":"br0","leaseTimeout":"5 sec"}`, "bad duration"},
		{"duration range", `{` + base + `,"bridge":"br0","leaseTimeout":"1h"}`, "out of range"},
		{"mtu", `{` + base + `,"bridge":"br0","mtu":70000}`, "mtu"},
		{"send option value", `{` + base + `,"bridge":"br0","sendOptions":{"77":{"bogus":1}}}`, "fromArg"},
		{"send option empty", `{` + base + `,"bridge":"br0","sendOptions":{"77":""}}`, "give a value"},
		{"request option name", `{` + base + `,"bridge":"br0","requestOptions":["nope"]}`, "unknown DHCP option"},
		{"request option fraction", `{` + base + `,"bridge":"br0","requestOptions":[1.5]}`, "out of range"},
		{"mac", `{` + base + `,"bridge":"br0","runtimeConfig":{"mac":"00:00:00:00:00:00"}}`, "zero MAC"},
		{"ip v6", `{` + base + `,"bridge":"br0","runtimeConfig":{"ips":["fd00::5"]}}`, "only a DHCPv6 lease can ask for"},
		{"send option twice", `{` + base + `,"bridge":"br0","sendOptions":{"user-class":"a","77":"b"}}`, "given twice"},
		{"client id", `{` + base + `,"bridge":"br0","clientID":"` + strings.Repeat("x", 300) + `"}`, "longer than 250"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.conf))
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("want a CNI error, got %v", err)
			}
			if te.Code != types.ErrInvalidNetworkConfig {
				t.Errorf("code %d, want 7", te.Code)
			}
			if !strings.Contains(te.Msg, tc.want) {
				t.Errorf("message %q lacks %q", te.Msg, tc.want)
			}
		})
	}
}

func TestBuildSpec(t *testing.T) {
	conf := `{"cniVersion":"1.1.0","name":"lan","type":"hostbridge-dhcp","bridge":"br0",
	  "sendOptions":{"user-class":"ci","224":{"fromArg":"NOPE"},"250":{"fromArg":"K8S_POD_NAMESPACE"}},
	  "requestOptions":[42,"domain-search"]}`
	tests := []struct {
		name         string
		conf         string
		args         string
		wantHost     string
		wantMAC      string
		wantIP       string
		wantClientID []byte
	}{
		{"hostname order", conf, "K8S_POD_NAME=pod;HOSTNAME=web1;NERDCTL_CNI_DHCP_HOSTNAME=n", "web1", "", "", nil},
		{"k8s pod name", conf, "K8S_POD_NAME=pod;K8S_POD_NAMESPACE=ns1", "pod", "", "", nil},
		{"nerdctl", conf, "NERDCTL_CNI_DHCP_HOSTNAME=n1", "n1", "", "", nil},
		{"mac and ip args", conf, "MAC=02:11:22:33:44:55;IP=10.0.0.7", "", "02:11:22:33:44:55", "10.0.0.7", append([]byte{1}, 2, 0x11, 0x22, 0x33, 0x44, 0x55)},
		{"capabilities win", `{"cniVersion":"1.1.0","name":"lan","bridge":"br0","runtimeConfig":{"mac":"02:aa:bb:cc:dd:ee","ips":["10.0.0.9/24"]}}`,
			"MAC=02:11:22:33:44:55;IP=10.0.0.7", "", "02:aa:bb:cc:dd:ee", "10.0.0.9", nil},
		{"literal client id", `{"cniVersion":"1.1.0","name":"lan","bridge":"br0","clientID":"box-7","hostname":"fixed"}`, "HOSTNAME=web1", "fixed", "", "", append([]byte{0}, "box-7"...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.conf))
			if err != nil {
				t.Fatal(err)
			}
			s, err := buildSpec(c, &skel.CmdArgs{ContainerID: "abc", IfName: "eth0", Netns: "/x", Args: tc.args})
			if err != nil {
				t.Fatal(err)
			}
			if s.Hostname != tc.wantHost {
				t.Errorf("hostname: got %q, want %q", s.Hostname, tc.wantHost)
			}
			if tc.wantMAC != "" && s.MAC != tc.wantMAC {
				t.Errorf("MAC: got %s, want %s", s.MAC, tc.wantMAC)
			}
			if tc.wantMAC == "" && s.MAC != DeriveMAC("abc", "eth0").String() {
				t.Errorf("MAC: got %s, want the derived one", s.MAC)
			}
			if tc.wantIP != "" && s.RequestIP.String() != tc.wantIP {
				t.Errorf("IP: got %v, want %s", s.RequestIP, tc.wantIP)
			}
			if tc.wantClientID != nil && string(s.ClientID) != string(tc.wantClientID) {
				t.Errorf("client id: got %x, want %x", s.ClientID, tc.wantClientID)
			}
		})
	}
	c, _ := Parse([]byte(conf))
	s, _ := buildSpec(c, &skel.CmdArgs{ContainerID: "abc", IfName: "eth0", Args: "K8S_POD_NAMESPACE=team-a"})
	// A fromArg whose argument is absent sends nothing.
	if string(s.SendOptions[77]) != "ci" || string(s.SendOptions[250]) != "team-a" || len(s.SendOptions) != 2 {
		t.Errorf("send options: %q", s.SendOptions)
	}
	if len(s.RequestOptions) != 2 || s.RequestOptions[0] != 42 || s.RequestOptions[1] != 119 {
		t.Errorf("request options: %v", s.RequestOptions)
	}
}

func TestDeriveMAC(t *testing.T) {
	a, b := DeriveMAC("c1", "eth0"), DeriveMAC("c1", "eth0")
	if a.String() != b.String() {
		t.Error("derived MAC not stable")
	}
	if DeriveMAC("c1", "eth1").String() == a.String() || DeriveMAC("c2", "eth0").String() == a.String() {
		t.Error("derived MACs collide")
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Errorf("%s is not a locally administered unicast MAC", a)
	}
}

func TestParseIPv6Modes(t *testing.T) {
	base := `{"cniVersion":"1.1.0","name":"lan","type":"hostbridge-dhcp","bridge":"br0"`
	for _, tc := range []struct {
		conf         string
		dhcp6, slaac bool
	}{
		{base + `}`, false, false},
		{base + `,"ipv6":"off"}`, false, false},
		{base + `,"ipv6":"dhcpv6"}`, true, false},
		{base + `,"ipv6":"slaac"}`, false, true},
		{base + `,"ipv6":"auto"}`, true, true},
		{base + `,"ipv6":"dhcpv6","runtimeConfig":{"ips":["10.0.0.5","fd00::5/64"]}}`, true, false},
	} {
		c, err := Parse([]byte(tc.conf))
		if err != nil {
			t.Fatalf("%s: %v", tc.conf, err)
		}
		if c.WantsDHCPv6() != tc.dhcp6 || c.WantsSLAAC() != tc.slaac {
			t.Errorf("%s: DHCPv6 %v SLAAC %v, want %v %v", tc.conf, c.WantsDHCPv6(), c.WantsSLAAC(), tc.dhcp6, tc.slaac)
		}
	}
}

// A prevResult that does not convert stops CHECK (error 7); Parse, which
// DEL, GC and STATUS use, does not convert it.
func TestPrevResultOnlyWhenRead(t *testing.T) {
	parse := func(a *skel.CmdArgs) error {
		c, err := Parse(a.StdinData)
		if err == nil && c.PrevResult != nil {
			return fmt.Errorf("Parse converted prevResult: %+v", c.PrevResult)
		}
		return err
	}
	chaintest.PrevOnlyWhenRead(t, "hostbridge-dhcp", Check, parse)
}
