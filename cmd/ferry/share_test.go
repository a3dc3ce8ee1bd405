package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShareLinks: a share link downloads one file (or one directory)
// without a synced folder and nothing else of the namespace; --extend and
// --revoke work; an expired link stops working and its data becomes
// collectable; a live one keeps its data through forget and gc.
func TestShareLinks(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	dir := filepath.Join(tmp, "f")
	if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	report := randomFile(t, filepath.Join(dir, "docs", "report.pdf"), 2<<20)
	os.WriteFile(filepath.Join(dir, "docs", "notes.txt"), []byte("notes"), 0o644)
	secret := randomFile(t, filepath.Join(dir, "private.bin"), 1<<20)
	if out, err := ferryRun(t, nil, "push", dir); err != nil {
		t.Fatal(out)
	}
	share := func(args ...string) (link, id string) {
		t.Helper()
		out, err := ferryCmd(nil, append([]string{"--json", "share", dir}, args...)...).Output()
		if err != nil {
			t.Fatalf("share %v: %v\n%s", args, err, out)
		}
		var res struct {
			Link  string `json:"link"`
			Share struct {
				ID string `json:"id"`
			} `json:"share"`
		}
		if err := json.Unmarshal(out, &res); err != nil || !strings.HasPrefix(res.Link, "quic://") {
			t.Fatalf("share %v: %s", args, out)
		}
		return res.Link, res.Share.ID
	}
	fileLink, fileID := share("docs/report.pdf", "--ttl", "1h")
	dirLink, _ := share("docs", "--ttl", "1h")

	// A dry run names what it would write, and writes nothing.
	got := filepath.Join(tmp, "out", "report.pdf")
	if out, err := ferryRun(t, nil, "get", fileLink, "--to", got, "--dry-run"); err != nil || !strings.Contains(out, "would write  report.pdf (2.0 MiB)") {
		t.Fatalf("get --dry-run: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(tmp, "out")); !os.IsNotExist(err) {
		t.Fatalf("get --dry-run made %s (%v)", filepath.Join(tmp, "out"), err)
	}
	// The file, by link alone: no folder, no token in the environment.
	if out, err := ferryRun(t, nil, "get", fileLink, "--to", got); err != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, report) {
		t.Fatalf("the shared file did not arrive whole (%v)", err)
	}
	// A file already there stays unless --force says otherwise.
	os.WriteFile(got, []byte("mine"), 0o644)
	if out, err := ferryRun(t, nil, "get", fileLink, "--to", got); err == nil || !strings.Contains(out, "--force") {
		t.Fatalf("get over an existing file: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(got); string(b) != "mine" {
		t.Fatalf("get without --force replaced the file there")
	}
	if out, err := ferryRun(t, nil, "get", fileLink, "--to", got, "--force"); err != nil {
		t.Fatalf("get --force: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, report) {
		t.Fatalf("get --force did not replace the file")
	}
	gotDir := filepath.Join(tmp, "out", "docs")
	if out, err := ferryRun(t, nil, "get", dirLink, "--to", gotDir); err != nil {
		t.Fatalf("get dir: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(gotDir, "notes.txt")); string(b) != "notes" {
		t.Fatalf("the shared directory did not arrive")
	}
	if _, err := os.Stat(filepath.Join(tmp, "out", "private.bin")); err == nil || bytes.Contains(mustRead(t, gotDir), secret[:64]) {
		t.Fatal("something outside the share arrived")
	}

	// Extend, list, revoke.
	if out, err := ferryRun(t, nil, "share", dir, "--extend", fileID, "--ttl", "48h"); err != nil {
		t.Fatalf("extend: %v\n%s", err, out)
	}
	out, err := ferryRun(t, nil, "share", dir, "--list")
	if err != nil || !strings.Contains(out, fileID) || !strings.Contains(out, "report.pdf") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "share", dir, "--revoke", fileID); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	out, err = ferryRun(t, nil, "get", fileLink, "--to", filepath.Join(tmp, "again"))
	if err == nil || !strings.Contains(out, "EAUTH") {
		t.Fatalf("get of a revoked link: %v\n%s", err, out)
	}

	// A share of a file that is then deleted and forgotten keeps its data
	// while it lives, and loses it once it expires.
	shortLink, _ := share("private.bin", "--ttl", "10s")
	os.Remove(filepath.Join(dir, "private.bin"))
	if out, err := ferryRun(t, nil, "push", dir); err != nil {
		t.Fatal(out)
	}
	if out, err := ferryRun(t, nil, "forget", dir, "--keep-last", "1"); err != nil {
		t.Fatal(out)
	}
	gc := func() int {
		t.Helper()
		out, err := ferryCmd(nil, "--json", "gc", "--data", srv.data, "--grace", "0s").Output()
		if err != nil {
			t.Fatalf("gc: %v\n%s", err, out)
		}
		var st struct {
			Blobs int `json:"blobs_deleted"`
		}
		json.Unmarshal(out, &st)
		return st.Blobs
	}
	gc()
	live := filepath.Join(tmp, "live.bin")
	if out, err := ferryRun(t, nil, "get", shortLink, "--to", live); err != nil {
		t.Fatalf("a live share after forget and gc: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(live); !bytes.Equal(b, secret) {
		t.Fatal("a live share's file did not survive gc")
	}
	// Expiry is by the server's clock; the link is good for 10 s (long
	// enough for the steps above under the race detector).
	deadline := time.Now().Add(40 * time.Second)
	for {
		out, err = ferryRun(t, nil, "get", shortLink, "--to", filepath.Join(tmp, "late.bin"), "--force")
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the link still works 30 s after it expired")
		}
		time.Sleep(200 * time.Millisecond) // waiting for the server's clock to pass the expiry: the scenario itself
	}
	if !strings.Contains(out, "expired") {
		t.Fatalf("get of an expired link: %s", out)
	}
	if n := gc(); n == 0 {
		t.Error("the expired share's data was not collected")
	}
	if out, err := ferryRun(t, nil, "check", dir, "--read-data"); err != nil {
		t.Fatalf("check after gc: %v\n%s", err, out)
	}
}

func mustRead(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			all = append(all, b...)
		}
		return nil
	})
	return all
}
