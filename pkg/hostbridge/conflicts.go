package hostbridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lanwire/lanwire/pkg/bridgeport"
)

// confDir is where the runtime's CNI configs live: NETCONFPATH (cnitool's
// variable) or the standard /etc/cni/net.d.
func confDir() string {
	if d := os.Getenv("NETCONFPATH"); d != "" {
		return d
	}
	return "/etc/cni/net.d"
}

// ConflictCache is where the parsed config directories are cached.
var ConflictCache = "/run/lanwire/conflicts"

// dockerWait bounds how long ADD waits on Docker: a busy or hung dockerd
// must not slow ADD down (no answer in time: no Docker network is assumed).
const dockerWait = 15 * time.Millisecond

type pluginEntry struct {
	Type   string `json:"type"`
	Bridge string `json:"bridge"`
	IPAM   struct {
		Type string `json:"type"`
	} `json:"ipam"`
}

type confFile struct {
	Name    string        `json:"name"`
	Plugins []pluginEntry `json:"plugins"`
	pluginEntry
}

// manager is a plugin of another network that puts containers on a bridge
// with addresses of its own.
type manager struct {
	File    string `json:"file"`
	Network string `json:"network"`
	Plugin  string `json:"plugin"`
	IPAM    string `json:"ipam"`
	Bridge  string `json:"bridge"`
}

// ownAddresses reports whether a plugin entry hands out addresses of its
// own. hostbridge-dhcp and the bridge plugin with the dhcp IPAM ask the
// LAN's DHCP server, as lanwire does: no conflict.
func ownAddresses(p pluginEntry) bool {
	switch {
	case p.Type == "hostbridge-dhcp":
		return false
	case p.IPAM.Type == "" || p.IPAM.Type == "dhcp":
		return false
	}
	return true
}

// dirCache is the address managers found in a config directory, and what
// the directory held when it was read.
type dirCache struct {
	Fingerprint string    `json:"fingerprint"`
	Managers    []manager `json:"managers"`
}

// fingerprint names the directory's config files with their sizes and
// modification times: reading it costs a stat per file, not a parse.
func fingerprint(dir string) (string, []string) {
	es, _ := os.ReadDir(dir)
	var parts, files []string
	for _, e := range es {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
		default:
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d %d", e.Name(), info.Size(), info.ModTime().UnixNano()))
		files = append(files, filepath.Join(dir, e.Name()))
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n"), files
}

// managersIn parses the config files and lists the address managers.
func managersIn(files []string) []manager {
	var out []manager
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var cf confFile
		if json.Unmarshal(data, &cf) != nil {
			continue
		}
		plugins := cf.Plugins
		if len(plugins) == 0 {
			plugins = []pluginEntry{cf.pluginEntry}
		}
		for _, p := range plugins {
			if p.Bridge != "" && ownAddresses(p) {
				out = append(out, manager{File: f, Network: cf.Name, Plugin: p.Type, IPAM: p.IPAM.Type, Bridge: p.Bridge})
			}
		}
	}
	return out
}

// managers lists the address managers of dir, parsing it only when its
// files changed since the last ADD that read it.
func managers(dir string) []manager {
	fp, files := fingerprint(dir)
	sum := sha256.Sum256([]byte(dir))
	path := filepath.Join(ConflictCache, hex.EncodeToString(sum[:8])+".json")
	var c dirCache
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &c) == nil && c.Fingerprint == fp {
		return c.Managers
	}
	c = dirCache{Fingerprint: fp, Managers: managersIn(files)}
	if b, err := json.Marshal(c); err == nil && os.MkdirAll(ConflictCache, 0o700) == nil {
		tmp := path + fmt.Sprintf(".%d", os.Getpid())
		if os.WriteFile(tmp, b, 0o600) == nil {
			_ = os.Rename(tmp, path)
		}
	}
	return c.Managers
}

// checkConflicts refuses a bridge that another CNI network, or a Docker
// network, puts containers on with addresses of its own (host-local,
// static, whereabouts, Docker's IPAM): two address managers on one LAN
// segment hand out clashing addresses. Other lanwire networks, and the
// bridge plugin with the dhcp IPAM, ask the same LAN server: no conflict.
func checkConflicts(c *Config) error {
	for _, m := range managers(confDir()) {
		if m.Bridge == c.Bridge && m.Network != c.Name {
			return invalid("bridge %q is already used by CNI network %q (%s: plugin %q with IPAM %q), which hands out addresses of its own on that LAN: use another bridge, or set \"ignoreConflicts\": true if its addresses cannot clash with the LAN's DHCP server's",
				c.Bridge, m.Network, m.File, m.Plugin, m.IPAM)
		}
	}
	// Docker is asked once per bridge, by the first container on it.
	if firstOnBridge(c.Bridge) {
		if name := dockerNetworkOn(c.Bridge); name != "" {
			return invalid("bridge %q is already used by Docker network %q with Docker's IPAM: use another bridge, or set \"ignoreConflicts\": true", c.Bridge, name)
		}
	}
	return nil
}

// firstOnBridge reports whether no container of lanwire is on bridge yet.
func firstOnBridge(bridge string) bool {
	ports, _ := os.ReadDir(filepath.Join("/sys/class/net", bridge, "brif"))
	for _, p := range ports {
		if bridgeport.IsContainerPort(p.Name()) {
			return false
		}
	}
	return true
}

// dockerSocket is Docker's API socket: DOCKER_HOST when it is a unix://
// address, else /var/run/docker.sock.
func dockerSocket() string {
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		return h
	}
	return "/var/run/docker.sock"
}

// dockerNetworkOn names the Docker network that manages bridge, if any,
// and "" when Docker does not answer within dockerWait.
func dockerNetworkOn(bridge string) string {
	sock := dockerSocket()
	if _, err := os.Stat(sock); err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/networks", nil)
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var nets []struct {
		Name    string            `json:"Name"`
		Driver  string            `json:"Driver"`
		Options map[string]string `json:"Options"`
		IPAM    struct {
			Driver string `json:"Driver"`
		} `json:"IPAM"`
	}
	if json.NewDecoder(resp.Body).Decode(&nets) != nil {
		return ""
	}
	for _, n := range nets {
		br := n.Options["com.docker.network.bridge.name"]
		if n.Driver == "bridge" && n.Name == "bridge" && br == "" {
			br = "docker0"
		}
		if br == bridge && n.IPAM.Driver != "null" {
			return n.Name
		}
	}
	return ""
}
