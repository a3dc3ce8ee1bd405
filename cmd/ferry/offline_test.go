package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOfflineCommands: with the server gone, status, diff, conflicts and
// ls answer from what the folder knows (local changes against the base,
// the base's entries) and say the server is unreachable, within the idle
// timeout rather than the handshake's 10 s; commands that need the server
// fail with that reason.
func TestOfflineCommands(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	dir := filepath.Join(tmp, "f")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	os.WriteFile(filepath.Join(dir, "kept.txt"), []byte("synced"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "deep.txt"), []byte("deep"), 0o644)
	if out, err := ferryRun(t, nil, "push", dir); err != nil {
		t.Fatal(out)
	}
	srv.kill()
	os.WriteFile(filepath.Join(dir, "new.txt"), []byte("offline edit"), 0o644)
	os.WriteFile(filepath.Join(dir, "kept.txt"), []byte("changed offline"), 0o644)

	offline := []string{"FERRY_IDLE_TIMEOUT=2s"}
	run := func(args ...string) (string, error, time.Duration) {
		start := time.Now()
		out, err := ferryRun(t, offline, args...)
		return out, err, time.Since(start)
	}
	out, err, took := run("status", dir)
	if err != nil || !strings.Contains(out, "unreachable") || !strings.Contains(out, "+ new.txt") || !strings.Contains(out, "M kept.txt") {
		t.Errorf("offline status: %v\n%s", err, out)
	}
	if took > 8*time.Second {
		t.Errorf("offline status took %s with a 2s idle timeout", took)
	}
	out, err, _ = run("--json", "status", dir)
	var st struct {
		Offline      bool   `json:"offline"`
		Head         string `json:"head"`
		Base         string `json:"base"`
		LocalChanges []any  `json:"local_changes"`
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || !st.Offline || st.Head != "" || st.Base == "" || len(st.LocalChanges) != 2 {
		t.Errorf("offline status --json: %v\n%s", err, out)
	}
	out, err, _ = run("diff", dir)
	if err != nil || !strings.Contains(out, "new.txt") || !strings.Contains(out, "kept.txt") || !strings.Contains(out, "unreachable") {
		t.Errorf("offline diff: %v\n%s", err, out)
	}
	out, err, _ = run("diff", dir, "base")
	if err != nil || !strings.Contains(out, "new.txt") {
		t.Errorf("offline diff base: %v\n%s", err, out)
	}
	out, err, _ = run("ls", dir, "-R")
	if err != nil || !strings.Contains(out, "sub/deep.txt") || strings.Contains(out, "new.txt") {
		t.Errorf("offline ls of the base: %v\n%s", err, out)
	}
	if out, err, _ = run("conflicts", dir); err != nil {
		t.Errorf("offline conflicts: %v\n%s", err, out)
	}
	// What needs the server says why it failed.
	for _, verb := range []string{"push", "log"} {
		if out, err, _ = run(verb, dir); err == nil || !strings.Contains(out, "unreachable") {
			t.Errorf("offline %s: %v\n%s", verb, err, out)
		}
	}
	if out, err, _ = run("ls", dir, "--version", "head~1"); err == nil || !strings.Contains(out, "unreachable") {
		t.Errorf("offline ls of another version: %v\n%s", err, out)
	}
}
