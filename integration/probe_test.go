package integration

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// inNetns runs fn in netns ("" is the host's own).
func inNetns(netns string, fn func() error) error {
	if netns == "" {
		return fn()
	}
	return ns.WithNetNSPath(netns, func(ns.NetNS) error { return fn() })
}

// serveTCP listens on addr inside netns and answers every connection with
// "hello from NAME\n" until the test ends.
func serveTCP(t testing.TB, netns, addr, name string) {
	t.Helper()
	var ln net.Listener
	var err error
	// A fresh IPv6 address is unusable while duplicate address detection runs.
	for deadline := time.Now().Add(5 * time.Second); ; {
		err = inNetns(netns, func() (err error) { ln, err = net.Listen("tcp", addr); return })
		if err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, netns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from %s\n", name)
			c.Close()
		}
	}()
}

// serveUDP echoes datagrams on addr inside netns until the test ends.
func serveUDP(t testing.TB, netns, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := inNetns(netns, func() (err error) { pc, err = net.ListenPacket("udp", addr); return }); err != nil {
		t.Fatalf("listening on udp %s in %s: %v", addr, netns, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

const probeTimeout = 1500 * time.Millisecond

// probeTCP connects from netns to addr and reads the greeting.
func probeTCP(netns, addr string) error {
	var conn net.Conn
	err := inNetns(netns, func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, probeTimeout)
		return
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("connected but no greeting: %w", err)
	}
	if !strings.HasPrefix(line, "hello from") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// probeUDP sends a datagram from netns to addr and waits for the echo.
func probeUDP(netns, addr string) error {
	var conn net.Conn
	if err := inNetns(netns, func() (err error) { conn, err = net.Dial("udp", addr); return }); err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	if _, err := conn.Read(buf); err != nil {
		return err
	}
	return nil
}

// probePing sends one ICMP echo from netns with busybox.
func probePing(netns, ip string) error {
	args := []string{"netns", "exec", filepath.Base(netns), "busybox", "ping", "-c", "1", "-W", "1"}
	if strings.Contains(ip, ":") {
		args = append(args, "-6")
	}
	out, err := exec.Command("ip", append(args, ip)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// probe is one reachability check.
type probe struct {
	name string
	run  func(netns string) error
}

func tcpProbe(addr string) probe {
	return probe{"tcp " + addr, func(n string) error { return probeTCP(n, addr) }}
}
func udpProbe(addr string) probe {
	return probe{"udp " + addr, func(n string) error { return probeUDP(n, addr) }}
}
func pingProbe(ip string) probe {
	return probe{"icmp " + ip, func(n string) error { return probePing(n, ip) }}
}

// expectBlocked runs probes that a firewall must drop: each must fail by
// timing out. A refusal, an unreachable network or a missing listener
// proves nothing about the firewall and fails the test too. Call it after
// the same probes succeeded from an unrestricted container.
func expectBlocked(t *testing.T, netns string, ps ...probe) {
	t.Helper()
	for _, p := range ps {
		err := p.run(netns)
		switch {
		case err == nil:
			t.Errorf("%s: reachable, want blocked", p.name)
		case !dropped(err):
			t.Errorf("%s: failed with %v, not a silent drop: the probe proves nothing", p.name, err)
		}
	}
}

// dropped reports whether a probe's error is a timeout: what a dropped
// packet looks like to its sender.
func dropped(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "100% packet loss") || strings.Contains(msg, "timed out") ||
		strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "exit status 124") || // killed by coreutils timeout(1)
		strings.Contains(msg, "exit status 143") || strings.Contains(msg, "exit code 143") // by busybox timeout, inside a container
}

// expect runs probes from netns and fails the test for every one whose
// outcome is not want (for want false, any failure counts: use
// expectBlocked where a firewall is what should stop the probe).
func expect(t *testing.T, netns string, want bool, ps ...probe) {
	t.Helper()
	for _, p := range ps {
		err := p.run(netns)
		if want && err != nil {
			t.Errorf("%s: want reachable, got %v", p.name, err)
		}
		if !want && err == nil {
			t.Errorf("%s: reachable, want blocked", p.name)
		}
	}
}

// greets connects from inside a runtime's container (busybox nc, through
// the runtime's exec) to a ground service and checks its greeting.
func greets(run func(args ...string) (string, error), ctr, host, port string) (string, error) {
	out, err := run("exec", ctr, "timeout", "3", "nc", host, port)
	if err == nil && !strings.Contains(out, "hello from") {
		err = fmt.Errorf("no greeting")
	}
	return out, err
}

// needTool returns the path of a program a test needs. A program that is
// not installed skips the test, saying how to install it (`make test`
// installs them all, and under CI a skip fails the run).
func needTool(t testing.TB, name, how string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: %s", name, how)
	}
	return p
}
