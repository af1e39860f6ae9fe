// Command testlan builds and removes a fake LAN for humans:
//
//	testlan up [--lease 2m] [--host-ip]   build one and print its names
//	testlan down ID|all                   remove it (or every one)
//	testlan list                          list the LANs that are up
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lanwire/lanwire/integration/testlan"
)

const stateDir = "/run/lanwire-testlan"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "up":
		fs := flag.NewFlagSet("up", flag.ExitOnError)
		leaseTime := fs.String("lease", "2m", "dnsmasq lease time")
		hostIP := fs.Bool("host-ip", false, "give the host an address on the bridge")
		wide := fs.Bool("wide", false, "a /20 with some 4,000 addresses to lease (for load)")
		_ = fs.Parse(os.Args[2:])
		l, err := testlan.New(testlan.Options{LeaseTime: *leaseTime, HostIP: *hostIP, Wide: *wide})
		if err != nil {
			fail(err)
		}
		_ = os.MkdirAll(stateDir, 0o755)
		if err := l.Save(filepath.Join(stateDir, l.ID+".json")); err != nil {
			l.Close()
			fail(err)
		}
		fmt.Printf("LAN %s is up\n  bridge      %s\n  LAN netns   %s (router, DHCP and DNS at %s)\n  subnet      %s\n  internet    %s / %s in netns %s\n  lease file  %s\n  dnsmasq log %s\nNew container netns: ip netns add lwt%s-cNAME\nRemove it all: testlan down %s\n",
			l.ID, l.Bridge, l.LANNS, l.Router, l.Subnet, l.Internet, l.Internet6, l.InetNS, l.LeaseFile, l.LogFile, l.ID, l.ID)
	case "down":
		if len(os.Args) != 3 {
			usage()
		}
		ids := []string{os.Args[2]}
		if os.Args[2] == "all" {
			ids = listIDs()
		}
		for _, id := range ids {
			p := filepath.Join(stateDir, id+".json")
			l, err := testlan.Load(p)
			if err != nil {
				fail(err)
			}
			if err := l.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "testlan:", err)
			}
			os.Remove(p)
			fmt.Printf("LAN %s removed\n", id)
		}
	case "list":
		for _, id := range listIDs() {
			fmt.Println(id)
		}
	default:
		usage()
	}
}

func listIDs() []string {
	m, _ := filepath.Glob(filepath.Join(stateDir, "*.json"))
	var ids []string
	for _, p := range m {
		ids = append(ids, strings.TrimSuffix(filepath.Base(p), ".json"))
	}
	return ids
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testlan up [--lease 2m] [--host-ip] [--wide] | down ID|all | list")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testlan:", err)
	os.Exit(1)
}
