package hostbridge

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/lanwire/lanwire/pkg/cli"
	"github.com/lanwire/lanwire/pkg/daemon"
	"github.com/lanwire/lanwire/pkg/doctor"
	"github.com/lanwire/lanwire/pkg/guard"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// DaemonMain runs `hostbridge-dhcp daemon [--socket PATH] [--state-dir DIR]`.
func DaemonMain(argv []string) int {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	sock := fs.String("socket", leaseapi.DefaultSocket, "Unix socket to listen on")
	dir := fs.String("state-dir", daemon.DefaultStateDir, "directory the leases are kept in")
	linger := fs.Duration("tables-linger", guard.Linger, "how long lanwire's nftables tables stay, empty, after the last container that needed them (the next one then finds them)")
	if ok, code := cli.Parse(fs, argv); !ok {
		return code
	}
	srv, err := daemon.New(daemon.Config{Socket: *sock, StateDir: *dir, TablesLinger: *linger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostbridge-dhcp daemon:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "hostbridge-dhcp daemon:", err)
		return 1
	}
	return 0
}

// DoctorMain runs `hostbridge-dhcp doctor [--bridge NAME] [--conflist FILE] [--socket PATH] [--json]`.
// It exits 0 only when every check passes.
func DoctorMain(argv []string, out io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	bridge := fs.String("bridge", "", "the bridge containers attach to")
	conflist := fs.String("conflist", "", "a conflist to check (and take the bridge and socket from)")
	sock := fs.String("socket", "", "the lease daemon's socket (default "+leaseapi.DefaultSocket+")")
	timeout := fs.Duration("timeout", 5*time.Second, "how long the DHCP probe waits for offers")
	asJSON := fs.Bool("json", false, "print JSON")
	ipv6 := fs.Bool("ipv6", false, "also probe for a DHCPv6 server (SOLICIT)")
	if ok, code := cli.Parse(fs, argv); !ok {
		return code
	}
	cniPath := filepath.SplitList(os.Getenv("CNI_PATH"))
	if len(cniPath) == 0 {
		cniPath = []string{"/opt/cni/bin"}
	}
	r := doctor.Run(doctor.Options{Bridge: *bridge, Conflist: *conflist, Socket: *sock, CNIPath: cniPath, Timeout: *timeout, IPv6: *ipv6})
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			doctor.Report
			OK bool `json:"ok"`
		}{r, r.OK()})
	} else {
		r.Print(out)
	}
	if !r.OK() {
		return 1
	}
	return 0
}

// LeasesMain runs `hostbridge-dhcp leases [--socket PATH] [--json]`.
func LeasesMain(argv []string, out io.Writer) int {
	fs := flag.NewFlagSet("leases", flag.ContinueOnError)
	sock := fs.String("socket", leaseapi.DefaultSocket, "the lease daemon's socket")
	conflist := fs.String("conflist", "", "a conflist whose hostbridge-dhcp names the daemon's socket")
	asJSON := fs.Bool("json", false, "print JSON")
	if ok, code := cli.Parse(fs, argv); !ok {
		return code
	}
	if *conflist != "" {
		s, err := socketOf(*conflist)
		if err != nil {
			fmt.Fprintf(os.Stderr, "hostbridge-dhcp leases: %v\n", err)
			return 1
		}
		*sock = s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := leaseapi.Call(ctx, *sock, leaseapi.Request{Method: leaseapi.MethodList})
	if err != nil {
		fmt.Fprintf(os.Stderr, "hostbridge-dhcp leases: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(LeasesJSON(resp.Leases)); err != nil {
			return 1
		}
		return 0
	}
	PrintLeases(out, resp.Leases, time.Now())
	return 0
}

// socketOf returns the daemon socket a conflist's hostbridge-dhcp uses.
func socketOf(path string) (string, error) {
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		return "", err
	}
	for _, p := range list.Plugins {
		if p.Network.Type != "hostbridge-dhcp" {
			continue
		}
		var hb struct {
			DaemonSocket string `json:"daemonSocket"`
		}
		if err := json.Unmarshal(p.Bytes, &hb); err != nil {
			return "", err
		}
		if hb.DaemonSocket == "" {
			return leaseapi.DefaultSocket, nil
		}
		return hb.DaemonSocket, nil
	}
	return "", fmt.Errorf("%s has no hostbridge-dhcp plugin", path)
}

// LeaseList is `leases --json`: the version and the leases, in units a
// person or a script reads: addresses as CIDR strings, times in RFC 3339,
// durations in seconds.
type LeaseList struct {
	Version string      `json:"version"`
	Leases  []LeaseView `json:"leases"`
}

// LeaseView is one lease of `leases --json`.
type LeaseView struct {
	Key           string      `json:"key"`
	ContainerID   string      `json:"containerID"`
	Network       string      `json:"network"`
	IfName        string      `json:"ifname"`
	MAC           string      `json:"mac"`
	Address       string      `json:"address"`
	Gateway       string      `json:"gateway,omitempty"`
	Server        string      `json:"server"`
	State         string      `json:"state"`
	Acquired      string      `json:"acquired"`
	Expires       string      `json:"expires"`
	NextRenewal   string      `json:"nextRenewal"`
	LeaseSeconds  int64       `json:"leaseSeconds"`
	RenewSeconds  int64       `json:"renewSeconds"`
	RebindSeconds int64       `json:"rebindSeconds"`
	DNS           []string    `json:"dns,omitempty"`
	Routes        []RouteView `json:"routes,omitempty"`
	IPv6          *Lease6View `json:"ipv6,omitempty"`
}

// RouteView is a route of a lease.
type RouteView struct {
	Dst string `json:"dst"`
	Via string `json:"via,omitempty"`
}

// Lease6View is the DHCPv6 lease of a LeaseView.
type Lease6View struct {
	Address          string `json:"address"`
	Server           string `json:"server"` // the server's DUID, hex
	State            string `json:"state"`
	Expires          string `json:"expires"`
	NextRenewal      string `json:"nextRenewal"`
	ValidSeconds     int64  `json:"validSeconds"`
	PreferredSeconds int64  `json:"preferredSeconds"`
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func ipsString(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// LeasesJSON is the view of ls that `leases --json` prints.
func LeasesJSON(ls []leaseapi.Lease) LeaseList {
	out := LeaseList{Version: cli.Version, Leases: []LeaseView{}}
	for _, l := range ls {
		v := LeaseView{Key: l.Key.String(), ContainerID: l.Key.ContainerID, Network: l.Key.Network, IfName: l.Key.IfName,
			MAC: l.Spec.MAC, Address: l.Info.Address.String(), Server: l.Info.ServerID.String(), State: string(l.Phase),
			Acquired: rfc3339(l.Acquired), Expires: rfc3339(l.Expiry), NextRenewal: rfc3339(l.NextRenewal),
			LeaseSeconds: int64(l.Info.LeaseTime.Seconds()), RenewSeconds: int64(l.Info.RenewTime.Seconds()),
			RebindSeconds: int64(l.Info.RebindTime.Seconds()), DNS: ipsString(l.Info.DNS)}
		if l.Info.Gateway != nil {
			v.Gateway = l.Info.Gateway.String()
		}
		for _, r := range l.Info.Routes {
			rv := RouteView{Dst: r.Dst.String()}
			if r.GW != nil {
				rv.Via = r.GW.String()
			}
			v.Routes = append(v.Routes, rv)
		}
		if i6 := l.Info6; i6 != nil && l.Expiry6 != nil && l.NextRenewal6 != nil {
			p := i6.Prefix()
			v.IPv6 = &Lease6View{Address: p.String(), Server: hex.EncodeToString(i6.ServerID), State: string(l.Phase6),
				Expires: rfc3339(*l.Expiry6), NextRenewal: rfc3339(*l.NextRenewal6),
				ValidSeconds: int64(i6.Valid.Seconds()), PreferredSeconds: int64(i6.Preferred.Seconds())}
		}
		out.Leases = append(out.Leases, v)
	}
	return out
}

// PrintLeases writes the leases as a table.
func PrintLeases(out io.Writer, ls []leaseapi.Lease, now time.Time) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tADDRESS\tMAC\tSERVER\tSTATE\tEXPIRES\tNEXT RENEWAL")
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Key, l.Info.Address.String(), l.Spec.MAC, l.Info.ServerID,
			l.Phase, rel(l.Expiry, now), rel(l.NextRenewal, now))
		if i6 := l.Info6; i6 != nil && l.Expiry6 != nil && l.NextRenewal6 != nil {
			// The DHCPv6 lease on a row of its own; SERVER is the server's DUID.
			p := i6.Prefix()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Key, p.String(), l.Spec.MAC, hex.EncodeToString(i6.ServerID),
				l.Phase6, rel(*l.Expiry6, now), rel(*l.NextRenewal6, now))
		}
	}
	tw.Flush()
	if len(ls) == 0 {
		fmt.Fprintln(out, "(no leases)")
	}
}

func rel(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	if d < 0 {
		return fmt.Sprintf("%s ago", -d)
	}
	return "in " + d.String()
}
