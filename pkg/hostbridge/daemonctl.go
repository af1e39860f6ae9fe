package hostbridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/pkg/daemon"
	"github.com/lanwire/lanwire/pkg/leaseapi"
)

// daemonAnswers reports whether something accepts connections on socket.
func daemonAnswers(socket string) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func unreachable(socket string, err error) error {
	return types.NewError(types.ErrTryAgainLater,
		fmt.Sprintf("lease daemon not reachable at %s: start it with `hostbridge-dhcp daemon --socket %s` or `systemctl start hostbridge-dhcp.socket`", socket, socket),
		err.Error())
}

// ensureDaemon makes sure the lease daemon answers, starting it when it does
// not and autoStartDaemon is on (the default). A lock file keeps parallel
// ADDs from starting more than one.
func ensureDaemon(c *Config) error {
	sock := c.DaemonSocket
	if daemonAnswers(sock) {
		return nil
	}
	if c.AutoStartDaemon != nil && !*c.AutoStartDaemon {
		return unreachable(sock, errors.New("autoStartDaemon is false"))
	}
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return unreachable(sock, err)
	}
	lock, err := os.OpenFile(sock+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return unreachable(sock, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return unreachable(sock, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if daemonAnswers(sock) {
		return nil
	}
	if err := startDaemon(sock, c.DaemonStateDir); err != nil {
		return unreachable(sock, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if daemonAnswers(sock) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return unreachable(sock, errors.New("started the daemon but it did not answer within 5s"))
}

// startDaemon runs `hostbridge-dhcp daemon` detached from the runtime: its
// own session, output to daemon.log in its state directory.
func startDaemon(sock, stateDir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own binary: %w", err)
	}
	if stateDir == "" {
		stateDir = daemon.DefaultStateDir
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", stateDir, err)
	}
	logf, err := os.OpenFile(filepath.Join(stateDir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("opening daemon log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "daemon", "--socket", sock, "--state-dir", stateDir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = daemonEnv()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s daemon: %w", exe, err)
	}
	return cmd.Process.Release()
}

// daemonEnv is the environment without the CNI_ variables of this call.
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) > 4 && kv[:4] == "CNI_" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// call sends req to the daemon, bounded by timeout.
func call(socket string, timeout time.Duration, req leaseapi.Request) (*leaseapi.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return leaseapi.Call(ctx, socket, req)
}

// apiError turns a daemon failure into CNI error JSON.
func apiError(socket string, err error) error {
	var ae *leaseapi.Error
	if errors.As(err, &ae) {
		code := ae.Code
		if code == 0 {
			code = types.ErrInternal
		}
		return types.NewError(code, ae.Msg, ae.Details)
	}
	if errors.Is(err, leaseapi.ErrUnreachable) {
		return unreachable(socket, err)
	}
	return types.NewError(types.ErrTryAgainLater, "talking to the lease daemon at "+socket, err.Error())
}
