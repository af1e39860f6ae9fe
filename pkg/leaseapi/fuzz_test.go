package leaseapi

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzReadRequest: any bytes on the socket give a request or an error.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(`{"version":1,"method":"list"}` + "\n"))
	f.Add([]byte(`{"version":1,"method":"acquire","key":{"containerID":"c","network":"n","ifname":"eth0"},"spec":{"netns":"/x","ifname":"eth0","mac":"02:00:00:00:00:01"},"timeoutMS":5000}` + "\n"))
	f.Add([]byte(`{"version":1,"method":"gc","network":"n","valid":[{"containerID":"c","ifname":"eth0"}]}`))
	f.Add([]byte("\x00\xff{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ReadRequest(bufio.NewReaderSize(bytes.NewReader(data), 4096))
		if err == nil && req.Version != Version {
			t.Fatalf("accepted version %d", req.Version)
		}
	})
}
