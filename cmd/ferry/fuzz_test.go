package main

import (
	"strconv"
	"testing"
)

// FuzzParseSize: a size that parses is a byte count from 0 up, and its
// decimal form parses to the same count.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1048576", "500MB", "10GiB", "2T", "none", "0", "1e30tb", "NaN", "-1k", "inf", "1.5k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("%q -> %d", s, n)
		}
		if again, err := parseSize(strconv.FormatInt(n, 10)); err != nil || again != n {
			t.Fatalf("%q -> %d -> %d, %v", s, n, again, err)
		}
	})
}
