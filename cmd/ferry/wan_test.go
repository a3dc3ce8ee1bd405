package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/bench/linkem"
)

// TestWAN pushes and pulls through the user-space link emulator (D10):
// a real ferry serve in one network namespace, the clients in another,
// each condition on the link between them. Every push and pull either
// finishes or fails with a retryable error and then, run again, resumes
// and finishes; what the server holds afterwards is exactly what was
// pushed (a pull elsewhere matches it, check --read-data passes), never a
// partial commit.
func TestWAN(t *testing.T) {
	const mid = 1 << 20 // act once this much has crossed the link
	for _, tc := range []struct {
		name   string
		cfg    linkem.Config
		during func(l *linkem.Link) // at mid of the push and of the pull
	}{
		{name: "5% loss", cfg: linkem.Config{
			AtoB: linkem.Shape{Delay: 10 * time.Millisecond, Loss: 0.05},
			BtoA: linkem.Shape{Delay: 10 * time.Millisecond, Loss: 0.05}}},
		{name: "reordering", cfg: linkem.Config{
			AtoB: linkem.Shape{Delay: 10 * time.Millisecond, Jitter: 3 * time.Millisecond, Reorder: 0.1, ReorderBy: 15 * time.Millisecond},
			BtoA: linkem.Shape{Delay: 10 * time.Millisecond, Jitter: 3 * time.Millisecond, Reorder: 0.1, ReorderBy: 15 * time.Millisecond}}},
		{name: "MTU 1280", cfg: linkem.Config{MTU: 1280,
			AtoB: linkem.Shape{Delay: 5 * time.Millisecond}, BtoA: linkem.Shape{Delay: 5 * time.Millisecond}}},
		{name: "10s blackhole", cfg: linkem.Config{
			AtoB: linkem.Shape{Delay: 5 * time.Millisecond}, BtoA: linkem.Shape{Delay: 5 * time.Millisecond}},
			during: func(l *linkem.Link) { l.Blackhole(10 * time.Second) }},
		{name: "NAT rebinding", cfg: linkem.Config{
			AtoB: linkem.Shape{Delay: 5 * time.Millisecond}, BtoA: linkem.Shape{Delay: 5 * time.Millisecond}},
			during: func(l *linkem.Link) { l.Rebind() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Seed = 1
			l, err := linkem.New(tc.cfg)
			if err != nil {
				t.Fatalf("the WAN tests need the link emulator: %v", err)
			}
			t.Cleanup(func() { l.Close() })
			onA := func(c *exec.Cmd) *exec.Cmd { return l.Wrap(linkem.A, c) }
			tmp := t.TempDir()
			data := filepath.Join(tmp, "data")
			srv := startServeWrapped(t, data, linkem.AddrB.String()+":0", nil, func(c *exec.Cmd) *exec.Cmd { return l.Wrap(linkem.B, c) })
			out, err := onA(ferryCmd(nil, "token", "create", "--data", data, "--namespace", "n", "--perm", "write")).Output()
			if err != nil {
				t.Fatalf("token create across the link: %v\n%s", err, out)
			}
			env := []string{"FERRY_TOKEN=" + strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]), "FERRY_FINGERPRINT=" + srv.fp}
			a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
			for i := range 3 {
				randomFile(t, filepath.Join(a, fmt.Sprintf("f%d", i)), 1<<20)
			}
			for _, dir := range []string{a, b} {
				if o, err := onA(ferryCmd(env, "init", dir, "--remote", srv.url("n"), "--root", "r")).CombinedOutput(); err != nil {
					t.Fatalf("init: %v\n%s", err, o)
				}
			}
			if tc.during != nil {
				l.After(linkem.A, mid, func() { tc.during(l) })
			}
			version := runRetrying(t, onA, "push", a)
			if tc.during != nil {
				l.After(linkem.B, mid, func() { tc.during(l) })
			}
			if got := runRetrying(t, onA, "pull", b); got != version {
				t.Errorf("pull brought %s, the push made %s", got, version)
			}
			if treeDigest(a) != treeDigest(b) {
				t.Error("the pulled folder differs from the pushed one")
			}
			admin := []string{"FERRY_TOKEN=" + readAdminToken(t, data), "FERRY_FINGERPRINT=" + srv.fp}
			if o, err := onA(ferryCmd(admin, "check", "--read-data", "--remote", "quic://"+srv.addr)).CombinedOutput(); err != nil {
				t.Errorf("check after the transfers: %v\n%s", err, o)
			}
			t.Logf("A to B %+v", l.Stats(linkem.A))
			t.Logf("B to A %+v", l.Stats(linkem.B))
		})
	}
}

// runRetrying runs a push or a pull (--json) on side A until it succeeds,
// at most 3 times; a failure must be one that says to try again, and the
// next run resumes it. It returns the version the folder is at.
func runRetrying(t *testing.T, onA func(*exec.Cmd) *exec.Cmd, verb, dir string) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		// The production idle timeout (30 s), not the tests' 3 s: a link
		// that is down for 10 s is one a user's transfer survives.
		out, err := onA(ferryCmd([]string{"FERRY_IDLE_TIMEOUT=30s"}, "--json", verb, dir)).Output()
		var res struct {
			Version string `json:"version"`
		}
		if err == nil && json.Unmarshal(out, &res) == nil && res.Version != "" {
			t.Logf("%s: %s in %v (attempt %d)", verb, res.Version[:12], time.Since(start).Round(time.Millisecond), attempt)
			return res.Version
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Logf("%s attempt %d failed after %v: %s%s", verb, attempt, time.Since(start).Round(time.Millisecond), out, ee.Stderr)
		}
		if attempt == 3 || err == nil || !retryable(string(out)) {
			t.Fatalf("%s: %v\n%s", verb, err, out)
		}
	}
}

// retryable says whether a failure's message is one of a link, not of
// the data: the connection or the server timed out or went away.
func retryable(msg string) bool {
	for _, s := range []string{"timeout", "timed out", "unavailable", "did not answer", "no recent network activity", "connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
