package leaseapi

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"ok", `{"version":1,"method":"list"}` + "\n", ""},
		{"ok without newline", `{"version":1,"method":"status"}`, ""},
		{"old version", `{"version":0,"method":"list"}` + "\n", "version 0 not supported"},
		{"unknown field", `{"version":1,"method":"list","extra":1}` + "\n", "malformed"},
		{"not json", "hello\n", "malformed"},
		{"empty", "", "EOF"},
		{"too large", `{"version":1,"method":"` + strings.Repeat("x", MaxMessage) + `"}` + "\n", "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRequest(bufio.NewReaderSize(strings.NewReader(tc.in), 4096))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
	if _, err := ReadRequest(bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", MaxMessage+10)), 4096)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized request without newline: got %v", err)
	}
}
