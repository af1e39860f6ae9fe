package hostbridge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/lanwire/lanwire/pkg/chains"
)

func writeSysctl(name, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644)
}

func readSysctl(name string) string {
	b, err := os.ReadFile(filepath.Join("/proc/sys", name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// ForwardRule is the FORWARD rule that lets a bridge's own traffic through
// when br_netfilter hands bridged frames to iptables (a host with Docker,
// whose FORWARD policy is DROP).
func ForwardRule(bridge string) []string {
	return []string{"-i", bridge, "-o", bridge, "-m", "comment", "--comment", "lanwire hostbridge-dhcp: bridged traffic of " + bridge, "-j", "ACCEPT"}
}

// ensureForward installs ForwardRule at the top of FORWARD for each family
// whose bridged frames cross iptables. Other rules and policies are left
// alone; the rule is shared by every container on the bridge and stays.
// Equivalent to: `iptables -I FORWARD -i BR -o BR -j ACCEPT`.
func ensureForward(bridge string) error {
	fams := []struct {
		fam    chains.Family
		sysctl string
	}{
		{chains.V4, "net/bridge/bridge-nf-call-iptables"},
		{chains.V6, "net/bridge/bridge-nf-call-ip6tables"},
	}
	errs := make([]error, len(fams))
	var wg sync.WaitGroup
	for i, f := range fams {
		if readSysctl(f.sysctl) != "1" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = ensureForwardFamily(bridge, f.fam, f.sysctl)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ensureForwardFamily installs ForwardRule for one family. sysctl names the
// switch that made it necessary, for the error message. The common case,
// the rule in place, costs one iptables -C.
func ensureForwardFamily(bridge string, fam chains.Family, sysctl string) error {
	t, err := chains.Open(fam)
	if err != nil {
		return fmt.Errorf("bridged traffic crosses iptables (%s=1) but iptables is not usable: %w", sysctl, err)
	}
	rule := ForwardRule(bridge)
	if t.HasRule("filter", "FORWARD", rule...) {
		return nil
	}
	ok, err := t.Exists("filter", "FORWARD", rule...)
	if err != nil {
		return fmt.Errorf("checking the FORWARD rule for bridge %s: %w", bridge, err)
	}
	if ok {
		return nil
	}
	if err := t.Insert("filter", "FORWARD", 1, rule...); err != nil {
		return fmt.Errorf("allowing bridge %s's traffic in FORWARD: %w", bridge, err)
	}
	return nil
}
