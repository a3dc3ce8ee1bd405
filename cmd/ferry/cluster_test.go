package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/internal/pgtest"
	"github.com/ferry-sync/ferry/internal/s3test"
)

// cluster is real `ferry serve` processes sharing one PostgreSQL database
// (--meta) and one versitygw bucket (--store), on 127.0.0.1.
type cluster struct {
	pg      *pgtest.Server
	s3      *s3test.Server
	args    []string
	members []*serverProc
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{pg: pgtest.Start(t), s3: s3test.Start(t, "packs")}
	c.args = []string{"--store", "s3://packs/cluster?endpoint=" + c.s3.Endpoint + "&region=" + s3test.Region,
		"--meta", c.pg.NewDB(t), "--pack-cache", "1MiB"}
	for i := range n {
		c.members = append(c.members, startServeArgs(t, filepath.Join(t.TempDir(), "data"+string(rune('a'+i))), "127.0.0.1:0", c.s3.Env(), c.args...))
	}
	return c
}

// url lists every member, as a client of the cluster names it.
func (c *cluster) url(ns string) string {
	var addrs []string
	for _, m := range c.members {
		addrs = append(addrs, m.addr)
	}
	return "quic://" + strings.Join(addrs, ",") + "/" + ns
}

// TestCluster: two servers over one database and one bucket are one
// service. They present one certificate and one admin token; a token
// made through one works on the other; a push through A pulls bit-exact
// through B; a watcher connected to B follows a push through A (its
// rescan is an hour away, so only the cross-server notification can
// bring it); and a client of both that loses its server mid-push (kill
// -9) finishes on the other.
func TestCluster(t *testing.T) {
	tmp := t.TempDir()
	c := startCluster(t, 2)
	a, b := c.members[0], c.members[1]
	if a.fp != b.fp {
		t.Fatalf("the servers present two certificates: %s and %s", a.fp, b.fp)
	}
	ta, _ := os.ReadFile(a.info.AdminToken)
	tb, _ := os.ReadFile(b.info.AdminToken)
	if len(ta) == 0 || !bytes.Equal(ta, tb) {
		t.Fatalf("the servers have two admin tokens")
	}
	env := []string{"FERRY_TOKEN=" + a.token("team", "write"), "FERRY_FINGERPRINT=" + a.fp}
	run := func(args ...string) string {
		t.Helper()
		out, err := ferryRun(t, env, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	da, db := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	run("init", da, "--remote", a.url("team"), "--root", "r")
	big := randomFile(t, filepath.Join(da, "big.bin"), 6<<20)
	os.WriteFile(filepath.Join(da, "small.txt"), []byte("small"), 0o644)
	run("push", da)
	run("init", db, "--remote", b.url("team"), "--root", "r")
	run("pull", db)
	if got, err := os.ReadFile(filepath.Join(db, "big.bin")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("pulled through B: big.bin is not what was pushed through A (%v)", err)
	}

	w := startWatch(t, db)
	os.WriteFile(filepath.Join(da, "later.txt"), []byte("pushed through A"), 0o644)
	pushed := time.Now()
	run("push", da)
	eventually(t, w, 20*time.Second, "the watcher on B pulling A's push", fileIs(filepath.Join(db, "later.txt"), "pushed through A"))
	t.Logf("a push through A reached the watcher on B %v after the push began", time.Since(pushed).Round(time.Millisecond))

	// Failover: the client freezes after sending a few blobs, the server
	// it is connected to dies, and the client, resumed, finishes on the
	// other server.
	dc := filepath.Join(tmp, "c")
	run("init", dc, "--remote", c.url("team"), "--root", "c", "--new-root")
	third := randomFile(t, filepath.Join(dc, "third.bin"), 24<<20)
	cmd := ferryCmd(append(env, "FERRY_FAILPOINT=client-blob-sent=4:stop"), "-v", "push", dc)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitStopped(t, cmd.Process.Pid) {
		t.Fatalf("the push ended before its failpoint: %s", out.String())
	}
	var cfg struct {
		Device string `json:"device"`
	}
	if b, err := os.ReadFile(filepath.Join(dc, ".ferry", "config")); err != nil || json.Unmarshal(b, &cfg) != nil || cfg.Device == "" {
		t.Fatalf("the folder's device: %v", err)
	}
	victim := -1
	for i, m := range c.members {
		list, err := ferryRun(t, nil, "--json", "admin", "clients", "--data", m.data)
		if err != nil {
			t.Fatalf("admin clients: %v\n%s", err, list)
		}
		var clients []map[string]any
		if err := json.Unmarshal([]byte(list), &clients); err != nil {
			t.Fatalf("admin clients: %v\n%s", err, list)
		}
		for _, ci := range clients {
			if ci["device"] == cfg.Device {
				victim = i
			}
		}
	}
	if victim < 0 {
		t.Fatal("the frozen push is connected to neither server")
	}
	c.members[victim].kill()
	cmd.Process.Signal(syscall.SIGCONT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("push after its server died: %v\n%s", err, out.String())
	}
	t.Logf("push across the death of server %d:\n%s", victim, out.String())
	if !strings.Contains(out.String(), "went on with another server of the cluster") {
		t.Errorf("the push does not say it failed over:\n%s", out.String())
	}
	survivor := c.members[1-victim]
	dd := filepath.Join(tmp, "d")
	run("init", dd, "--remote", survivor.url("team"), "--root", "c")
	run("pull", dd)
	if got, err := os.ReadFile(filepath.Join(dd, "third.bin")); err != nil || !bytes.Equal(got, third) {
		t.Fatalf("the push that failed over does not pull bit-exact (%v)", err)
	}
	run("check", "--read-data", dd)
}

// TestAdminMigrateToCluster: a single server's store moves into a
// cluster's layout (packs to S3, records to PostgreSQL) with one `admin
// migrate`, each verified. The old directory alone is then refused, not
// served stale; served with --store and --meta it keeps its fingerprint
// and tokens, a second member serves the same data, and the whole store
// moves back into a fresh directory that serves it alone.
func TestAdminMigrateToCluster(t *testing.T) {
	tmp := t.TempDir()
	pg := pgtest.Start(t)
	s3 := s3test.Start(t, "packs")
	for _, kv := range s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // the in-process migrate reads the AWS_* variables
	}
	dsn := pg.NewDB(t)
	store := "s3://packs/moved?endpoint=" + s3.Endpoint + "&region=" + s3test.Region
	data := filepath.Join(tmp, "data")
	srv := startServe(t, data)
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	a := filepath.Join(tmp, "a")
	if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	big := randomFile(t, filepath.Join(a, "big.bin"), 3<<20)
	os.WriteFile(filepath.Join(a, "small.txt"), []byte("small"), 0o644)
	if out, err := ferryRun(t, nil, "push", a); err != nil {
		t.Fatal(out)
	}
	fp := srv.fp
	srv.kill()
	out, err := ferryRun(t, nil, "--json", "admin", "migrate", "--from", data, "--to-store", store, "--to-meta", dsn)
	if err != nil {
		t.Fatalf("migrate out: %v\n%s", err, out)
	}
	var res struct {
		Packs, Records struct {
			Packs, Records int
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Packs.Packs == 0 || res.Records.Records == 0 {
		t.Fatalf("migrate out moved nothing: %v\n%s", err, out)
	}
	// Alone, the directory is refused rather than served without its records.
	cmd := ferryCmd([]string{"QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true"}, "serve", "--data", data, "--listen", "127.0.0.1:0", "--min-free", "16MiB")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "moved into a database") {
		t.Fatalf("serve of a directory whose records moved: %v\n%s", err, b)
	}
	args := []string{"--store", store, "--meta", dsn}
	m1 := startServeArgs(t, data, "127.0.0.1:0", s3.Env(), args...)
	m2 := startServeArgs(t, filepath.Join(tmp, "data2"), "127.0.0.1:0", s3.Env(), args...)
	if m1.fp != fp || m2.fp != fp {
		t.Fatalf("fingerprints %s and %s after the move, %s before", m1.fp, m2.fp, fp)
	}
	pull := func(name string, p *serverProc) {
		t.Helper()
		d := filepath.Join(tmp, name)
		if out, err := ferryRun(t, env, "init", d, "--remote", p.url("team"), "--root", "r"); err != nil {
			t.Fatal(out)
		}
		if out, err := ferryRun(t, nil, "pull", d); err != nil {
			t.Fatalf("pull into %s: %v\n%s", name, err, out)
		}
		if got, err := os.ReadFile(filepath.Join(d, "big.bin")); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("%s: big.bin is not what was pushed (%v)", name, err)
		}
	}
	pull("b", m2) // the token made before the move works on the new member
	m1.kill()
	m2.kill()

	back := filepath.Join(tmp, "back")
	if out, err := ferryRun(t, nil, "admin", "migrate", "--data", back, "--to-local", "--meta", dsn, "--packs", store); err != nil {
		t.Fatalf("migrate back: %v\n%s", err, out)
	}
	for _, f := range []string{"cert.pem", "key.pem", "admin.token"} {
		b, _ := os.ReadFile(filepath.Join(data, f))
		os.WriteFile(filepath.Join(back, f), b, 0o600)
	}
	single := startServe(t, back)
	pull("c", single)
	if out, err := ferryRun(t, nil, "check", "--read-data", filepath.Join(tmp, "c")); err != nil {
		t.Fatalf("check after the move back: %v\n%s", err, out)
	}
}

// TestClusterDatabaseRestart: the database is killed (kill -9 of every
// backend) under a push frozen mid-upload and restarted at once. The
// push, resumed into the outage, waits for the database or fails with a
// retryable error and succeeds when run again; nothing acknowledged is
// lost, and the data pulls bit-exact and checks clean.
func TestClusterDatabaseRestart(t *testing.T) {
	tmp := t.TempDir()
	c := startCluster(t, 1)
	srv := c.members[0]
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	a := filepath.Join(tmp, "a")
	if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	first := randomFile(t, filepath.Join(a, "first.bin"), 2<<20)
	if out, err := ferryRun(t, nil, "push", a); err != nil {
		t.Fatal(out)
	}
	second := randomFile(t, filepath.Join(a, "second.bin"), 12<<20)
	cmd := ferryCmd([]string{"FERRY_FAILPOINT=client-blob-sent=3:stop"}, "push", a)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitStopped(t, cmd.Process.Pid) {
		t.Fatalf("the push ended before its failpoint: %s", out.String())
	}
	c.pg.Kill()
	cmd.Process.Signal(syscall.SIGCONT)
	if err := c.pg.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Logf("push across the restart failed (%v), as it may:\n%s", err, out.String())
		if !strings.Contains(out.String(), "unavailable") {
			t.Fatalf("the push failed without saying the server was unavailable:\n%s", out.String())
		}
		if o, err := ferryRun(t, nil, "push", a); err != nil {
			t.Fatalf("push again after the restart: %v\n%s", err, o)
		}
	}
	b := filepath.Join(tmp, "b")
	if o, err := ferryRun(t, env, "init", b, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(o)
	}
	if o, err := ferryRun(t, nil, "pull", b); err != nil {
		t.Fatalf("pull: %v\n%s", err, o)
	}
	for name, want := range map[string][]byte{"first.bin": first, "second.bin": second} {
		if got, err := os.ReadFile(filepath.Join(b, name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s is not what was pushed (%v)", name, err)
		}
	}
	if o, err := ferryRun(t, nil, "check", "--read-data", b); err != nil {
		t.Fatalf("check: %v\n%s", err, o)
	}
}

// TestClusterCacheDiskFull: a member whose data directory (its pack
// cache) is on a full 64 MiB ext4 filesystem keeps serving reads, from
// the bucket (a cache fill that meets ENOSPC reads through), and refuses
// uploads with "server storage is full" rather than failing; the other
// member takes them meanwhile.
func TestClusterCacheDiskFull(t *testing.T) {
	tmp := t.TempDir()
	pg := pgtest.Start(t)
	s3 := s3test.Start(t, "packs")
	args := []string{"--store", "s3://packs/full?endpoint=" + s3.Endpoint + "&region=" + s3test.Region, "--meta", pg.NewDB(t)}
	a := startServeArgs(t, filepath.Join(tmp, "data-a"), "127.0.0.1:0", s3.Env(), args...)
	mnt := smallFS(t, 64<<20)
	b := startServeArgs(t, filepath.Join(mnt, "data"), "127.0.0.1:0", s3.Env(), append(args, "--pack-cache", "1GiB", "--min-free", "8MiB", "--ballast", "0")...)
	env := []string{"FERRY_TOKEN=" + a.token("team", "write"), "FERRY_FINGERPRINT=" + a.fp}
	src := filepath.Join(tmp, "src")
	if out, err := ferryRun(t, env, "init", src, "--remote", a.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	big := randomFile(t, filepath.Join(src, "big.bin"), 24<<20)
	if out, err := ferryRun(t, nil, "push", src); err != nil {
		t.Fatal(out)
	}
	// Fill B's disk to the last block.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	filler.Close()
	for _, n := range []int{64 << 10, 4 << 10} { // and the last partial blocks
		for {
			f, _ := os.OpenFile(filepath.Join(mnt, "filler"), os.O_WRONLY|os.O_APPEND, 0)
			_, err := f.Write(chunk[:n])
			f.Close()
			if err != nil {
				break
			}
		}
	}
	dst := filepath.Join(tmp, "dst")
	if out, err := ferryRun(t, env, "init", dst, "--remote", b.url("team"), "--root", "r"); err != nil {
		t.Fatalf("init through the full member: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "pull", dst); err != nil {
		t.Fatalf("pull through the member with a full disk: %v\n%s\nserver:\n%s", err, out, b.logs)
	}
	if got, err := os.ReadFile(filepath.Join(dst, "big.bin")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big.bin through the full member is not what was pushed (%v)", err)
	}
	if cached, _ := filepath.Glob(filepath.Join(mnt, "data", "store", "packs", "*.pack")); len(cached) > 0 {
		t.Fatalf("packs were cached on a full disk (%v): the reads did not go to the bucket", cached)
	}
	randomFile(t, filepath.Join(dst, "new.bin"), 2<<20)
	out, err := ferryRun(t, nil, "push", dst)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFull || !strings.Contains(out, "server storage is full") {
		t.Fatalf("push through the full member: %v (want exit %d)\n%s", err, exitFull, out)
	}
	// The other member takes the push; the full one still serves it.
	if out, err := ferryRun(t, nil, "config", dst, "set", "remote", a.url("team")); err != nil {
		t.Fatalf("config set remote: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "push", dst); err != nil {
		t.Fatalf("push through the other member: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, []string{"FERRY_TOKEN=" + readAdminToken(t, b.data), "FERRY_FINGERPRINT=" + b.fp}, "check", "--read-data", "--remote", "quic://"+b.addr); err != nil {
		t.Fatalf("check through the full member: %v\n%s", err, out)
	}
}
