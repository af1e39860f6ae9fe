// Package leaseapi is the lease daemon's wire protocol: small, versioned JSON
// requests and responses over a Unix socket, one call per connection, every
// call bounded by a deadline.
package leaseapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/lanwire/lanwire/pkg/lease"
)

// Version is the protocol version this build speaks.
const Version = 1

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/cni/hostbridge-dhcp.sock"

// MaxMessage bounds a request or response line.
const MaxMessage = 1 << 20

// The methods of the protocol.
const (
	MethodAcquire = "acquire"
	MethodRelease = "release"
	MethodCheck   = "check"
	MethodList    = "list"
	MethodGC      = "gc"
	MethodStatus  = "status"
	// MethodReap asks the daemon to delete the ports DEL retired
	// (bridgeport.Retire), after it answered.
	MethodReap = "reap"
)

// Request is one call. Exactly the fields its Method needs are set.
type Request struct {
	Version int    `json:"version"`
	Method  string `json:"method"`
	// Key names the lease for acquire, release and check.
	Key lease.Key `json:"key,omitempty"`
	// Spec is what acquire needs to obtain the lease.
	Spec *lease.Spec `json:"spec,omitempty"`
	// TimeoutMS bounds how long acquire waits for a first lease.
	TimeoutMS int64 `json:"timeoutMS,omitempty"`
	// NewInterface says the plugin has just made the interface: a lease
	// the daemon holds for the key is then confirmed with the server
	// (INIT-REBOOT) or acquired anew, never answered as it is.
	NewInterface bool `json:"newInterface,omitempty"`
	// Network and Valid scope gc: leases of Network whose
	// (containerID, ifname) is not in Valid are released.
	Network string       `json:"network,omitempty"`
	Valid   []Attachment `json:"valid,omitempty"`
}

// Attachment is one (container ID, ifname) pair still in use.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// Error is a failure the daemon reports, with a CNI error code.
type Error struct {
	Code    uint   `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details,omitempty"`
}

func (e *Error) Error() string {
	if e.Details != "" {
		return e.Msg + ": " + e.Details
	}
	return e.Msg
}

// Lease is the daemon's view of one lease.
type Lease struct {
	Key         lease.Key   `json:"key"`
	Spec        lease.Spec  `json:"spec"`
	Info        lease.Info  `json:"info"`
	Phase       lease.Phase `json:"phase"`
	Acquired    time.Time   `json:"acquired"`
	Expiry      time.Time   `json:"expiry"`
	NextRenewal time.Time   `json:"nextRenewal"`
	// The DHCPv6 lease, when the spec asked for one.
	Info6        *lease.Info6 `json:"info6,omitempty"`
	Phase6       lease.Phase  `json:"phase6,omitempty"`
	Acquired6    *time.Time   `json:"acquired6,omitempty"`
	Expiry6      *time.Time   `json:"expiry6,omitempty"`
	NextRenewal6 *time.Time   `json:"nextRenewal6,omitempty"`
}

// Status describes the daemon.
type Status struct {
	Version     int       `json:"version"`
	PID         int       `json:"pid"`
	Leases      int       `json:"leases"`
	OldestRenew time.Time `json:"oldestRenewal,omitempty"`
	Goroutines  int       `json:"goroutines"`
}

// Response answers a Request.
type Response struct {
	Version int      `json:"version"`
	Error   *Error   `json:"error,omitempty"`
	Lease   *Lease   `json:"lease,omitempty"`
	Leases  []Lease  `json:"leases,omitempty"`
	Status  *Status  `json:"status,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// ErrUnreachable wraps every failure to reach the daemon at all.
var ErrUnreachable = errors.New("lease daemon not reachable")

// Call sends req to the daemon at socket and waits for its answer until ctx ends.
func Call(ctx context.Context, socket string, req Request) (*Response, error) {
	req.Version = Version
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	werr := json.NewEncoder(conn).Encode(req)
	var resp Response
	r := bufio.NewReaderSize(conn, 64<<10)
	if err := json.NewDecoder(r).Decode(&resp); err != nil {
		if werr != nil {
			// (A daemon that refuses a caller answers before reading, and
			// closes: its answer is what counts when there is one.)
			return nil, fmt.Errorf("sending %s to the lease daemon: %w", req.Method, werr)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("lease daemon did not answer %s in time: %w", req.Method, ctx.Err())
		}
		return nil, fmt.Errorf("reading the lease daemon's answer to %s: %w", req.Method, err)
	}
	if resp.Error != nil {
		return &resp, resp.Error
	}
	return &resp, nil
}

// ReadRequest decodes one request of at most MaxMessage bytes from r.
func ReadRequest(r *bufio.Reader) (Request, error) {
	var req Request
	line, err := readLine(r, MaxMessage)
	if err != nil {
		return req, err
	}
	dec := json.NewDecoder(bytesReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if strings.Contains(err.Error(), "unknown field") {
			return req, fmt.Errorf("malformed request: %w: the plugin may be newer than this lease daemon; restart the daemon (`systemctl restart hostbridge-dhcp`, or stop it: the next ADD starts the new one)", err)
		}
		return req, fmt.Errorf("malformed request: %w", err)
	}
	if req.Version != Version {
		return req, fmt.Errorf("protocol version %d not supported (this daemon speaks %d): run the same lanwire version for plugin and daemon", req.Version, Version)
	}
	return req, nil
}
