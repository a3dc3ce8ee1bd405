package bench

import (
	"os"
	"testing"
	"time"
)

// TestParseTraces: each sample counts once, for the first category any
// of its frames matches (crypto under quic-go is crypto, a syscall under
// an fsync is fsync), and the rest is other.
func TestParseTraces(t *testing.T) {
	b, err := os.ReadFile("testdata/traces.txt")
	if err != nil {
		t.Fatal(err)
	}
	by, total, err := parseTraces(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"crypto (TLS, AES-GCM)":        40 * time.Millisecond,
		"QUIC (quic-go, its syscalls)": 20 * time.Millisecond,
		"fsync":                        10 * time.Millisecond,
		"hashing (BLAKE3)":             20 * time.Millisecond,
		otherCategory:                  10 * time.Millisecond,
	}
	if total != 100*time.Millisecond {
		t.Errorf("total %v, want 100ms", total)
	}
	for k, v := range want {
		if by[k] != v {
			t.Errorf("%s: %v, want %v (all: %v)", k, by[k], v, by)
		}
	}
	if len(by) != len(want) {
		t.Errorf("categories %v, want %v", by, want)
	}
}
