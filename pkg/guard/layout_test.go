package guard

import (
	"encoding/hex"
	"flag"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/lanwire/lanwire/pkg/egress"
	"github.com/lanwire/lanwire/pkg/nft"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// listing renders a table as "chain: rule  # comment" lines.
func listing(t nft.Table) string {
	var b strings.Builder
	for _, c := range t.Chains {
		b.WriteString("chain " + c.Name + "\n")
		for _, r := range c.Rules {
			b.WriteString("  " + r.Text() + "  # " + r.Comment + "\n")
		}
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs; got:\n%s", path, got)
	}
}

// The rule sets, literally: any change to what the kernel is given shows
// up here and is read in review.
func TestBridgeLayout(t *testing.T) { golden(t, "bridge.golden", listing(Bridge())) }
func TestEgressLayout(t *testing.T) { golden(t, "egress.golden", listing(Egress())) }

// Every check comes before every accept (Incus CVE-2025-52889/52890: accept
// rules above the spoof checks let spoofed frames through).
func TestChecksBeforeAccepts(t *testing.T) {
	first := map[string]string{ // chain -> the rule that must precede every accept
		"offline": "source MAC is the container's",
		"off_ip4": "source checks",
		"off_ip6": "source checks",
	}
	for _, c := range Bridge().Chains {
		want, ok := first[c.Name]
		if !ok {
			continue
		}
		seen := false
		for _, r := range c.Rules {
			seen = seen || r.Comment == want
			if strings.HasSuffix(r.Text(), "accept") && !seen {
				t.Errorf("chain %s: %q accepts before %q", c.Name, r.Comment, want)
			}
		}
		if !seen {
			t.Errorf("chain %s has no rule %q", c.Name, want)
		}
	}
}

// Every per-port set the plugins fill exists in the table.
func TestPerPortSetsExist(t *testing.T) {
	br := Bridge()
	for _, s := range PerPortSets {
		_ = br.SetRef(s) // panics when missing
	}
}

func TestLinkLocal(t *testing.T) {
	mac, _ := net.ParseMAC("5a:96:d5:4d:cd:a8")
	if got := LinkLocal(mac).String(); got != "fe80::5896:d5ff:fe4d:cda8" {
		t.Errorf("got %s", got)
	}
}

func render(es []Element) string {
	var lines []string
	for _, e := range es {
		l := e.Set + " " + hex.EncodeToString(e.Key)
		if e.KeyEnd != nil {
			l += "-" + hex.EncodeToString(e.KeyEnd)
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

func TestElements(t *testing.T) {
	host, _ := egress.ParseAllow("host", []string{"8000/tcp"})
	lan, _ := egress.ParseAllow("192.168.5.0/24", []string{"8000-8100/udp"})
	any6, _ := egress.ParseAllow("fd00:1::/64", nil)
	mirror, _ := egress.ParseAllow("192.168.5.7/32", []string{"443/tcp", "80-81/tcp"})
	hostRange, _ := egress.ParseAllow("host", []string{"53/udp", "9000-9001/tcp"})
	p := Port{IfName: "lw0123456789", MAC: "02:00:00:00:00:01", Network: "n", ContainerID: "c",
		Addrs: []net.IP{net.ParseIP("10.1.2.3"), net.ParseIP("fd00::5")}, DHCP: []net.IP{net.ParseIP("10.1.2.1")}}
	if es, err := Elements(p); err != nil || es != nil {
		t.Fatalf("an unguarded port has elements: %v %v", es, err)
	}
	port := hex.EncodeToString(nft.IfName("lw0123456789"))
	p.Spoof = true
	want := strings.Join([]string{
		"spoof " + port,
		"hwaddr " + port + "020000000001" + "0000",
		"addr4 " + port + "0a010203",
		"addr6 " + port + "fd000000000000000000000000000005",
		"addr6 " + port + "fe80000000000000000000fffe000001",
	}, "\n")
	if es, err := Elements(p); err != nil || render(es) != want {
		t.Errorf("spoofCheck: got\n%s\nwant\n%s (%v)", render(es), want, err)
	}
	p.Spoof = false
	p.Offline = &Policy{Allow: []egress.Allow{host, lan, any6, mirror, hostRange}, LogPrefix: "x", NoDHCP: true}
	want = strings.Join([]string{
		"offline " + port,
		"logged " + port,
		"nodhcp " + port,
		"hwaddr " + port + "0200000000010000",
		"addr4 " + port + "0a010203",
		"addr6 " + port + "fd000000000000000000000000000005",
		"addr6 " + port + "fe80000000000000000000fffe000001",
		"dhcp4 " + port + "0a010201",
		// proto and port pad to 4 bytes; ranges go from start to end; one
		// address (or this host) and one port is an exact element
		"allowhost_one " + port + "060000001f400000",
		"allow4 " + port + "c0a80500" + "11000000" + "1f400000-" + port + "c0a805ff" + "11000000" + "1fa40000",
		"allow6 " + port + "fd000001000000000000000000000000" + "00000000" + "00000000-" + port + "fd00000100000000ffffffffffffffff" + "ff000000" + "ffff0000",
		"allow4_one " + port + "c0a80507" + "06000000" + "01bb0000",
		"allow4 " + port + "c0a80507" + "06000000" + "00500000-" + port + "c0a80507" + "06000000" + "00510000",
		"allowhost_one " + port + "11000000" + "00350000",
		"allowhost " + port + "06000000" + "23280000-" + port + "06000000" + "23290000",
	}, "\n")
	if es, err := Elements(p); err != nil || render(es) != want {
		t.Errorf("offline: got\n%s\nwant\n%s (%v)", render(es), want, err)
	}
	p.MAC = "nope"
	if _, err := Elements(p); err == nil {
		t.Error("a bad MAC was accepted")
	}
}
