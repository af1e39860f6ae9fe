// Package daemon is the lease daemon: it acquires DHCPv4 leases inside
// container namespaces, keeps them renewed on a timer per lease (goroutines,
// never an OS thread per lease), persists them, and answers the plugin over
// a Unix socket.
package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lanwire/lanwire/pkg/bridgeport"
	"github.com/lanwire/lanwire/pkg/cli"
	"github.com/lanwire/lanwire/pkg/forward"
	"github.com/lanwire/lanwire/pkg/guard"
	"github.com/lanwire/lanwire/pkg/lease"
	"github.com/lanwire/lanwire/pkg/leaseapi"
	"github.com/lanwire/lanwire/pkg/leasestore"
	"github.com/lanwire/lanwire/pkg/nft"
	"github.com/lanwire/lanwire/pkg/portmap"
)

// DefaultStateDir is where leases are kept unless told otherwise.
const DefaultStateDir = "/var/lib/cni/hostbridge-dhcp"

// Config configures a Server.
type Config struct {
	Socket   string
	StateDir string
	Log      *log.Logger
	// PollInterval is how often namespaces are checked for disappearance.
	PollInterval time.Duration
	// MinRetry is the shortest wait between renewal attempts.
	MinRetry time.Duration
	// TablesLinger is how long lanwire's nftables tables stay, empty, after
	// the last container that needed them (default guard.Linger); the
	// daemon deletes them then, and when it stops.
	TablesLinger time.Duration
}

// Server is a running lease daemon.
type Server struct {
	cfg   Config
	store *leasestore.Store
	log   *log.Logger

	mu        sync.Mutex
	leases    map[lease.Key]*holder
	acquiring map[lease.Key]bool
	servers   map[string]net.HardwareAddr // bridge -> Ethernet address its DHCP server last answered from

	conns atomic.Int64

	adoptMu    sync.Mutex
	adoptedFDs []int // sockets handed over, to be closed

	reapCh chan struct{} // a retired port waits to be deleted
}

// maxConns bounds the connections open at once; past it a new connection
// is closed at once, so memory stays bounded and the accept loop never
// waits on a slow client.
const maxConns = 4096

// readTimeout bounds how long a client may take to send its request.
const readTimeout = 5 * time.Second

// New prepares a server; Run starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Socket == "" {
		cfg.Socket = leaseapi.DefaultSocket
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.Log == nil {
		cfg.Log = log.New(os.Stderr, "", log.LstdFlags)
	}
	if cfg.TablesLinger == 0 {
		cfg.TablesLinger = guard.Linger
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.MinRetry == 0 {
		cfg.MinRetry = 4 * time.Second
	}
	st, err := leasestore.Open(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if err := claimStateDir(cfg.StateDir, cfg.Socket); err != nil {
		return nil, err
	}
	return &Server{
		cfg: cfg, store: st, log: cfg.Log,
		leases:    map[lease.Key]*holder{},
		acquiring: map[lease.Key]bool{},
		servers:   map[string]net.HardwareAddr{},
		reapCh:    make(chan struct{}, 1),
	}, nil
}

// ownerFile is the state directory's lock: held by its daemon for its
// life, naming its pid and socket.
const ownerFile = "daemon.pid"

// claimStateDir makes this process the one daemon of dir: a second daemon
// on the same leases would renew and release them behind the first's back.
func claimStateDir(dir, socket string) error {
	// The lock is held on a read-only descriptor: a file open for writing
	// for the daemon's life would keep the state directory's file system
	// from being remounted read-only.
	name := filepath.Join(dir, ownerFile)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("opening the state directory's lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if pid, sock, ok := Owner(dir); ok {
			return fmt.Errorf("another lease daemon (pid %d) keeps its leases in %s and listens on %s: use that socket (\"daemonSocket\": %q), or give this one a state directory of its own", pid, dir, sock, sock)
		}
		return fmt.Errorf("another lease daemon keeps its leases in %s", dir)
	}
	if err := os.WriteFile(name, []byte(fmt.Sprintf("%d\n%s\n", os.Getpid(), socket)), 0o600); err != nil {
		f.Close()
		return fmt.Errorf("writing the state directory's lock: %w", err)
	}
	// The descriptor stays open (and locked) for the daemon's life.
	return nil
}

// Owner returns the pid and socket of the daemon that holds dir, if one
// does.
func Owner(dir string) (pid int, socket string, ok bool) {
	f, err := os.Open(filepath.Join(dir, ownerFile))
	if err != nil {
		return 0, "", false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		return 0, "", false // no one holds it
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return 0, "", false
	}
	pid, _ = strconv.Atoi(lines[0])
	return pid, lines[1], true
}

// Run listens on the socket (or the one systemd passed), resumes the stored
// leases, sends queued releases and serves until ctx ends. Leases are kept
// (not released) on shutdown, so a restart resumes them.
func (s *Server) Run(ctx context.Context) error {
	ln, err := s.listen()
	if err != nil {
		return err
	}
	defer ln.Close()
	s.log.Printf("lease daemon %s listening on %s, state in %s", cli.Version, s.cfg.Socket, s.cfg.StateDir)

	s.resume()
	s.drainPending()

	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		s.pollNamespaces(pollCtx)
	}()
	reapDone := make(chan struct{})
	go func() {
		defer close(reapDone)
		s.reaper(pollCtx)
	}()
	defer func() {
		stopPoll()
		<-reapDone
		s.tidy(0) // no daemon is left to remove them later
	}()

	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accepting on %s: %w", s.cfg.Socket, err)
		}
		if s.conns.Add(1) > maxConns {
			s.conns.Add(-1)
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.conns.Add(-1)
			s.serve(ctx, conn)
		}()
	}
	wg.Wait()
	// A release in progress (a throw-away port on the bridge) finishes
	// and removes its port before the daemon exits.
	stopPoll()
	<-pollDone
	s.mu.Lock()
	hs := make([]*holder, 0, len(s.leases))
	for _, h := range s.leases {
		hs = append(hs, h)
	}
	s.mu.Unlock()
	for _, h := range hs {
		h.stop()
	}
	os.Remove(s.cfg.Socket)
	s.log.Printf("lease daemon stopped; %d leases kept in %s", len(hs), s.cfg.StateDir)
	return nil
}

func (s *Server) listen() (net.Listener, error) {
	if ln := systemdListener(); ln != nil {
		return ln, nil
	}
	sock := s.cfg.Socket
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another lease daemon already answers on %s", sock)
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket %s: %w", sock, err)
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", sock)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("setting mode of %s: %w", sock, err)
	}
	return ln, nil
}

// systemdListener returns the socket passed by systemd socket activation.
func systemdListener() net.Listener {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") != "1" {
		return nil
	}
	f := os.NewFile(3, "systemd-socket")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil
	}
	return ln
}

// peerAllowed accepts root and the daemon's own user only.
func peerAllowed(conn net.Conn) (bool, string) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return false, "not a unix connection"
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false, err.Error()
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return false, err.Error()
	}
	if cerr != nil {
		return false, cerr.Error()
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return false, fmt.Sprintf("uid %d (pid %d)", cred.Uid, cred.Pid)
	}
	return true, ""
}

func (s *Server) serve(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	enc := json.NewEncoder(conn)
	if ok, who := peerAllowed(conn); !ok {
		s.log.Printf("refused connection from %s", who)
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = enc.Encode(leaseapi.Response{Version: leaseapi.Version, Error: &leaseapi.Error{Code: 999, Msg: "permission denied: only root may use the lease daemon"}})
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(readTimeout))
	first, fds := readFirst(conn)
	if string(first) == nft.AdoptMethod && len(fds) > 0 {
		s.adopt(fds)
		return
	}
	closeFDs(fds)
	req, err := leaseapi.ReadRequest(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(first), conn), 4096))
	var resp leaseapi.Response
	if err != nil {
		resp.Error = &leaseapi.Error{Code: 999, Msg: "bad request", Details: err.Error()}
	} else {
		_ = conn.SetReadDeadline(time.Time{})
		resp = s.handle(ctx, req)
	}
	resp.Version = leaseapi.Version
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = enc.Encode(resp)
}

// readFirst reads the connection's first chunk with any descriptors sent
// along (a plugin handing over its nf_tables socket).
func readFirst(conn net.Conn) ([]byte, []int) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil
	}
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	var fds []int
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if got, perr := unix.ParseUnixRights(&m); perr == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	if err != nil && n == 0 {
		return nil, fds
	}
	return buf[:n], fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// adoptDelay is how long adopted sockets are held before they are closed.
// Closing an nf_tables socket while deleted objects wait to be freed makes
// the closer free them, after an RCU grace period, holding nf_tables'
// commit lock: every other change waits ~10 ms. By then the kernel's own
// work has freed them, and the close is free.
const adoptDelay = 250 * time.Millisecond

// maxAdopted bounds the sockets held at once; past it they close at once.
const maxAdopted = 512

// adopt takes sockets plugins hand over, so that neither the plugin nor
// its caller waits on their close, and closes them later, in batches.
func (s *Server) adopt(fds []int) {
	s.adoptMu.Lock()
	defer s.adoptMu.Unlock()
	if len(s.adoptedFDs)+len(fds) > maxAdopted {
		go closeFDs(fds)
		return
	}
	s.adoptedFDs = append(s.adoptedFDs, fds...)
	if len(s.adoptedFDs) == len(fds) {
		time.AfterFunc(adoptDelay, func() {
			s.adoptMu.Lock()
			batch := s.adoptedFDs
			s.adoptedFDs = nil
			s.adoptMu.Unlock()
			closeFDs(batch)
		})
	}
}

func (s *Server) handle(ctx context.Context, req leaseapi.Request) leaseapi.Response {
	switch req.Method {
	case leaseapi.MethodAcquire:
		return s.acquire(ctx, req)
	case leaseapi.MethodRelease:
		return s.release(req.Key)
	case leaseapi.MethodCheck:
		if h := s.get(req.Key); h != nil {
			v := h.view()
			return leaseapi.Response{Lease: &v}
		}
		return leaseapi.Response{}
	case leaseapi.MethodList:
		return leaseapi.Response{Leases: s.list()}
	case leaseapi.MethodGC:
		return s.gc(req.Network, req.Valid)
	case leaseapi.MethodStatus:
		return leaseapi.Response{Status: s.status()}
	case leaseapi.MethodReap:
		s.reapSoon()
		return leaseapi.Response{}
	}
	return leaseapi.Response{Error: &leaseapi.Error{Code: 999, Msg: fmt.Sprintf("unknown method %q", req.Method)}}
}

func (s *Server) get(k lease.Key) *holder {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases[k]
}

func (s *Server) list() []leaseapi.Lease {
	s.mu.Lock()
	hs := make([]*holder, 0, len(s.leases))
	for _, h := range s.leases {
		hs = append(hs, h)
	}
	s.mu.Unlock()
	out := make([]leaseapi.Lease, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}

func (s *Server) status() *leaseapi.Status {
	st := &leaseapi.Status{Version: leaseapi.Version, PID: os.Getpid(), Goroutines: runtime.NumGoroutine()}
	for _, l := range s.list() {
		st.Leases++
		if st.OldestRenew.IsZero() || l.Acquired.Before(st.OldestRenew) {
			st.OldestRenew = l.Acquired
		}
	}
	return st
}

func (s *Server) gc(network string, valid []leaseapi.Attachment) leaseapi.Response {
	keep := map[leaseapi.Attachment]bool{}
	for _, a := range valid {
		keep[a] = true
	}
	var removed []string
	for _, l := range s.list() {
		if l.Key.Network != network || keep[leaseapi.Attachment{ContainerID: l.Key.ContainerID, IfName: l.Key.IfName}] {
			continue
		}
		s.release(l.Key)
		removed = append(removed, l.Key.String())
	}
	return leaseapi.Response{Removed: removed}
}

// release stops the lease's timer, sends RELEASE and forgets the lease.
func (s *Server) release(k lease.Key) leaseapi.Response {
	s.mu.Lock()
	h := s.leases[k]
	delete(s.leases, k)
	s.mu.Unlock()
	if h == nil {
		// Unknown: maybe never acquired, or already released. Make sure no
		// stale record would be resumed.
		if err := s.store.Delete(k); err != nil {
			return leaseapi.Response{Error: &leaseapi.Error{Code: 999, Msg: err.Error()}}
		}
		return leaseapi.Response{}
	}
	h.stop()
	h.sendRelease()
	if err := s.store.Delete(k); err != nil {
		// The lease is released and forgotten; a record left behind (a
		// read-only state directory) is dropped at the next start, when
		// its netns is found gone.
		s.log.Printf("%s: %v", k, err)
	}
	s.log.Printf("%s: released %s", k, h.snapshot().Info.Address.IP)
	return leaseapi.Response{Removed: []string{k.String()}}
}

// resume starts a holder for every stored lease.
func (s *Server) resume() {
	recs, errs := s.store.Load()
	for _, e := range errs {
		s.log.Print(e)
	}
	boot := bootID()
	for _, rec := range recs {
		h := newHolder(s, rec)
		if why := stale(rec, boot); why != "" {
			// Nothing it holds may be handed out again: release it (from a
			// throw-away port, the namespace being gone) and forget it.
			s.log.Printf("%s: dropping the record of %s: %s", rec.Key, rec.Info.Address.IP, why)
			h.sendRelease()
			if err := s.store.Delete(rec.Key); err != nil {
				s.log.Printf("%s: %v", rec.Key, err)
			}
			s.dropPort(rec.Key)
			continue
		}
		s.mu.Lock()
		s.leases[rec.Key] = h
		s.mu.Unlock()
		s.log.Printf("%s: resumed %s (%s; to be confirmed with the server at the next ADD)", rec.Key, rec.Info.Address.IP, rec.Info.PhaseAt(rec.Acquired, time.Now()))
		h.start()
	}
}

// stale says why a stored record is not for a namespace alive now: made in
// another boot, or its namespace gone or replaced ("" when it is alive).
func stale(rec leasestore.Record, boot string) string {
	switch {
	case rec.BootID != "" && boot != "" && rec.BootID != boot:
		return "it was made before the host restarted"
	case !netnsAlive(rec.Spec.Netns, rec.Netns()):
		return fmt.Sprintf("its network namespace %s is gone or is another one", rec.Spec.Netns)
	}
	return ""
}

// drainPending sends the releases queued by plugins while the daemon was down.
func (s *Server) drainPending() {
	ps, err := leasestore.TakePending(leasestore.PendingDir(s.cfg.Socket))
	if err != nil {
		s.log.Print(err)
	}
	for _, p := range ps {
		s.log.Printf("%s: sending release queued at %s", p.Key, p.Queued.Format(time.RFC3339))
		s.release(p.Key)
	}
}

// tidy deletes lanwire's tables no container has needed for grace, puts
// back the host settings no container has needed for as long, and puts
// back a FORWARD rule containers need that was removed.
func (s *Server) tidy(grace time.Duration) {
	if err := guard.Tidy(grace); err != nil {
		s.log.Printf("removing unused firewall tables: %v", err)
	}
	if err := portmap.Tidy(grace); err != nil {
		s.log.Printf("removing the unused port-mapping table: %v", err)
	}
	if err := forward.Tidy(grace); err != nil {
		s.log.Printf("keeping the FORWARD rules as containers need them: %v", err)
	}
	if err := guard.Knobs.Tidy(grace); err != nil {
		s.log.Printf("putting back host settings no container needs: %v", err)
	}
}

// reapSoon wakes the reaper (once for any number of calls meanwhile).
func (s *Server) reapSoon() {
	select {
	case s.reapCh <- struct{}{}:
	default:
	}
}

// reaper deletes the ports DELs retired, at start (some may be left from
// before a crash), when a DEL asks and at every namespace poll. Requests
// that arrive while a deletion runs are served by one more: ports retired
// meanwhile go in one batch.
func (s *Server) reaper(ctx context.Context) {
	s.reapSoon()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.reapCh:
		}
		if err := bridgeport.Reap(); err != nil {
			s.log.Print(err)
		}
	}
}

// pollNamespaces drops leases whose netns has disappeared.
func (s *Server) pollNamespaces(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.reapSoon()
		s.tidy(s.cfg.TablesLinger)
		s.mu.Lock()
		hs := make([]*holder, 0, len(s.leases))
		for _, h := range s.leases {
			hs = append(hs, h)
		}
		s.mu.Unlock()
		for _, h := range hs {
			rec := h.snapshot() // renewals rewrite the record concurrently
			if !netnsAlive(rec.Spec.Netns, rec.Netns()) {
				s.log.Printf("%s: netns %s is gone; releasing", rec.Key, rec.Spec.Netns)
				s.release(rec.Key)
				s.dropPort(rec.Key)
			}
		}
	}
}

// dropPort removes the firewall entries of a port whose veth went with its
// netns (no DEL came).
func (s *Server) dropPort(k lease.Key) {
	if _, err := os.Stat("/sys/class/net/" + k.HostIf()); err == nil {
		return // the veth is still there: its DEL removes both
	}
	if err := guard.Forget(k.HostIf()); err != nil {
		s.log.Printf("%s: removing the firewall entries of its port: %v", k, err)
	}
}

// netnsID returns the identity of the namespace mounted at path.
func netnsID(path string) (leasestore.NetnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return leasestore.NetnsID{}, err
	}
	return leasestore.NetnsID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// netnsAlive reports whether the namespace at path is still the one id
// names (records from before NetnsDev was kept compare the inode only).
func netnsAlive(path string, id leasestore.NetnsID) bool {
	got, err := netnsID(path)
	if err != nil {
		return false
	}
	return (id.Ino == 0 || got.Ino == id.Ino) && (id.Dev == 0 || got.Dev == id.Dev)
}

// bootID names this boot of the kernel: a record made in another boot is
// for a namespace that no longer exists, whatever its path and inode say.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
