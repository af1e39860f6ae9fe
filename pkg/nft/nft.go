// Package nft is lanwire's thin layer over nf_tables: a connection whose
// batches commit as one transaction, a lock that serializes lanwire's
// changes, and the hand-over of the connection's socket to the lease daemon
// (the kernel makes whoever closes a socket after a deletion wait for the
// deleted objects to be freed, ~10 ms).
package nft

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// LockWait bounds how long a change waits for lanwire's firewall lock.
const LockWait = 5 * time.Second

// ErrLocked is returned when another process held the lock too long.
var ErrLocked = errors.New("another process holds lanwire's firewall lock")

// Idle reports whether directory dir (a set of markers, one per user of
// something lanwire put on the host) is absent, or empty and unchanged
// for grace: what was kept for the next user may go.
func Idle(dir string, grace time.Duration) bool {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil || time.Since(st.ModTime()) < grace {
		return false
	}
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}

// Lock takes the lock file at path, waiting at most LockWait (then
// ErrLocked); call the returned func to release it.
func Lock(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	deadline := time.Now().Add(LockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: %s held for more than %s", ErrLocked, path, LockWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CNIError turns a firewall failure into CNI error JSON: ErrLocked is
// error 11 (try again later), anything else 999 with action as context.
func CNIError(action string, err error) error {
	if errors.Is(err, ErrLocked) {
		return types.NewError(types.ErrTryAgainLater, "the firewall is busy: another process held lanwire's firewall lock; try again", err.Error())
	}
	return types.NewError(types.ErrInternal, action, err.Error())
}

// Conn is one nf_tables netlink connection: its queued changes commit
// together at Flush, in one transaction.
type Conn struct {
	*nftables.Conn
	dup    int  // a second descriptor of the socket, for the hand-over; -1 if none
	handed bool // a lease daemon took the socket (HandOff)
}

// Open dials nf_tables.
func Open() (*Conn, error) {
	c := &Conn{dup: -1}
	grab := func(nc *netlink.Conn) error {
		// Big batches (a table rebuilt with every port's elements) are
		// answered with one acknowledgement per message.
		_ = nc.SetReadBuffer(1 << 20)
		raw, err := nc.SyscallConn()
		if err != nil {
			return err
		}
		var derr error
		if err := raw.Control(func(fd uintptr) {
			c.dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		}); err != nil {
			return err
		}
		return derr
	}
	nc, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(grab))
	if err != nil {
		if c.dup >= 0 {
			unix.Close(c.dup)
		}
		return nil, fmt.Errorf("opening nf_tables (lanwire needs a kernel with nf_tables; iptables-legacy-only hosts are not supported): %w", err)
	}
	c.Conn = nc
	return c, nil
}

// Close ends the connection. When a lease daemon answers on daemonSocket
// it is handed the socket and closes it later, so the caller does not wait
// for the kernel to free what any recent transaction deleted (the kernel
// makes whoever closes an nf_tables socket wait for that, ~10 ms, whoever
// deleted it); otherwise the socket is closed here.
func (c *Conn) Close(daemonSocket string) {
	if c.dup >= 0 {
		if daemonSocket != "" {
			_ = SendFD(daemonSocket, c.dup) // best effort: on failure the close below waits
		}
		unix.Close(c.dup)
		c.dup = -1
	}
	_ = c.CloseLasting()
}

// HandOff gives the socket to the lease daemon at daemonSocket now (Close
// then has nothing to hand over) and reports whether a daemon took it: a
// daemon is there, which also removes the tables the last user leaves
// (see guard.Tidy).
func (c *Conn) HandOff(daemonSocket string) bool {
	if c.handed {
		return true
	}
	if c.dup < 0 || daemonSocket == "" || SendFD(daemonSocket, c.dup) != nil {
		return false
	}
	unix.Close(c.dup)
	c.dup, c.handed = -1, true
	return true
}

// DaemonUp returns a func reporting whether a lease daemon answers on
// socket (for hostknob.Knobs.Release: the daemon puts kept settings back).
func DaemonUp(socket string) func() bool {
	return func() bool {
		if socket == "" {
			return false
		}
		conn, err := net.DialTimeout("unix", socket, 200*time.Millisecond)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
}

// AdoptMethod is the request line a socket hand-over carries (with the
// descriptor as SCM_RIGHTS); the lease daemon closes what it adopts.
const AdoptMethod = `{"version":1,"method":"adopt"}` + "\n"

// SendFD hands fd to the lease daemon listening on socket. It does not wait
// for an answer: the message in flight holds the descriptor.
func SendFD(socket string, fd int) error {
	conn, err := net.DialTimeout("unix", socket, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return errors.New("not a unix socket")
	}
	_ = uc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	_, _, err = uc.WriteMsgUnix([]byte(AdoptMethod), unix.UnixRights(fd), nil)
	return err
}

// IfName is an interface name as nf_tables compares it: 16 bytes, NUL padded.
func IfName(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// TableExists reports whether the table is there (one netlink request).
func (c *Conn) TableExists(t *nftables.Table) (bool, error) {
	_, err := c.ListTableOfFamily(t.Name, t.Family)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return false, err
}
