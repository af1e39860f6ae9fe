package bridgeport

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// RetiredGroup is the link group of retired ports (see Retire): "lw" and
// a number no one is likely to give a group by hand.
const RetiredGroup = 0x6c770de1

// RetiredPrefix starts the name of every retired port.
const RetiredPrefix = "lwx"

// Retire takes the host end of a container's veth out of service at once:
// down, off its bridge, into RetiredGroup and renamed (so that a new ADD
// can make a port of the same name at once). A down port passes no frame
// either way, so nothing needs guarding any more. Deleting a veth makes
// the kernel wait for RCU grace periods, ~20 ms here; Reap does that
// later, for every retired port at once. It reports false when there is
// no such link. Equivalent to: `ip link set NAME down nomaster group
// RetiredGroup; ip link set NAME name lwxRANDOM`.
func Retire(name string) (bool, error) {
	idx, err := ifindex(name)
	if err != nil || idx == 0 {
		return false, err
	}
	down := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index, msg.Change, msg.Flags = int32(idx), unix.IFF_UP, 0
	down.AddData(msg)
	down.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(0)))
	down.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(RetiredGroup)))
	if _, err := down.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return false, nil
		}
		return false, fmt.Errorf("taking port %s down and off its bridge: %w", name, err)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	rename := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg = nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	rename.AddData(msg)
	rename.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(RetiredPrefix+hex.EncodeToString(suffix))))
	if _, err := rename.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		return true, fmt.Errorf("renaming retired port %s: %w", name, err)
	}
	return true, nil
}

// Reap deletes every retired port of the current netns in one batch (the
// kernel's wait is paid once). With none, it does nothing.
// Equivalent to: `ip link delete group RetiredGroup`.
func Reap() error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(RetiredGroup)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting retired ports: %w", err)
	}
	return nil
}

// ifindex returns the index of link name, 0 when there is none.
func ifindex(name string) (int, error) {
	if !ValidName(name) {
		return 0, nil
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "ifindex"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
