package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeForgetGCCheck: on a live server, forget drops versions, an
// admin's gc returns their space while the server serves, a namespace's
// token checks its namespace and the admin token the whole store, and the
// head restores exactly.
func TestServeForgetGCCheck(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	tok := srv.token("team", "write")
	env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}
	dir := filepath.Join(tmp, "f")
	if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	var last []byte
	for range 4 {
		last = randomFile(t, filepath.Join(dir, "data.bin"), 3<<20)
		if out, err := ferryRun(t, nil, "push", dir); err != nil {
			t.Fatalf("push: %v\n%s", err, out)
		}
	}
	out, err := ferryRun(t, nil, "--json", "forget", dir, "--keep-last", "1")
	if err != nil {
		t.Fatalf("forget: %v\n%s", err, out)
	}
	var fr struct{ Keep, Remove []any }
	if err := json.Unmarshal([]byte(out), &fr); err != nil || len(fr.Keep) != 1 || len(fr.Remove) != 3 {
		t.Fatalf("forget kept %d, removed %d (%v): %s", len(fr.Keep), len(fr.Remove), err, out)
	}

	// A write token may not collect the whole store.
	out, err = ferryRun(t, env, "gc", "--remote", "quic://"+srv.addr, "--grace", "0s")
	if err == nil || !strings.Contains(out, "admin") {
		t.Fatalf("gc with a namespace token: %v\n%s", err, out)
	}
	cmd := ferryCmd(nil, "--json", "gc", "--data", srv.data, "--grace", "0s")
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("gc: %v\n%s", err, stdout)
	}
	var st struct {
		Blobs int   `json:"blobs_deleted"`
		Freed int64 `json:"disk_bytes_freed"`
	}
	if err := json.Unmarshal(stdout, &st); err != nil || st.Blobs == 0 || st.Freed < 6<<20 {
		t.Fatalf("gc deleted %d blobs and freed %d bytes (%v), want 9 MiB of forgotten data: %s", st.Blobs, st.Freed, err, stdout)
	}

	// The folder's own token checks its namespace, re-reading its chunks.
	out, err = ferryRun(t, nil, "check", dir, "--read-data")
	if err != nil || !strings.Contains(out, "no damage found") {
		t.Fatalf("check with the folder's token: %v\n%s", err, out)
	}
	admin, err := os.ReadFile(filepath.Join(srv.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = ferryRun(t, []string{"FERRY_TOKEN=" + strings.TrimSpace(string(admin)), "FERRY_FINGERPRINT=" + srv.fp},
		"--json", "check", "--remote", "quic://"+srv.addr, "--read-data")
	if err != nil || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("check of the whole store: %v\n%s", err, out)
	}
	to := filepath.Join(tmp, "restored")
	if out, err := ferryRun(t, nil, "restore", dir, "--version", "head", "--to", to); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(to, "data.bin"))
	if err != nil || !bytes.Equal(got, last) {
		t.Fatalf("the head does not restore exactly after gc (%v)", err)
	}
}
