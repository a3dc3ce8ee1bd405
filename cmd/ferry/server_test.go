package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/server"
)

// serverProc is a real `ferry serve` process on 127.0.0.1.
type serverProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	data string
	addr string
	fp   string
	done chan error
	logs *lockedBuffer // the server writes while tests read
	info server.Info   // what it said when it started
}

// startServe starts `ferry serve` on data and waits for the line it
// prints when it listens (no sleeping: the process says when it is ready).
func startServe(t *testing.T, data string, env ...string) *serverProc {
	t.Helper()
	return startServeAt(t, data, "127.0.0.1:0", env...)
}

// startServeAt starts a server on a given address (to restart one where
// its clients expect it).
func startServeAt(t *testing.T, data, addr string, env ...string) *serverProc {
	t.Helper()
	return startServeArgs(t, data, addr, env)
}

// startServeArgs starts ferry serve with extra flags.
func startServeArgs(t *testing.T, data, addr string, env []string, extra ...string) *serverProc {
	t.Helper()
	return startServeWrapped(t, data, addr, env, nil, extra...)
}

// startServeWrapped starts ferry serve through wrap (which may run it in
// a network namespace, say), when wrap is not nil.
func startServeWrapped(t *testing.T, data, addr string, env []string, wrap func(*exec.Cmd) *exec.Cmd, extra ...string) *serverProc {
	t.Helper()
	p, err := launchServe(data, addr, env, wrap, extra...)
	if err != nil {
		t.Fatal(err)
	}
	p.t = t
	t.Cleanup(func() { p.kill() })
	return p
}

// launchServe starts `ferry serve` and waits for the line it prints when
// it listens (no sleeping: the process says when it is ready).
func launchServe(data, addr string, env []string, wrap func(*exec.Cmd) *exec.Cmd, extra ...string) (*serverProc, error) {
	if !slices.Contains(extra, "--min-free") {
		// The machine's disk may be nearly full; the default mark (1 GiB
		// or 2%) is tested on a filesystem of the test's own.
		extra = append(extra, "--min-free", "16MiB")
	}
	cmd := ferryCmd(append(env, "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true"), append([]string{"--json", "serve", "--data", data, "--listen", addr}, extra...)...)
	if wrap != nil {
		cmd = wrap(cmd)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &serverProc{cmd: cmd, data: data, done: make(chan error, 1), logs: logs}
	lines := bufio.NewScanner(out)
	ready := make(chan bool, 1)
	go func() {
		ok := false
		if lines.Scan() {
			if json.Unmarshal(lines.Bytes(), &p.info) == nil {
				p.addr, p.fp, ok = p.info.Addr, p.info.Fingerprint, true
			}
		}
		ready <- ok
		for lines.Scan() {
		}
		p.done <- cmd.Wait()
	}()
	select {
	case ok := <-ready:
		if !ok {
			p.kill()
			return nil, fmt.Errorf("ferry serve did not start:\n%s", logs)
		}
	case <-time.After(30 * time.Second):
		p.kill()
		return nil, fmt.Errorf("ferry serve did not start in 30s:\n%s", logs)
	}
	return p, nil
}

func (p *serverProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

func (p *serverProc) url(ns string) string { return "quic://" + p.addr + "/" + ns }

// token makes a token with the admin token from the data directory.
func (p *serverProc) token(ns, perm string) string {
	p.t.Helper()
	code, out, errs := runCLI(p.t, "token", "create", "--data", p.data, "--namespace", ns, "--perm", perm)
	if code != 0 {
		p.t.Fatalf("token create: %s", errs)
	}
	return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
}

func ferryRun(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	out, err := ferryCmd(env, args...).CombinedOutput()
	return string(out), err
}

func randomFile(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old)
	return b
}

// TestServeEndToEnd: two folders sync through a real server process;
// admin views work; a wrong token and a wrong fingerprint are refused.
func TestServeEndToEnd(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	tok := srv.token("team", "write")
	env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	content := randomFile(t, filepath.Join(a, "data.bin"), 5<<20)
	os.WriteFile(filepath.Join(a, "note.txt"), []byte("hello"), 0o644)
	for _, args := range [][]string{
		{"init", a, "--remote", srv.url("team"), "--root", "docs"},
		{"push", a},
		{"init", b, "--remote", srv.url("team"), "--root", "docs"},
		{"pull", b},
	} {
		if out, err := ferryRun(t, env, args...); err != nil {
			t.Fatalf("ferry %v: %v\n%s", args, err, out)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(b, "data.bin")); !bytes.Equal(got, content) {
		t.Fatal("b did not get a's data")
	}
	// The folders keep the token and the pin: no environment needed now.
	os.WriteFile(filepath.Join(b, "note.txt"), []byte("hello from b"), 0o644)
	if out, err := ferryRun(t, nil, "push", b); err != nil {
		t.Fatalf("push from b without env: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "pull", a); err != nil {
		t.Fatalf("pull into a: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(a, "note.txt")); string(got) != "hello from b" {
		t.Errorf("a has %q", got)
	}
	out, err := ferryRun(t, nil, "--json", "admin", "roots", "--data", srv.data)
	if err != nil || !strings.Contains(out, `"root":"docs"`) || !strings.Contains(out, `"versions":2`) {
		t.Errorf("admin roots: %v %s", err, out)
	}
	if out, err := ferryRun(t, nil, "admin", "history", "--data", srv.data, "team/docs"); err != nil || strings.Count(out, "\n") != 2 {
		t.Errorf("admin history: %v %s", err, out)
	}

	// Wrong token: refused, non-zero exit, says so.
	c := filepath.Join(tmp, "c")
	out, err = ferryRun(t, []string{"FERRY_TOKEN=ferry_wrongwrongwrongwrongwrongwrong", "FERRY_FINGERPRINT=" + srv.fp}, "init", c, "--remote", srv.url("team"))
	if err == nil || !strings.Contains(out, "not authenticated") {
		t.Errorf("wrong token: %v\n%s", err, out)
	}
	// Changed fingerprint: refused.
	out, err = ferryRun(t, []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + strings.Repeat("ab", 32)}, "init", c, "--remote", srv.url("team"))
	if err == nil || !strings.Contains(out, "fingerprint mismatch") {
		t.Errorf("wrong fingerprint: %v\n%s", err, out)
	}
	// A read token cannot push: the folder is receive-only (the server
	// refuses such puts too: transport.TestPermissions).
	ro := srv.token("team", "read")
	d := filepath.Join(tmp, "d")
	if out, err := ferryRun(t, []string{"FERRY_TOKEN=" + ro, "FERRY_FINGERPRINT=" + srv.fp}, "init", d, "--remote", srv.url("team"), "--root", "docs"); err != nil {
		t.Fatalf("init with a read token: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, nil, "pull", d); err != nil {
		t.Fatalf("pull with a read token: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(d, "new.txt"), []byte("x"), 0o644)
	if out, err := ferryRun(t, nil, "push", d); err == nil || !strings.Contains(out, "its token is read-only") {
		t.Errorf("push with a read token: %v\n%s", err, out)
	}
}

// TestSecondServerLocked is catalogue row F7.
func TestSecondServerLocked(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	startServe(t, data)
	out, err := ferryRun(t, nil, "serve", "--data", data, "--listen", "127.0.0.1:0")
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != exitLocked || !strings.Contains(out, "locked") {
		t.Errorf("second server: %v (want exit %d)\n%s", err, exitLocked, out)
	}
}

// TestServerGracefulStop: SIGTERM stops the server with exit 0 and a store
// that checks clean.
func TestServerGracefulStop(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	tok := srv.token("n", "write")
	a := filepath.Join(tmp, "a")
	randomFile(t, filepath.Join(a, "f"), 1<<20)
	env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}
	if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("n")); err != nil {
		t.Fatal(out)
	}
	if out, err := ferryRun(t, nil, "push", a); err != nil {
		t.Fatal(out)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-srv.done; err != nil {
		t.Errorf("server exit after SIGTERM: %v\n%s", err, srv.logs)
	}
	if out, err := ferryRun(t, nil, "check", "--remote", filepath.Join(srv.data, "store"), "--read-data"); err != nil {
		t.Errorf("check after stop: %v\n%s", err, out)
	}
}

type pushSummary struct {
	Version   string `json:"version"`
	BytesSent int64  `json:"bytes_sent"`
	UpToDate  bool   `json:"up_to_date"`
}

func pushJSON(t *testing.T, dir string, flags ...string) (pushSummary, error) {
	t.Helper()
	out, err := ferryCmd(nil, append(append([]string{"--json"}, flags...), "push", dir)...).Output()
	var s pushSummary
	if err == nil {
		err = json.Unmarshal(out, &s)
	}
	return s, err
}

// TestKillServerMidPush is catalogue row F1: the server dies (kill -9) in
// the middle of a push. After a restart the store checks clean, the head
// is the old version, and the rerun push sends only what did not arrive.
func TestKillServerMidPush(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	srv := startServe(t, data)
	tok := srv.token("n", "write")
	a := filepath.Join(tmp, "a")
	for i := range 8 {
		randomFile(t, filepath.Join(a, "f"+string(rune('0'+i))), 3<<20)
	}
	env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}
	if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("n")); err != nil {
		t.Fatal(out)
	}
	srv.kill()

	// The restarted server dies right after its first put stream is
	// durable (8 MiB of frames): that much arrived, the rest did not.
	srv = startServe(t, data, "FERRY_FAILPOINT=server-put-durable=1")
	setRemote(t, a, srv.url("n"))
	if _, err := pushJSON(t, a, "--streams", "2"); err == nil {
		t.Fatal("push succeeded though the server died")
	}
	if err := <-srv.done; err == nil {
		t.Fatal("the server was not killed")
	}
	if out, err := ferryRun(t, nil, "check", "--remote", filepath.Join(data, "store"), "--read-data"); err != nil {
		t.Fatalf("check after the crash: %v\n%s", err, out)
	}
	srv = startServe(t, data)
	setRemote(t, a, srv.url("n"))
	res, err := pushJSON(t, a)
	if err != nil {
		t.Fatalf("rerun push: %v", err)
	}
	total := int64(8 * 3 << 20)
	if res.BytesSent <= 0 || res.BytesSent >= total {
		t.Errorf("the rerun sent %d bytes of %d: it should send only what did not arrive", res.BytesSent, total)
	}
	srv.kill()
	if out, err := ferryRun(t, nil, "check", "--remote", filepath.Join(data, "store"), "--read-data"); err != nil {
		t.Fatalf("check after the rerun: %v\n%s", err, out)
	}
}

// TestKillServerAfterHeadMoved: the server dies right after moving the
// head, before it answers. The head is the new version; the rerun push
// finds its own version there and is done.
func TestKillServerAfterHeadMoved(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	srv := startServe(t, data)
	tok := srv.token("n", "write")
	a := filepath.Join(tmp, "a")
	randomFile(t, filepath.Join(a, "f"), 1<<20)
	if out, err := ferryRun(t, []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}, "init", a, "--remote", srv.url("n")); err != nil {
		t.Fatal(out)
	}
	srv.kill()
	srv = startServe(t, data, "FERRY_FAILPOINT=server-head-moved=1")
	setRemote(t, a, srv.url("n"))
	if _, err := pushJSON(t, a); err == nil {
		t.Fatal("push succeeded though the server died")
	}
	<-srv.done
	srv = startServe(t, data)
	setRemote(t, a, srv.url("n"))
	res, err := pushJSON(t, a)
	if err != nil || !res.UpToDate || res.BytesSent > 1<<10 {
		t.Errorf("rerun after the head moved: %+v, %v; want up to date, nothing resent", res, err)
	}
}

// TestKillClientMidPush is catalogue row F6 for push: the client dies
// (kill -9) mid-upload; the rerun sends only the rest.
func TestKillClientMidPush(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	tok := srv.token("n", "write")
	a := filepath.Join(tmp, "a")
	for i := range 8 {
		randomFile(t, filepath.Join(a, "f"+string(rune('0'+i))), 3<<20)
	}
	if out, err := ferryRun(t, []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}, "init", a, "--remote", srv.url("n")); err != nil {
		t.Fatal(out)
	}
	cmd := ferryCmd([]string{"FERRY_FAILPOINT=client-blob-sent=20"}, "push", a)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the client was not killed: %v", err)
	}
	res, err := pushJSON(t, a)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(8 * 3 << 20)
	if res.BytesSent >= total*9/10 {
		t.Errorf("the rerun sent %d of %d bytes: it resent what had arrived", res.BytesSent, total)
	}
	b := filepath.Join(tmp, "b")
	if out, err := ferryRun(t, []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}, "init", b, "--remote", srv.url("n"), "--root", "a"); err != nil {
		t.Fatal(out)
	}
	if out, err := ferryRun(t, nil, "pull", b); err != nil {
		t.Fatal(out)
	}
	for i := range 8 {
		x, _ := os.ReadFile(filepath.Join(a, "f"+string(rune('0'+i))))
		y, _ := os.ReadFile(filepath.Join(b, "f"+string(rune('0'+i))))
		if !bytes.Equal(x, y) {
			t.Errorf("file %d differs after the resumed push", i)
		}
	}
}

// setRemote points a folder at a restarted server's new port.
func setRemote(t *testing.T, dir, url string) {
	t.Helper()
	path := filepath.Join(dir, ".ferry", "config")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	json.Unmarshal(b, &cfg)
	cfg["remote"] = url
	b, _ = json.Marshal(cfg)
	os.WriteFile(path, b, 0o600)
}

// TestHostileServerTree is catalogue row D9: a server that serves a tree
// naming "../x" (planted in its store behind its own checks) cannot make
// a client write outside its folder; the pull fails and writes nothing.
func TestHostileServerTree(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	srv := startServe(t, data)
	tok := srv.token("n", "write")
	env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	os.MkdirAll(a, 0o755)
	os.WriteFile(filepath.Join(a, "ok"), []byte("ok"), 0o644)
	for _, args := range [][]string{{"init", a, "--remote", srv.url("n"), "--root", "r"}, {"push", a}} {
		if out, err := ferryRun(t, env, args...); err != nil {
			t.Fatal(out)
		}
	}
	srv.kill()

	db, err := cas.Open(filepath.Join(data, "store"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := db.Namespace("n")
	ctx := context.Background()
	fo, _ := index.FileObjects([]index.ChunkRef{{Ref: cas.Sum([]byte("evil")), Len: 4}})
	evil := index.EncodeTree(&index.Tree{Entries: []index.Entry{{Name: "../x", Kind: index.KindFile, Mode: 0o644, Size: 4, Ref: cas.Sum(fo)}}})
	head, _ := ns.Head(ctx, "r")
	ver := index.EncodeVersion(&index.Version{Root: cas.Sum(evil), Parents: []cas.Ref{head}, Time: time.Now()})
	for _, o := range [][]byte{[]byte("evil"), fo, evil, ver} {
		ns.Put(ctx, cas.Sum(o), o)
	}
	if err := ns.SwapHead(ctx, "r", head, cas.Sum(ver)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	srv = startServe(t, data)
	if out, err := ferryRun(t, env, "init", b, "--remote", srv.url("n"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	out, err := ferryRun(t, nil, "pull", b)
	if err == nil || !strings.Contains(out, "../x") {
		t.Errorf("pull of a hostile tree: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(tmp, "x")); !os.IsNotExist(err) {
		t.Errorf("the hostile server wrote outside the folder: %v", err)
	}
	entries, _ := os.ReadDir(b)
	if len(entries) != 1 || entries[0].Name() != ".ferry" {
		t.Errorf("the folder got %v", entries)
	}
}

// TestMetricsEndpoint: /healthz answers without auth and /metrics counts
// what a push moved.
func TestMetricsEndpoint(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	cmd := ferryCmd([]string{"QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true"}, "--json", "serve", "--data", data, "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
	out, _ := cmd.StdoutPipe()
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var info struct {
		Addr, Fingerprint string
		MetricsAddr       string `json:"metrics_addr"`
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &info) != nil || info.MetricsAddr == "" {
		t.Fatalf("no ready line: %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	resp, err := http.Get("http://" + info.MetricsAddr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	srv := &serverProc{t: t, data: data, addr: info.Addr, fp: info.Fingerprint}
	tok := srv.token("n", "write")
	a := filepath.Join(tmp, "a")
	randomFile(t, filepath.Join(a, "f"), 2<<20)
	for _, args := range [][]string{{"init", a, "--remote", srv.url("n")}, {"push", a}} {
		if o, err := ferryRun(t, []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}, args...); err != nil {
			t.Fatal(o)
		}
	}
	bad := "ferry_" + strings.Repeat("q", 32)
	badFile := filepath.Join(tmp, "bad.token")
	os.WriteFile(badFile, []byte(bad), 0o600)
	if o, err := ferryRun(t, []string{"FERRY_FINGERPRINT=" + srv.fp}, "--token-file", badFile, "status", a); err == nil {
		t.Fatalf("a wrong token was let in:\n%s", o)
	}
	resp, err = http.Get("http://" + info.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		var name string
		var v float64
		if _, err := fmt.Sscanf(line, "%s %g", &name, &v); err == nil {
			m[name] = v
		}
	}
	if m["ferry_bytes_in_total"] < 2<<20 || m["ferry_blobs_stored_total"] < 3 {
		t.Errorf("metrics after a 2 MiB push: bytes_in %v, stored %v", m["ferry_bytes_in_total"], m["ferry_blobs_stored_total"])
	}
	// A wrong token is counted, and logged with the address and the id
	// it would have, never itself.
	if m[`ferry_connections_refused_total{reason="auth"}`] != 1 {
		t.Errorf("auth refusals counted %v, want 1", m[`ferry_connections_refused_total{reason="auth"}`])
	}
	if l := logs.String(); strings.Contains(l, bad) || !strings.Contains(l, "reason=auth") || !strings.Contains(l, "token_id=") || !strings.Contains(l, "remote=127.0.0.1:") {
		t.Errorf("the auth failure's log line:\n%s", l)
	}
}
