package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBandwidthLimit: --limit-upload and --limit-download hold a push and
// a pull to the rate asked, whatever the streams: a 3 MiB push at 1 MiB/s
// cannot finish in under about 3 s, nor a pull at 2 MiB/s in under 1.5 s.
// (A lower bound only: a slow machine makes it slower, never faster. How
// closely the limit holds is BenchmarkLimit's.) A negative limit is a
// usage error.
func TestBandwidthLimit(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp, "FERRY_IDLE_TIMEOUT=30s"}
	for _, d := range []string{a, b} {
		if out, err := ferryRun(t, env, "init", d, "--remote", srv.url("team"), "--root", "r"); err != nil {
			t.Fatal(out)
		}
	}
	data := randomFile(t, filepath.Join(a, "big.bin"), 3<<20)
	start := time.Now()
	if out, err := ferryRun(t, env, "push", a, "--limit-upload", "1024"); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if took := time.Since(start); took < 2800*time.Millisecond {
		t.Errorf("a 3 MiB push at --limit-upload 1024 took %s", took)
	}
	start = time.Now()
	if out, err := ferryRun(t, append(env, "FERRY_LIMIT_DOWNLOAD=2048"), "pull", b); err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Errorf("a 3 MiB pull at FERRY_LIMIT_DOWNLOAD=2048 took %s", took)
	}
	if got, err := os.ReadFile(filepath.Join(b, "big.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the limited pull did not bring the file whole (%v)", err)
	}
	if out, err := ferryRun(t, env, "push", a, "--limit-upload", "-5"); exitOf(err) != exitUsage {
		t.Errorf("a negative limit: %v (want exit %d)\n%s", err, exitUsage, out)
	}
}
