package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanwire/lanwire/integration/testlan"
	"github.com/lanwire/lanwire/pkg/doctor"
)

// doctorRun runs `hostbridge-dhcp doctor --json` and returns the report and exit code.
func doctorRun(t *testing.T, args ...string) (doctor.Report, int, string) {
	t.Helper()
	cmd := exec.Command(plugin("hostbridge-dhcp"), append([]string{"doctor", "--json", "--timeout", "3s"}, args...)...)
	cmd.Env = append(os.Environ(), "CNI_PATH="+binDir)
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("doctor: %v", err)
	}
	var r doctor.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("doctor --json output: %v\n%s", err, out)
	}
	return r, code, string(out)
}

// failed returns the named check if it failed.
func failed(r doctor.Report, name string) (doctor.Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name && !c.OK {
			return c, true
		}
	}
	return doctor.Check{}, false
}

// wantFailed asserts the named check failed, with a fix mentioning fixHas.
func wantFailed(t *testing.T, r doctor.Report, code int, out, name, fixHas string) {
	t.Helper()
	if code == 0 {
		t.Errorf("doctor exited 0 with a broken setup:\n%s", out)
	}
	c, ok := failed(r, name)
	if !ok {
		t.Fatalf("check %q did not fail:\n%s", name, out)
	}
	if !strings.Contains(c.Fix, fixHas) {
		t.Errorf("fix for %q is %q, want it to mention %q", name, c.Fix, fixHas)
	}
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	l := newLAN(t, testlan.Options{DHCPv6: true})
	d := startDaemon(t)
	n := newNetwork(t, l, d, nil)
	conflist := filepath.Join(n.Dir, n.Name+".conflist")

	t.Run("healthy", func(t *testing.T) {
		r, code, out := doctorRun(t, "--conflist", conflist)
		if code != 0 || !r.OK() {
			t.Fatalf("doctor failed on a healthy LAN:\n%s", out)
		}
		var probe doctor.Check
		for _, c := range r.Checks {
			if c.Name == "DHCP probe" {
				probe = c
			}
		}
		if len(probe.Offers) != 1 || probe.Offers[0].Server.String() != l.Router || probe.Offers[0].Info.Gateway.String() != l.Router {
			t.Errorf("probe offers %+v, want one from %s", probe.Offers, l.Router)
		}
		// The probe leaves nothing: no link on the bridge, no lease.
		if ports := bridgePorts(t, l.Bridge); len(ports) != 1 {
			t.Errorf("bridge ports after the probe: %v", ports)
		}
		if ls, _ := l.Leases(); len(ls) != 0 {
			t.Errorf("the probe took leases: %+v", ls)
		}
	})
	t.Run("healthy with --ipv6", func(t *testing.T) {
		r, code, out := doctorRun(t, "--bridge", l.Bridge, "--socket", d.Socket, "--ipv6")
		if code != 0 || !r.OK() {
			t.Fatalf("doctor --ipv6 failed on a LAN with DHCPv6:\n%s", out)
		}
		prefix := strings.TrimSuffix(l.Subnet6, ":/64")
		found := false
		for _, c := range r.Checks {
			if c.Name == "DHCPv6 probe" && strings.Contains(c.Detail, prefix) {
				found = true
			}
		}
		if !found {
			t.Errorf("no DHCPv6 probe advertising an address of %s:\n%s", l.Subnet6, out)
		}
	})
	t.Run("bridge missing", func(t *testing.T) {
		r, code, out := doctorRun(t, "--bridge", "lwnosuchbr9", "--socket", d.Socket)
		wantFailed(t, r, code, out, "bridge exists", "ip link add lwnosuchbr9 type bridge")
	})
	t.Run("bridge without uplink", func(t *testing.T) {
		br := "lwt" + l.ID + "nu"
		if out, err := exec.Command("ip", "link", "add", br, "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
		_ = exec.Command("ip", "link", "set", br, "up").Run()
		r, code, out := doctorRun(t, "--bridge", br, "--socket", d.Socket)
		wantFailed(t, r, code, out, "bridge has an uplink", `"A real LAN"`)
		// Moving an interface onto a bridge from a remote session cuts it:
		// a fix never tells to, it points at the README's safe ways.
		if c, _ := failed(r, "bridge has an uplink"); strings.Contains(c.Fix, "master") {
			t.Errorf("the fix tells to move an interface onto the bridge: %q", c.Fix)
		}
	})
	t.Run("FORWARD drops the bridge", func(t *testing.T) {
		crossIPTables(t, l.Bridge)
		defer os.WriteFile(filepath.Join("/sys/class/net", l.Bridge, "bridge", "nf_call_iptables"), []byte("0"), 0o644)
		drop := []string{"FORWARD", "-i", l.Bridge, "-o", l.Bridge, "-j", "DROP"}
		if out, err := exec.Command("iptables", append([]string{"-I"}, drop...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		defer exec.Command("iptables", append([]string{"-D"}, drop...)...).Run()
		r, code, out := doctorRun(t, "--bridge", l.Bridge, "--socket", d.Socket)
		wantFailed(t, r, code, out, "bridged traffic and iptables", "iptables -I FORWARD -i "+l.Bridge)
		if _, probeFailed := failed(r, "DHCP probe"); !probeFailed {
			t.Errorf("the probe got an offer through a dropping FORWARD chain:\n%s", out)
		}
	})
	t.Run("daemon stopped", func(t *testing.T) {
		d.Stop()
		defer d.Start()
		r, code, out := doctorRun(t, "--bridge", l.Bridge, "--socket", d.Socket)
		wantFailed(t, r, code, out, "lease daemon", "hostbridge-dhcp daemon --socket "+d.Socket)
	})
	t.Run("DHCP server stopped", func(t *testing.T) {
		l.StopDHCP()
		defer func() {
			if err := l.StartDHCP(); err != nil {
				t.Fatal(err)
			}
		}()
		r, code, out := doctorRun(t, "--bridge", l.Bridge, "--socket", d.Socket, "--ipv6")
		wantFailed(t, r, code, out, "DHCP probe", "DHCP server")
		wantFailed(t, r, code, out, "DHCPv6 probe", "DHCPv6 server")
	})
	t.Run("STP with a long forward delay", func(t *testing.T) {
		set := func(stp, delay string) {
			if out, err := exec.Command("ip", "link", "set", l.Bridge, "type", "bridge", "forward_delay", delay, "stp_state", stp).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
		}
		set("1", "1500")
		defer set("0", "1500")
		r, code, out := doctorRun(t, "--bridge", l.Bridge, "--socket", d.Socket)
		wantFailed(t, r, code, out, "STP forward delay", "stp_state 0")
	})
	// Nothing of the probes is left.
	for _, name := range links(t, "") {
		if strings.HasPrefix(name, "lwdp") {
			t.Errorf("probe link %s left behind", name)
		}
	}
}
