package hostbridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// confDir is where the runtime's CNI configs live: NETCONFPATH (cnitool's
// variable) or the standard /etc/cni/net.d.
func confDir() string {
	if d := os.Getenv("NETCONFPATH"); d != "" {
		return d
	}
	return "/etc/cni/net.d"
}

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

// checkConflicts refuses a bridge that another CNI network (of another name)
// or a Docker network already uses with its own IPAM, or with DHCP: two
// address managers on one LAN segment hand out clashing addresses.
func checkConflicts(c *Config) error {
	dir := confDir()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		ext := filepath.Ext(f)
		if ext != ".conf" && ext != ".conflist" && ext != ".json" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var cf confFile
		if json.Unmarshal(data, &cf) != nil || cf.Name == c.Name {
			continue
		}
		plugins := cf.Plugins
		if len(plugins) == 0 {
			plugins = []pluginEntry{cf.pluginEntry}
		}
		for _, p := range plugins {
			if p.Bridge != c.Bridge {
				continue
			}
			if p.Type == "hostbridge-dhcp" || p.IPAM.Type != "" {
				return invalid("bridge %q is already used by CNI network %q (%s) with its own address management: use another bridge, or set \"ignoreConflicts\": true if the two really share the LAN safely", c.Bridge, cf.Name, f)
			}
		}
	}
	if name := dockerNetworkOn(c.Bridge); name != "" {
		return invalid("bridge %q is already used by Docker network %q with Docker's IPAM: use another bridge, or set \"ignoreConflicts\": true", c.Bridge, name)
	}
	return nil
}

// dockerNetworkOn names the Docker network that manages bridge, if any.
func dockerNetworkOn(bridge string) string {
	const sock = "/var/run/docker.sock"
	if _, err := os.Stat(sock); err != nil {
		return ""
	}
	client := http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	resp, err := client.Get("http://docker/networks")
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
			return fmt.Sprint(n.Name)
		}
	}
	return ""
}
