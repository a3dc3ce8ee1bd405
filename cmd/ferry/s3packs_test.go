package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-sync/ferry/internal/s3test"
)

// TestServeS3Packs: `ferry serve --packs s3://...` keeps its packs in a
// real S3 server (versitygw). A push from one device pulls bit-exact on
// another; with the server's local packs deleted and the server
// restarted, a third device still pulls everything, from S3; a bucket
// that does not answer fails the start.
func TestServeS3Packs(t *testing.T) {
	tmp := t.TempDir()
	s3 := s3test.Start(t, "packs")
	data := filepath.Join(tmp, "data")
	packs := "s3://packs/ferry?endpoint=" + s3.Endpoint + "&region=" + s3test.Region
	args := []string{"--packs", packs, "--pack-cache", "1"}
	srv := startServeArgs(t, data, "127.0.0.1:0", s3.Env(), args...)
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	a := filepath.Join(tmp, "a")
	if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	big := randomFile(t, filepath.Join(a, "big.bin"), 5<<20)
	os.WriteFile(filepath.Join(a, "small.txt"), []byte("small"), 0o644)
	if out, err := ferryRun(t, nil, "push", a); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	pull := func(name string, s *serverProc) {
		t.Helper()
		d := filepath.Join(tmp, name)
		if out, err := ferryRun(t, env, "init", d, "--remote", s.url("team"), "--root", "r"); err != nil {
			t.Fatal(out)
		}
		if out, err := ferryRun(t, nil, "pull", d); err != nil {
			t.Fatalf("pull into %s: %v\n%s", name, err, out)
		}
		if got, err := os.ReadFile(filepath.Join(d, "big.bin")); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("%s: big.bin is not what was pushed (%v)", name, err)
		}
	}
	pull("b", srv)
	objects, _ := filepath.Glob(filepath.Join(s3.Dir, "packs", "ferry", "*.pack"))
	if len(objects) == 0 {
		t.Fatalf("no pack objects in the bucket (%s)", s3.Dir)
	}

	addr := srv.addr
	srv.kill()
	local, _ := filepath.Glob(filepath.Join(data, "store", "packs", "*.pack"))
	for _, p := range local {
		os.Remove(p)
	}
	srv = startServeArgs(t, data, addr, s3.Env(), args...)
	pull("c", srv)

	// A bucket that does not answer fails the start, saying so.
	srv.kill()
	s3.Stop()
	cmd := ferryCmd(append(s3.Env(), "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true"), append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--min-free", "16MiB"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--packs") {
		t.Errorf("serve with the bucket down: %v\n%s", err, out)
	}
}

// TestAdminMigratePacks: a stopped server's packs move into S3 and back
// with `ferry admin migrate`; in between it serves from the bucket alone
// (its local packs deleted), and after it serves with S3 down.
func TestAdminMigratePacks(t *testing.T) {
	tmp := t.TempDir()
	s3 := s3test.Start(t, "packs")
	for _, kv := range s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // the in-process migrate reads the AWS_* variables
	}
	data := filepath.Join(tmp, "data")
	srv := startServe(t, data)
	addr := srv.addr
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	a := filepath.Join(tmp, "a")
	if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	big := randomFile(t, filepath.Join(a, "big.bin"), 3<<20)
	if out, err := ferryRun(t, nil, "push", a); err != nil {
		t.Fatal(out)
	}
	pullCheck := func(name string) {
		t.Helper()
		d := filepath.Join(tmp, name)
		if out, err := ferryRun(t, env, "init", d, "--remote", "quic://"+addr+"/team", "--root", "r"); err != nil {
			t.Fatal(out)
		}
		if out, err := ferryRun(t, nil, "pull", d); err != nil {
			t.Fatalf("pull into %s: %v\n%s", name, err, out)
		}
		if got, err := os.ReadFile(filepath.Join(d, "big.bin")); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("%s: big.bin differs (%v)", name, err)
		}
	}
	packs := "s3://packs/migrated?endpoint=" + s3.Endpoint + "&region=" + s3test.Region
	if code, _, errs := runCLI(t, "admin", "migrate", "--data", data, "--to-packs", packs); code != exitLocked {
		t.Errorf("migrate with the server running: exit %d (want %d) %s", code, exitLocked, errs)
	}
	srv.kill()
	if code, out, errs := runCLI(t, "admin", "migrate", "--data", data, "--to-packs", packs); code != 0 || !strings.Contains(out, "compared after its upload") {
		t.Fatalf("migrate out: %d %s %s", code, out, errs)
	}
	local, _ := filepath.Glob(filepath.Join(data, "store", "packs", "*.pack"))
	for _, p := range local {
		os.Remove(p)
	}
	srv = startServeArgs(t, data, addr, s3.Env(), "--packs", packs, "--pack-cache", "1")
	pullCheck("b")
	srv.kill()
	if code, out, errs := runCLI(t, "admin", "migrate", "--data", data, "--to-local", "--packs", packs); code != 0 || !strings.Contains(out, "re-hashed") {
		t.Fatalf("migrate in: %d %s %s", code, out, errs)
	}
	s3.Stop()
	srv = startServeAt(t, data, addr)
	pullCheck("c")
}
