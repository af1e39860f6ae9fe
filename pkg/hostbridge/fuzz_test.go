package hostbridge

import (
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// FuzzParse: any input gives a config or a CNI error, never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"lan","type":"hostbridge-dhcp","bridge":"br0"}`))
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"lan","bridge":"br0","leaseTimeout":"5s","clientID":"container","sendOptions":{"77":"x","250":{"fromArg":"A"}},"requestOptions":[42,"ntp-servers"],"runtimeConfig":{"mac":"02:00:00:00:00:01","ips":["10.0.0.5/24"]}}`))
	f.Add([]byte(`{"name":"x","bridge":"br0","ipv6":"auto","mtu":70000}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var te *types.Error
			if !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig {
				t.Fatalf("not a CNI error 7: %v", err)
			}
			return
		}
		if c.Bridge == "" || c.LeaseTimeout.Duration <= 0 || c.DaemonSocket == "" {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
	})
}
