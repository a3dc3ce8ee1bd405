package main

import (
	"bytes"
	"encoding/json"
	"os"
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
			if ci["namespace"] == "team" {
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
