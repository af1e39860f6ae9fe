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

// dial reports why nothing accepts connections on socket (nil: something does).
func dial(socket string) error {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// daemonAnswers reports whether something accepts connections on socket.
func daemonAnswers(socket string) bool { return dial(socket) == nil }

func unreachable(socket string, err error) error {
	if e := socketProblem(socket, err); e != nil {
		return e
	}
	return types.NewError(types.ErrTryAgainLater,
		fmt.Sprintf("lease daemon not reachable at %s: start it with `hostbridge-dhcp daemon --socket %s` or `systemctl start hostbridge-dhcp.socket`", socket, socket),
		err.Error())
}

// socketProblem names what keeps a socket path from ever reaching a daemon,
// before "start it" would mislead: a path under a regular file, or a
// caller that is not root.
func socketProblem(socket string, err error) error {
	switch {
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return types.NewError(types.ErrInternal, fmt.Sprintf("the lease daemon's socket %s refused this user: the plugin must run as root (container runtimes run it so)", socket), err.Error())
	case errors.Is(err, unix.ENOTDIR):
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("\"daemonSocket\": %s cannot be a socket: a part of its path is a file, not a directory", socket), err.Error())
	}
	return nil
}

// impossibleSocket reports whether no daemon can ever have listened on
// socket (a part of its path is a file, or its directory does not exist):
// then no lease was obtained through it.
func impossibleSocket(socket string) bool {
	st, err := os.Stat(filepath.Dir(socket))
	return err != nil || !st.IsDir()
}

// ensureDaemon makes sure the lease daemon answers, starting it when it does
// not and autoStartDaemon is on (the default). A lock file keeps parallel
// ADDs from starting more than one.
func ensureDaemon(c *Config) error {
	sock := c.DaemonSocket
	err := dial(sock)
	if err == nil {
		return nil
	}
	if e := socketProblem(sock, err); e != nil {
		return e // starting a daemon would not help
	}
	if c.AutoStartDaemon != nil && !*c.AutoStartDaemon {
		return unreachable(sock, fmt.Errorf("%v (and autoStartDaemon is false)", err))
	}
	stateDir := c.DaemonStateDir
	if stateDir == "" {
		stateDir = daemon.DefaultStateDir
	}
	// One state directory, one daemon: another one's leases are not ours
	// to renew.
	if pid, other, ok := daemon.Owner(stateDir); ok && other != sock {
		return types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("the lease daemon of %s (pid %d) listens on %s, not on %s: set \"daemonSocket\": %q, or \"daemonStateDir\" to a directory of this network's own", stateDir, pid, other, sock, other), "")
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
	pid, logPath, err := startDaemon(sock, stateDir)
	if err != nil {
		return unreachable(sock, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if daemonAnswers(sock) {
			// The runtime shows (or logs) what the plugin writes to stderr.
			fmt.Fprintf(os.Stderr, "hostbridge-dhcp: started the lease daemon (pid %d) on %s; it logs to %s (stop it with `kill %d`, or run it under systemd: README, Install)\n", pid, sock, logPath, pid)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return unreachable(sock, errors.New("started the daemon but it did not answer within 5s"))
}

// startDaemon runs `hostbridge-dhcp daemon` detached from the runtime: its
// own session, output to daemon.log in its state directory. It returns the
// daemon's pid and log.
func startDaemon(sock, stateDir string) (pid int, logPath string, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, "", fmt.Errorf("finding own binary: %w", err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return 0, "", fmt.Errorf("creating %s: %w", stateDir, err)
	}
	logPath = filepath.Join(stateDir, "daemon.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, "", fmt.Errorf("opening daemon log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "daemon", "--socket", sock, "--state-dir", stateDir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = daemonEnv()
	if err := cmd.Start(); err != nil {
		return 0, "", fmt.Errorf("starting %s daemon: %w", exe, err)
	}
	pid = cmd.Process.Pid
	return pid, logPath, cmd.Process.Release()
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
