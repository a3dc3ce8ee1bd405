package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokenPrecedence: the folder's own token wins over FERRY_TOKEN (which
// is for init and folders without one), --token-file wins over both, and
// an unreadable --token-file is an error, not a silent fall back.
func TestTokenPrecedence(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	tokA, tokB := srv.token("alpha", "write"), srv.token("beta", "write")
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	fp := "FERRY_FINGERPRINT=" + srv.fp
	for _, step := range []struct {
		tok  string
		args []string
	}{
		{tokA, []string{"init", a, "--remote", srv.url("alpha")}},
		{tokB, []string{"init", b, "--remote", srv.url("beta")}},
	} {
		if out, err := ferryRun(t, []string{"FERRY_TOKEN=" + step.tok, fp}, step.args...); err != nil {
			t.Fatalf("%v: %v\n%s", step.args, err, out)
		}
	}
	os.WriteFile(filepath.Join(a, "f"), []byte("alpha's"), 0o644)
	// The README's 'export FERRY_TOKEN=...' for beta must not break alpha.
	if out, err := ferryRun(t, []string{"FERRY_TOKEN=" + tokB}, "push", a); err != nil {
		t.Fatalf("push of alpha's folder with beta's FERRY_TOKEN exported: %v\n%s", err, out)
	}
	fileB := filepath.Join(tmp, "beta.token")
	os.WriteFile(fileB, []byte(tokB+"\n"), 0o600)
	out, err := ferryRun(t, nil, "--token-file", fileB, "push", a)
	if err == nil || !strings.Contains(out, "not for namespace") {
		t.Fatalf("--token-file of beta for alpha's folder: %v\n%s; want the server's refusal", err, out)
	}
	for _, bad := range []string{filepath.Join(tmp, "nosuch.token"), tmp} {
		code, _, errs := runCLI(t, "--token-file", bad, "push", a)
		if code != exitUsage || !strings.Contains(errs, "--token-file") {
			t.Errorf("--token-file %s: exit %d, %q; want exit %d naming --token-file", bad, code, errs, exitUsage)
		}
	}
}

// TestReadOnlyTokenEmptyNamespace: a device with a read token, on a
// namespace nothing was pushed to, is told so, not about polynomials.
func TestReadOnlyTokenEmptyNamespace(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	env := []string{"FERRY_TOKEN=" + srv.token("empty", "read"), "FERRY_FINGERPRINT=" + srv.fp}
	dir := filepath.Join(tmp, "r")
	out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("empty"))
	if err != nil {
		t.Fatalf("init with a read token: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "local.txt"), []byte("x"), 0o644)
	for _, verb := range []string{"pull", "sync", "push", "status"} {
		out, err = ferryRun(t, env, verb, dir)
		t.Logf("%s: %v\n%s", verb, err, out)
		if !strings.Contains(out, "read-only token: nothing to pull yet") || strings.Contains(out, "polynomial") {
			t.Errorf("%s with a read token of an empty namespace: %v\n%s", verb, err, out)
		}
	}
}

// TestAuthExitCode: a refused token exits 12, at init and afterwards.
func TestAuthExitCode(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	fp := "FERRY_FINGERPRINT=" + srv.fp
	dir := filepath.Join(tmp, "f")
	code := func(err error) int {
		var ee *exec.ExitError
		if errorsAs(err, &ee) {
			return ee.ExitCode()
		}
		return 0
	}
	out, err := ferryRun(t, []string{"FERRY_TOKEN=ferry_nosuchtoken", fp}, "init", dir, "--remote", srv.url("n"))
	if code(err) != exitAuth {
		t.Errorf("init with an unknown token: %v (want exit %d)\n%s", err, exitAuth, out)
	}
	out, err = ferryRun(t, []string{"FERRY_TOKEN=" + srv.token("other", "write"), fp}, "init", dir, "--remote", srv.url("n"))
	if code(err) != exitAuth || !strings.Contains(out, "not for namespace") {
		t.Errorf("init with another namespace's token: %v (want exit %d)\n%s", err, exitAuth, out)
	}
}

// TestReadOnlyTokenIsReceiveOnly: a device with a read token pulls, keeps
// its own edits local, and pulls again after the remote moves, rather
// than try to push a merge and fail with EPERM forever.
func TestReadOnlyTokenIsReceiveOnly(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	fp := "FERRY_FINGERPRINT=" + srv.fp
	w, r := filepath.Join(tmp, "w"), filepath.Join(tmp, "r")
	os.MkdirAll(w, 0o755)
	os.WriteFile(filepath.Join(w, "a"), []byte("v1"), 0o644)
	run := func(tok string, args ...string) string {
		t.Helper()
		out, err := ferryRun(t, []string{"FERRY_TOKEN=" + tok, fp}, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	wt, rt := srv.token("n", "write"), srv.token("n", "read")
	run(wt, "init", w, "--remote", srv.url("n"))
	run(wt, "push", w)
	run(rt, "init", r, "--remote", srv.url("n"))
	run(rt, "pull", r)
	os.WriteFile(filepath.Join(r, "mine"), []byte("the reader's"), 0o644)
	os.WriteFile(filepath.Join(w, "a"), []byte("v2"), 0o644)
	run(wt, "push", w)
	if out := run(rt, "pull", r); strings.Contains(out, "permission") {
		t.Fatalf("pull of a read-only device with local changes:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(r, "a")); string(b) != "v2" {
		t.Errorf("the read-only device did not receive v2: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(r, "mine")); string(b) != "the reader's" {
		t.Errorf("the read-only device's own file: %q", b)
	}
	if out := run(rt, "status", r); !strings.Contains(out, "local only") {
		t.Errorf("status of the read-only device:\n%s", out)
	}
	out, err := ferryRun(t, nil, "push", r)
	if err == nil || !strings.Contains(out, "receive-only (its token is read-only)") {
		t.Errorf("push from a read-only device: %v\n%s", err, out)
	}
}
