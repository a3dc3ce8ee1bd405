package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInvite: `ferry invite` prints one string; `ferry init DIR --invite`
// sets up a second device with nothing else (no token, no fingerprint,
// no remote, no root), which then syncs both ways. The invite works once;
// a revoked one not at all; a read invite makes a receive-only device; a
// malformed one is a usage error.
func TestInvite(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	a := filepath.Join(tmp, "a")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("team"), "--root", "photos"); err != nil {
		t.Fatal(out)
	}
	pic := randomFile(t, filepath.Join(a, "2026", "beach.jpg"), 1<<20)
	if out, err := ferryRun(t, nil, "push", a); err != nil {
		t.Fatal(out)
	}
	invite := func(args ...string) (link, id string) {
		t.Helper()
		out, err := ferryCmd(nil, append([]string{"--json", "invite", a}, args...)...).Output()
		var res struct {
			Invite string `json:"invite"`
			Info   struct {
				ID   string `json:"id"`
				Root string `json:"root"`
			} `json:"info"`
		}
		if err != nil || json.Unmarshal(out, &res) != nil || res.Info.Root != "photos" || !strings.Contains(res.Invite, srv.fp) {
			t.Fatalf("invite %v: %v\n%s", args, err, out)
		}
		return res.Invite, res.Info.ID
	}
	link, _ := invite("--ttl", "1h")

	// The second device: nothing but the invite, and an environment
	// without token or fingerprint.
	b := filepath.Join(tmp, "b")
	out, err := ferryRun(t, nil, "init", b, "--invite", link)
	if err != nil || !strings.Contains(out, `joined root "photos" by invite`) || strings.Contains(out, "trusting") {
		t.Fatalf("init --invite: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "pull", b); err != nil {
		t.Fatalf("pull on the invited device: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(b, "2026", "beach.jpg")); err != nil || !bytes.Equal(got, pic) {
		t.Fatalf("the invited device did not get the file (%v)", err)
	}
	os.WriteFile(filepath.Join(b, "from-b.txt"), []byte("hello from b"), 0o644)
	if out, err := ferryRun(t, nil, "push", b); err != nil {
		t.Fatalf("push from the invited device: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "pull", a); err != nil {
		t.Fatal(out)
	}
	if got, _ := os.ReadFile(filepath.Join(a, "from-b.txt")); string(got) != "hello from b" {
		t.Fatalf("the first device did not get the invited device's file")
	}
	// The device token is b's own: the invite's token is not kept, and the
	// admin's list names the device token as invited.
	code, list, _ := runCLI(t, "--json", "token", "list", "--data", srv.data)
	if code != 0 || !strings.Contains(list, "invited by") {
		t.Errorf("token list after a redeemed invite:\n%s", list)
	}

	// Once only: the same invite again is refused (exit 12), and leaves
	// nothing behind.
	c := filepath.Join(tmp, "c")
	out, err = ferryRun(t, nil, "init", c, "--invite", link)
	if exitOf(err) != exitAuth || !strings.Contains(out, "used already") {
		t.Errorf("a used invite: %v (want exit %d)\n%s", err, exitAuth, out)
	}
	if _, err := os.Stat(filepath.Join(c, ".ferry")); !os.IsNotExist(err) {
		t.Errorf("a refused invite left %s/.ferry (%v)", c, err)
	}
	// Revoked before use: refused.
	link2, id2 := invite()
	if code, _, errs := runCLI(t, "token", "revoke", id2, "--data", srv.data); code != 0 {
		t.Fatalf("revoke the invite: %s", errs)
	}
	if out, err := ferryRun(t, nil, "init", c, "--invite", link2); exitOf(err) != exitAuth {
		t.Errorf("a revoked invite: %v (want exit %d)\n%s", err, exitAuth, out)
	}

	// A read invite: the device pulls and keeps its edits local.
	link3, _ := invite("--perm", "read")
	d := filepath.Join(tmp, "d")
	if out, err := ferryRun(t, nil, "init", d, "--invite", link3); err != nil {
		t.Fatalf("init --invite (read): %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "pull", d); err != nil {
		t.Fatalf("pull with a read invite's token: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(d, "mine.txt"), []byte("local"), 0o644)
	out, err = ferryRun(t, nil, "--json", "status", d)
	if err != nil || !strings.Contains(out, `"mode":"receive-only"`) {
		t.Errorf("status of a read-invited device: %v\n%s", err, out)
	}

	// Bad input: usage errors (exit 2), before anything is made.
	for _, args := range [][]string{
		{"init", filepath.Join(tmp, "e"), "--invite", "quic://nohost"},
		{"init", filepath.Join(tmp, "e"), "--invite", link, "--root", "other"},
		{"invite", a, "--perm", "admin"},
		{"invite", a, "--ttl", "1000h"},
	} {
		if out, err := ferryRun(t, nil, args...); exitOf(err) != exitUsage {
			t.Errorf("%v: %v (want exit %d)\n%s", args, err, exitUsage, out)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "e")); !os.IsNotExist(err) {
		t.Errorf("a bad invite made the folder (%v)", err)
	}
}

// exitOf is a finished command's exit code (0 when it did not fail).
func exitOf(err error) int {
	var ee *exec.ExitError
	if errorsAs(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}
