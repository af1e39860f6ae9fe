package leaseapi

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// ErrTooLarge is returned for a request longer than MaxMessage.
var ErrTooLarge = errors.New("request too large")

func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > max {
			return nil, ErrTooLarge
		}
		if err == nil {
			return buf, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(buf) > 0 {
			return buf, nil
		}
		return nil, err
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
