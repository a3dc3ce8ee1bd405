package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestQuotaRefusesPush: a namespace over its quota gets EQUOTA (midway,
// blob by blob; and, when already full, before anything is sent), while
// another namespace on the same server pushes on.
func TestQuotaRefusesPush(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	folder := func(ns string) string {
		dir := filepath.Join(tmp, ns)
		env := []string{"FERRY_TOKEN=" + srv.token(ns, "write"), "FERRY_FINGERPRINT=" + srv.fp}
		if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url(ns), "--root", "r"); err != nil {
			t.Fatal(out)
		}
		return dir
	}
	small, big := folder("small"), folder("big")
	quota := func(set string) string {
		args := []string{"--json", "admin", "quota", "small", "--data", srv.data}
		if set != "" {
			args = append(args, "--set", set)
		}
		out, err := ferryRun(t, nil, args...)
		if err != nil {
			t.Fatalf("admin quota: %v\n%s", err, out)
		}
		return out
	}
	quota("1.5MiB")
	randomFile(t, filepath.Join(small, "one.bin"), 1<<20)
	if out, err := ferryRun(t, nil, "push", small); err != nil {
		t.Fatalf("a push within the quota: %v\n%s", err, out)
	}
	randomFile(t, filepath.Join(small, "two.bin"), 1<<20)
	out, err := ferryRun(t, nil, "push", small)
	if err == nil || !strings.Contains(out, "EQUOTA") {
		t.Fatalf("a push past the quota: %v\n%s", err, out)
	}
	// Full to the byte: the next push is refused before it sends anything.
	var q struct {
		Used int64 `json:"used_bytes"`
	}
	// The chunks that fitted before the refusal count (in flight, until
	// a commit names them or a collection takes them), never past it.
	if err := json.Unmarshal([]byte(quota("")), &q); err != nil || q.Used < 1<<20 || q.Used > 3<<19 {
		t.Fatalf("usage %d after a refused push (%v), want between 1 and 1.5 MiB", q.Used, err)
	}
	quota(fmt.Sprint(q.Used))
	out, err = ferryRun(t, nil, "--json", "push", small)
	if err == nil || !strings.Contains(out, "nothing was sent") {
		t.Fatalf("a push into a full namespace: %v\n%s", err, out)
	}
	// The other namespace is not affected.
	randomFile(t, filepath.Join(big, "three.bin"), 3<<20)
	if out, err := ferryRun(t, nil, "push", big); err != nil {
		t.Fatalf("another namespace: %v\n%s", err, out)
	}
	// Raising the quota lets the push through.
	quota("none")
	if out, err := ferryRun(t, nil, "push", small); err != nil {
		t.Fatalf("a push after the quota was removed: %v\n%s", err, out)
	}
}

// TestServerAppliesRetentionPolicy: an admin sets a namespace's policy;
// the server's scheduled maintenance forgets what it does not keep and
// collects it, while the head stays and restores.
func TestServerAppliesRetentionPolicy(t *testing.T) {
	tmp := t.TempDir()
	srv := startServeArgs(t, filepath.Join(tmp, "data"), "127.0.0.1:0", nil, "--gc-every=300ms", "--gc-grace=1ns")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	dir := filepath.Join(tmp, "f")
	if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	for i := range 3 {
		os.WriteFile(filepath.Join(dir, "f.txt"), []byte(fmt.Sprint("version ", i)), 0o644)
		if out, err := ferryRun(t, nil, "push", dir); err != nil {
			t.Fatal(out)
		}
	}
	out, err := ferryRun(t, nil, "admin", "policy", "team", "--data", srv.data)
	if err != nil || !strings.Contains(out, "no retention policy") {
		t.Fatalf("policy before: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "admin", "policy", "team", "--data", srv.data, "--keep-last", "1"); err != nil || !strings.Contains(out, "1 latest") {
		t.Fatalf("policy set: %v\n%s", err, out)
	}
	versions := func() int {
		out, err := ferryCmd(nil, "--json", "log", dir).Output()
		if err != nil {
			t.Fatalf("log: %v", err)
		}
		var l []any
		json.Unmarshal(out, &l)
		return len(l)
	}
	deadline := time.Now().Add(20 * time.Second)
	for versions() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the server kept %d versions 20 s after a keep-last 1 policy", versions())
		}
		time.Sleep(100 * time.Millisecond) // the schedule runs every 300 ms: waiting for it is the scenario
	}
	to := filepath.Join(tmp, "r")
	if out, err := ferryRun(t, nil, "restore", dir, "--version", "head", "--to", to); err != nil {
		t.Fatal(out)
	}
	if b, _ := os.ReadFile(filepath.Join(to, "f.txt")); string(b) != "version 2" {
		t.Fatalf("head restores %q", b)
	}
	if out, err := ferryRun(t, nil, "admin", "policy", "team", "--data", srv.data, "--clear"); err != nil || !strings.Contains(out, "no retention policy") {
		t.Fatalf("policy clear: %v\n%s", err, out)
	}
}

// TestManualGCAppliesPolicies: a collection an admin asks for applies the
// namespaces' retention policies first, as a scheduled one does, and says
// so.
func TestManualGCAppliesPolicies(t *testing.T) {
	tmp := t.TempDir()
	srv := startServeArgs(t, filepath.Join(tmp, "data"), "127.0.0.1:0", nil, "--gc-every=0", "--gc-grace=1ns")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	dir := filepath.Join(tmp, "f")
	if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("team")); err != nil {
		t.Fatal(out)
	}
	for i := range 3 {
		os.WriteFile(filepath.Join(dir, "f.txt"), []byte(fmt.Sprint("version ", i)), 0o644)
		if out, err := ferryRun(t, nil, "push", dir); err != nil {
			t.Fatal(out)
		}
	}
	if out, err := ferryRun(t, nil, "admin", "policy", "team", "--data", srv.data, "--keep-last", "1"); err != nil {
		t.Fatalf("policy set: %v\n%s", err, out)
	}
	out, err := ferryRun(t, nil, "gc", "--data", srv.data)
	if err != nil || !strings.Contains(out, "applied 1 namespaces' retention policies first: 2 versions forgotten") {
		t.Fatalf("gc: %v\n%s", err, out)
	}
	log, err := ferryCmd(nil, "--json", "log", dir).Output()
	var l []any
	if err != nil || json.Unmarshal(log, &l) != nil || len(l) != 1 {
		t.Fatalf("after gc with a keep-last 1 policy: %v %s", err, log)
	}
}
