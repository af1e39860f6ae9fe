package hostbridge

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lanwire/lanwire/pkg/daemon"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// DaemonMain runs `hostbridge-dhcp daemon [--socket PATH] [--state-dir DIR]`.
func DaemonMain(argv []string) int {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	sock := fs.String("socket", leaseapi.DefaultSocket, "Unix socket to listen on")
	dir := fs.String("state-dir", daemon.DefaultStateDir, "directory the leases are kept in")
	if err := fs.Parse(argv); err != nil {
		return 2
	}
	srv, err := daemon.New(daemon.Config{Socket: *sock, StateDir: *dir})
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

// LeasesMain runs `hostbridge-dhcp leases [--socket PATH] [--json]`.
func LeasesMain(argv []string, out io.Writer) int {
	fs := flag.NewFlagSet("leases", flag.ContinueOnError)
	sock := fs.String("socket", leaseapi.DefaultSocket, "the lease daemon's socket")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(argv); err != nil {
		return 2
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
		ls := resp.Leases
		if ls == nil {
			ls = []leaseapi.Lease{}
		}
		if err := enc.Encode(ls); err != nil {
			return 1
		}
		return 0
	}
	PrintLeases(out, resp.Leases, time.Now())
	return 0
}

// PrintLeases writes the leases as a table.
func PrintLeases(out io.Writer, ls []leaseapi.Lease, now time.Time) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tADDRESS\tMAC\tSERVER\tSTATE\tEXPIRES\tNEXT RENEWAL")
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Key, l.Info.Address.String(), l.Spec.MAC, l.Info.ServerID,
			l.Phase, rel(l.Expiry, now), rel(l.NextRenewal, now))
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
