package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/lease"
)

// v6Addrs splits a result's IPv6 addresses into DHCPv6 ones (/128) and
// SLAAC ones (/64), and returns the gateway they name.
func v6Addrs(res *current.Result) (dhcp, slaac []net.IPNet, gw net.IP) {
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() != nil {
			continue
		}
		if ones, _ := ip.Address.Mask.Size(); ones == 128 {
			dhcp = append(dhcp, ip.Address)
		} else {
			slaac = append(slaac, ip.Address)
		}
		if ip.Gateway != nil {
			gw = ip.Gateway
		}
	}
	return dhcp, slaac, gw
}

// inDHCPv6Range reports whether ip is in the test LAN's DHCPv6 range
// (::100 to ::1ff of its prefix).
func inDHCPv6Range(l *testlan.LAN, ip net.IP) bool {
	_, p, _ := net.ParseCIDR(l.Subnet6)
	if !p.Contains(ip) {
		return false
	}
	ip = ip.To16()
	return ip[8] == 0 && ip[9] == 0 && ip[10] == 0 && ip[11] == 0 && ip[12] == 0 && ip[13] == 0 && ip[14] == 1
}

func leaseFile(l *testlan.LAN) string {
	b, _ := os.ReadFile(l.LeaseFile)
	return string(b)
}

// Each ipv6 mode against dnsmasq with DHCPv6 and router advertisements:
// an address from the range (dhcpv6), from the advertised prefix (slaac),
// or both (auto); the default route through the router's link-local
// address; DNS from DHCPv6; the LAN reachable over IPv6; CHECK passes; DEL
// releases the DHCPv6 lease (gone from dnsmasq's lease file). "off" takes
// no IPv6 from the LAN at all: IPv6 is off on eth0, lo keeps ::1.
func TestIPv6Modes(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{RA: true, DHCPv6: true})
	d := startDaemon(t)
	for _, mode := range []string{"slaac", "dhcpv6", "auto", "off"} {
		t.Run(mode, func(t *testing.T) {
			n := newNetwork(t, l, d, map[string]any{"ipv6": mode})
			a := attach{ID: "v6-" + mode, Netns: container(t, l)}
			start := time.Now()
			res := n.MustAdd(a)
			t.Logf("ADD with ipv6 %q took %s: %v", mode, time.Since(start).Round(time.Millisecond), res.IPs)
			dhcp, slaac, gw := v6Addrs(res)
			wantDHCP := mode == "dhcpv6" || mode == "auto"
			wantSLAAC := mode == "slaac" || mode == "auto"
			if (len(dhcp) == 1) != wantDHCP || (len(slaac) == 1) != wantSLAAC || len(dhcp) > 1 || len(slaac) > 1 {
				t.Fatalf("result has DHCPv6 addresses %v and SLAAC addresses %v; want DHCPv6 %v, SLAAC %v", dhcp, slaac, wantDHCP, wantSLAAC)
			}
			addrs, _ := nsRun(a.Netns, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
			routes, _ := nsRun(a.Netns, "ip", "-6", "route", "show", "default")
			if mode == "off" {
				time.Sleep(2 * time.Second) // give a router advertisement time to arrive
				addrs, _ = nsRun(a.Netns, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
				routes, _ = nsRun(a.Netns, "ip", "-6", "route", "show", "default")
				if strings.TrimSpace(addrs) != "" || strings.TrimSpace(routes) != "" {
					t.Errorf("ipv6 off, yet the container took from the LAN:\n%s\n%s", addrs, routes)
				}
				// IPv6 is off on eth0 (no link-local address to be reached
				// at from the LAN), not in the container: lo keeps ::1.
				if all, _ := nsRun(a.Netns, "ip", "-6", "-o", "addr", "show", "dev", "eth0"); strings.TrimSpace(all) != "" {
					t.Errorf("ipv6 off, yet eth0 has IPv6 addresses:\n%s", all)
				}
				if lo, _ := nsRun(a.Netns, "ip", "-6", "-o", "addr", "show", "dev", "lo"); !strings.Contains(lo, "::1/128") {
					t.Errorf("ipv6 off took ::1 from lo:\n%s", lo)
				}
			} else {
				if gw == nil || !gw.IsLinkLocalUnicast() {
					t.Errorf("IPv6 gateway %v, want the router's link-local address", gw)
				}
				if !strings.Contains(routes, "via "+gw.String()) {
					t.Errorf("no default route via %v in the container:\n%s", gw, routes)
				}
				for _, p := range append(append([]net.IPNet{}, dhcp...), slaac...) {
					if !strings.Contains(addrs, " "+p.String()+" ") {
						t.Errorf("%s is in the result but not on eth0:\n%s", p.String(), addrs)
					}
				}
				if err := probePing(a.Netns, l.Router6); err != nil {
					t.Errorf("router %s not reachable over IPv6: %v", l.Router6, err)
				}
				if err := n.Check(a); err != nil {
					t.Errorf("CHECK: %v", err)
				}
			}
			if wantDHCP {
				ip := dhcp[0].IP
				if !inDHCPv6Range(l, ip) {
					t.Errorf("DHCPv6 address %s is not from the range %s::100-1ff", ip, strings.TrimSuffix(l.Subnet6, "::/64"))
				}
				if !strings.Contains(leaseFile(l), ip.String()) {
					t.Errorf("dnsmasq's lease file lacks %s:\n%s", ip, leaseFile(l))
				}
				if len(res.DNS.Nameservers) < 2 {
					t.Errorf("no IPv6 DNS server from DHCPv6 in the result: %v", res.DNS.Nameservers)
				}
				out, err := exec.Command(plugin("hostbridge-dhcp"), "leases", "--socket", d.Socket).CombinedOutput()
				if err != nil || !strings.Contains(string(out), ip.String()) {
					t.Errorf("`hostbridge-dhcp leases` does not show %s: %v\n%s", ip, err, out)
				}
			}
			if wantSLAAC {
				_, p, _ := net.ParseCIDR(l.Subnet6)
				if !p.Contains(slaac[0].IP) || inDHCPv6Range(l, slaac[0].IP) {
					t.Errorf("SLAAC address %s is not an autoconfigured address of %s", slaac[0].String(), l.Subnet6)
				}
			}
			if err := n.Del(a); err != nil {
				t.Fatal(err)
			}
			if wantDHCP {
				ip := dhcp[0].IP.String()
				waitFor(t, 5*time.Second, "dnsmasq to drop the released DHCPv6 lease "+ip, func() bool {
					return !strings.Contains(leaseFile(l), ip)
				})
			}
		})
	}
}

// A LAN without any IPv6 service: "slaac" and "dhcpv6" fail within
// leaseTimeout, saying what is missing, and leave nothing behind (the IPv4
// lease they got is released).
func TestIPv6Missing(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{})
	d := startDaemon(t)
	for _, mode := range []string{"slaac", "dhcpv6"} {
		n := newNetwork(t, l, d, map[string]any{"ipv6": mode, "leaseTimeout": "3s"})
		a := attach{ID: "nov6-" + mode, Netns: container(t, l)}
		ports := bridgePorts(t, l.Bridge)
		_, err := n.Add(a)
		if err == nil {
			t.Fatalf("ipv6 %q: ADD succeeded on a LAN without IPv6", mode)
		}
		te := cniError(t, err)
		t.Logf("ipv6 %q: error %d: %s (%s)", mode, te.Code, te.Msg, te.Details)
		want := map[string]string{"slaac": "router advertisement", "dhcpv6": "DHCPv6 server"}[mode]
		if te.Code != 11 || !strings.Contains(te.Msg+te.Details, want) {
			t.Errorf("ipv6 %q: error %d %q does not name the missing %s", mode, te.Code, te.Msg+te.Details, want)
		}
		if got := bridgePorts(t, l.Bridge); len(got) != len(ports) {
			t.Errorf("bridge ports %v after the failed ADD, want %v", got, ports)
		}
		if len(d.Leases()) != 0 || len(stateFiles(d.StateDir)) != 0 {
			t.Errorf("a lease is left after the failed ADD: %v", d.Leases())
		}
		waitFor(t, 5*time.Second, "the IPv4 lease to be released", func() bool { return strings.TrimSpace(leaseFile(l)) == "" })
	}
}

// The DHCPv6 lease survives a daemon kill -9 (same address, resumed from
// the state directory) and is renewed at T1 (RENEW in dnsmasq's log), with
// the address kept on the interface.
func TestDHCPv6RenewAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for T1 of a 2-minute lease; skipped with -short")
	}
	t.Parallel()
	l := newLAN(t, testlan.Options{RA: true, DHCPv6: true, LeaseTime: "2m"})
	d := startDaemon(t)
	n := newNetwork(t, l, d, map[string]any{"ipv6": "dhcpv6"})
	a := attach{ID: "v6-renew", Netns: container(t, l)}
	res := n.MustAdd(a)
	dhcp, _, _ := v6Addrs(res)
	if len(dhcp) != 1 {
		t.Fatalf("no DHCPv6 address in %v", res.IPs)
	}
	ip := dhcp[0].IP.String()
	d.Kill()
	restarted := time.Now()
	d.Start()
	ls := d.Leases()
	if len(ls) != 1 || ls[0].Info6 == nil || ls[0].Info6.Address.String() != ip {
		t.Fatalf("after kill -9 and restart the daemon holds %+v, want the DHCPv6 lease of %s", ls, ip)
	}
	t.Logf("DHCPv6 lease %s: T1 %s, T2 %s, valid %s", ip, ls[0].Info6.RenewTime, ls[0].Info6.RebindTime, ls[0].Info6.Valid)
	waitFor(t, 90*time.Second, "the DHCPv6 lease to be renewed after the restart", func() bool {
		for _, x := range d.Leases() {
			if x.Info6 != nil && x.Acquired6 != nil && x.Acquired6.After(restarted) {
				return true
			}
		}
		return false
	})
	if !strings.Contains(l.Log(), "DHCPRENEW") {
		t.Errorf("no DHCPRENEW in dnsmasq's log")
	}
	addrs, _ := nsRun(a.Netns, "ip", "-6", "-o", "addr", "show", "dev", "eth0")
	if !strings.Contains(addrs, " "+ip+"/128 ") {
		t.Errorf("address %s gone after the renewal:\n%s", ip, addrs)
	}
	serverHolds(t, l, ip, "") // the server's view: held, renewed
	if err := n.Check(a); err != nil {
		t.Errorf("CHECK after the renewal: %v", err)
	}
	if err := n.Del(a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "dnsmasq to drop the released lease", func() bool { return !strings.Contains(leaseFile(l), ip) })
}

// The dual-stack result flows into offline-egress and portmap-lite: a
// container addressed over DHCPv6 reaches the allowed host service over
// IPv6 and nothing else (a plain container on the same LAN reaches it
// all), and its published port answers on the host's IPv6 address.
func TestIPv6FullChain(t *testing.T) {
	t.Parallel()
	g := newOfflineGroundWith(t, testlan.Options{RA: true, DHCPv6: true})
	l := g.lan
	hb := map[string]any{"type": "hostbridge-dhcp", "bridge": l.Bridge, "daemonSocket": g.d.Socket, "autoStartDaemon": false, "ipv6": "dhcpv6"}
	chain := newNetworkList(t, "v6chain"+l.ID, []map[string]any{hb, g.offlineConf(),
		{"type": "portmap-lite", "capabilities": map[string]bool{"portMappings": true}}})
	plain := newNetworkList(t, "v6plain"+l.ID, []map[string]any{hb})

	p := attach{ID: "v6-plain", Netns: container(t, l)}
	plain.MustAdd(p)
	a := attach{ID: "v6-offline", Netns: container(t, l), Caps: maps(tcpMap(18490, 80, ""))}
	serveTCP(t, a.Netns, ":80", "v6 web")
	res := chain.MustAdd(a)
	dhcp, _, _ := v6Addrs(res)
	if len(dhcp) != 1 {
		t.Fatalf("no DHCPv6 address in %v", res.IPs)
	}
	v6 := []probe{tcpProbe("[" + l.Internet6 + "]:80"), pingProbe(l.Internet6), tcpProbe("[" + l.HostAddr6 + "]:8001")}
	expect(t, p.Netns, true, v6...)
	expectBlocked(t, a.Netns, v6...)
	expect(t, a.Netns, true, tcpProbe("["+l.HostAddr6+"]:8000"))
	if n := mappingEntries(t, chain.Name, a.ID, "18490/tcp"); n != 2 {
		t.Errorf("%d DNAT entries for 18490/tcp, want 2 (IPv4 and IPv6)", n)
	}
	expect(t, "", true, tcpProbe("["+l.HostAddr6+"]:18490"))
	if got := greet(t, "", "["+l.HostAddr6+"]:18490"); !strings.Contains(got, "v6 web") {
		t.Errorf("published port over IPv6 answered %q, want the container", got)
	}
	if err := chain.Check(a); err != nil {
		t.Errorf("CHECK of the chain: %v", err)
	}
	for _, x := range []struct {
		n *network
		a attach
	}{{chain, a}, {plain, p}} {
		if err := x.n.Del(x.a); err != nil {
			t.Error(err)
		}
	}
}

// A netns deleted without DEL: the daemon releases both leases from a
// throw-away port on the bridge (same MAC, so the same DUID-LL), and
// dnsmasq drops them. An IPv6 address asked for through the ips
// capability is the one granted.
func TestDHCPv6VanishAndRequest(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{RA: true, DHCPv6: true})
	d := startDaemon(t)
	n := newNetwork(t, l, d, map[string]any{"ipv6": "dhcpv6", "capabilities": map[string]bool{"ips": true}})
	want := strings.TrimSuffix(l.Subnet6, "::/64") + "::1a5"
	a := attach{ID: "v6-vanish", Netns: container(t, l), Caps: map[string]any{"ips": []string{want + "/64"}}}
	res := n.MustAdd(a)
	dhcp, _, _ := v6Addrs(res)
	if len(dhcp) != 1 {
		t.Fatalf("no DHCPv6 address in %v", res.IPs)
	}
	if dhcp[0].IP.String() != want {
		t.Errorf("asked for %s through the ips capability, got %s", want, dhcp[0].IP)
	}
	v4 := res.IPs[0].Address.IP.String()
	v6 := dhcp[0].IP.String()
	if err := l.DeleteContainer(a.Netns); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "dnsmasq to drop both leases of the vanished netns", func() bool {
		f := leaseFile(l)
		return !strings.Contains(f, v4+" ") && !strings.Contains(f, v6+" ")
	})
	if len(d.Leases()) != 0 {
		t.Errorf("the daemon still holds %v", d.Leases())
	}
	id := lease.Key{ContainerID: a.ID, Network: n.Name, IfName: "eth0"}.ID()[:10]
	waitFor(t, 5*time.Second, "the throw-away port lwr"+id+" to go", func() bool {
		out, _ := exec.Command("ip", "-o", "link", "show").Output()
		return !strings.Contains(string(out), "lwr"+id) && !strings.Contains(string(out), "lwq"+id)
	})
}

// "ipv6": "dhcpv6" with a router that answers late (one that has just
// advertised waits 3 s before its next multicast advertisement, RFC 4861;
// here the router's advertisements are held back 2.5 s): ADD waits for the
// router within leaseTimeout, so the result has the IPv6 gateway and the
// container reaches the router at once. On a LAN with no router
// advertisements at all, ADD fails with error 11 saying so.
func TestDHCPv6WaitsForRouter(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{RA: true, DHCPv6: true})
	d := startDaemon(t)
	n := newNetwork(t, l, d, map[string]any{"ipv6": "dhcpv6"})
	for i := 0; i < 3; i++ {
		routerSilentFor(t, l, 2500*time.Millisecond)
		a := attach{ID: fmt.Sprintf("v6wait-%d", i), Netns: container(t, l)}
		res := n.MustAdd(a)
		if _, _, gw := v6Addrs(res); gw == nil {
			t.Errorf("ADD %d returned no IPv6 gateway: %v", i, res.IPs)
		}
		if err := probePing(a.Netns, l.Router6); err != nil {
			t.Errorf("ADD %d: the router is not reachable over IPv6 right after ADD: %v", i, err)
		}
		if err := n.Del(a); err != nil {
			t.Error(err)
		}
	}

	noRA := newLAN(t, testlan.Options{DHCPv6: true})
	n2 := newNetwork(t, noRA, d, map[string]any{"ipv6": "dhcpv6", "leaseTimeout": "4s"})
	a := attach{ID: "v6-nora", Netns: container(t, noRA)}
	_, err := n2.Add(a)
	if te := cniError(t, err); te.Code != 11 || !strings.Contains(te.Msg, "no IPv6 router") {
		t.Errorf("without router advertisements: code %d %q, want 11 saying there is no IPv6 router", te.Code, te.Msg)
	}
	if got := links(t, a.Netns); len(got) != 1 {
		t.Errorf("the failed ADD left links in the container: %v", got)
	}
}

// routerSilentFor holds the LAN router's advertisements back for d (an
// nftables rule in the router's own namespace, removed after d).
func routerSilentFor(t *testing.T, l *testlan.LAN, d time.Duration) {
	t.Helper()
	rule := "table ip6 lwtslow { chain out { type filter hook output priority 0; icmpv6 type nd-router-advert drop; }; }"
	if out, err := exec.Command("ip", "netns", "exec", l.LANNS, "nft", rule).CombinedOutput(); err != nil {
		t.Fatalf("holding the router's advertisements back: %v %s", err, out)
	}
	time.AfterFunc(d, func() {
		_ = exec.Command("ip", "netns", "exec", l.LANNS, "nft", "delete", "table", "ip6", "lwtslow").Run()
	})
}
