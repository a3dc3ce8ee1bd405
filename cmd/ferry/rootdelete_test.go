package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminRootDelete: an admin deletes a root; a folder synced with it is
// told the root is gone (its files untouched, nothing merged with "no
// head"), and 'config set root' starts it again from the folder.
func TestAdminRootDelete(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	dir := filepath.Join(tmp, "f")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	for _, n := range []string{"a.txt", "b.txt", "c.txt"} {
		os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644)
	}
	if out, err := ferryRun(t, nil, "push", dir); err != nil {
		t.Fatal(out)
	}
	code, out, errs := runCLI(t, "admin", "root", "delete", "team/r", "--data", srv.data)
	if code != 0 || !strings.Contains(out, "deleted root team/r") {
		t.Fatalf("root delete: %d %s %s", code, out, errs)
	}
	if _, out, _ := runCLI(t, "admin", "roots", "--data", srv.data); strings.Contains(out, "team/r ") {
		t.Errorf("the root is still listed:\n%s", out)
	}
	if code, _, errs := runCLI(t, "admin", "root", "delete", "team/r", "--data", srv.data); code != 1 || !strings.Contains(errs, "no root team/r") {
		t.Errorf("deleting it again: %d %s", code, errs)
	}

	os.WriteFile(filepath.Join(dir, "d.txt"), []byte("d"), 0o644)
	for _, verb := range []string{"push", "pull", "sync"} {
		out, err := ferryRun(t, nil, verb, dir)
		if err == nil || !strings.Contains(out, `no root "r" any more`) {
			t.Errorf("%s after the root was deleted: %v\n%s", verb, err, out)
		}
	}
	for _, n := range []string{"a.txt", "b.txt", "c.txt", "d.txt"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s is gone from the folder: %v", n, err)
		}
	}
	if out, err := ferryRun(t, nil, "status", dir); err != nil || !strings.Contains(out, "config set root r") {
		t.Errorf("status after the root was deleted: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "config", dir, "set", "root", "r"); err != nil {
		t.Fatal(out)
	}
	if out, err := ferryRun(t, nil, "push", dir); err != nil {
		t.Fatalf("push after config set root: %v\n%s", err, out)
	}
	if _, out, _ := runCLI(t, "admin", "roots", "--data", srv.data); !strings.Contains(out, "team/r ") {
		t.Errorf("the root did not come back:\n%s", out)
	}
}

// TestAdminPolicyDryRun: admin policy --dry-run previews what a policy
// (given, or the namespace's own) would forget in each root, and forgets
// nothing.
func TestAdminPolicyDryRun(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	dir := filepath.Join(tmp, "f")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	for i := range 4 {
		os.WriteFile(filepath.Join(dir, "f.txt"), []byte{byte('a' + i)}, 0o644)
		if out, err := ferryRun(t, nil, "push", dir); err != nil {
			t.Fatal(out)
		}
	}
	preview := func(args ...string) (keep, remove int) {
		t.Helper()
		code, out, errs := runCLI(t, append([]string{"--json", "admin", "policy", "team", "--dry-run", "--data", srv.data}, args...)...)
		var res []struct {
			Root   string `json:"root"`
			Keep   []any  `json:"keep"`
			Remove []any  `json:"remove"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res) != 1 || res[0].Root != "r" {
			t.Fatalf("policy --dry-run %v: %d %s %s", args, code, out, errs)
		}
		return len(res[0].Keep), len(res[0].Remove)
	}
	if keep, remove := preview("--keep-last", "1"); keep != 1 || remove != 3 {
		t.Errorf("preview of keep-last 1: keep %d, remove %d", keep, remove)
	}
	if code, _, errs := runCLI(t, "admin", "policy", "team", "--dry-run", "--data", srv.data); code == 0 || !strings.Contains(errs, "no retention policy") {
		t.Errorf("preview with no policy: %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, "admin", "policy", "team", "--keep-last", "2", "--data", srv.data); code != 0 {
		t.Fatal(errs)
	}
	if keep, remove := preview(); keep != 2 || remove != 2 {
		t.Errorf("preview of the stored keep-last 2: keep %d, remove %d", keep, remove)
	}
	if out, _ := ferryRun(t, nil, "log", dir); strings.Count(out, "\n") != 4 {
		t.Errorf("a preview forgot versions:\n%s", out)
	}
}
