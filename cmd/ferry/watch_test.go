package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// watchProc is a real `ferry watch` process.
// lockedBuffer is a buffer a process writes while a test may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type watchProc struct {
	cmd    *exec.Cmd
	rounds chan map[string]any
	errs   *lockedBuffer
	mu     sync.Mutex
	failed []string // error events the watcher reported
}

func (w *watchProc) errorEvents() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.failed)
}

func startWatch(t *testing.T, dir string) *watchProc {
	t.Helper()
	cmd := ferryCmd(nil, "--json", "watch", dir, "--rescan", "1h")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errs := &lockedBuffer{}
	cmd.Stderr = errs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &watchProc{cmd: cmd, rounds: make(chan map[string]any, 1024), errs: errs}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				if e["message_type"] == "error" {
					w.mu.Lock()
					w.failed = append(w.failed, fmt.Sprint(e["error"]))
					w.mu.Unlock()
				}
				select {
				case w.rounds <- e:
				default:
				}
			}
		}
		close(w.rounds)
	}()
	// The first round (the initial sync) says the watch is running.
	select {
	case e, ok := <-w.rounds:
		if !ok || e["message_type"] != "summary" {
			t.Fatalf("watch did not start: %v\n%s", e, errs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("watch did not start:\n%s", errs)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return w
}

// eventually waits (at most limit) for cond, checking after each of the
// watcher's rounds and at least every 100 ms.
func eventually(t *testing.T, w *watchProc, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(limit)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-w.rounds:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("after %v: %s never happened\nwatcher stderr:\n%s\nwatcher errors: %q", limit, what, w.errs, w.errorEvents())
		}
	}
}

// twoFolders makes two folders of one root through a fresh server.
func twoFolders(t *testing.T) (srv *serverProc, a, b string) {
	t.Helper()
	tmp := t.TempDir()
	srv = startServe(t, filepath.Join(tmp, "data"))
	tok := srv.token("team", "write")
	env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}
	a, b = filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	os.MkdirAll(a, 0o755)
	os.WriteFile(filepath.Join(a, "start.txt"), []byte("start"), 0o644)
	for _, args := range [][]string{
		{"init", a, "--remote", srv.url("team"), "--root", "r"},
		{"push", a},
		{"init", b, "--remote", srv.url("team"), "--root", "r"},
		{"pull", b},
	} {
		if out, err := ferryRun(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	return srv, a, b
}

func fileIs(path, want string) func() bool {
	return func() bool {
		b, err := os.ReadFile(path)
		return err == nil && string(b) == want
	}
}

// TestWatchPropagates: a write on A appears on B, and a change on B comes
// back to A, with two real watch processes and a real server.
func TestWatchPropagates(t *testing.T) {
	_, a, b := twoFolders(t)
	wa, wb := startWatch(t, a), startWatch(t, b)
	os.WriteFile(filepath.Join(a, "hello.txt"), []byte("hello from a"), 0o644)
	eventually(t, wb, 20*time.Second, "a's file on b", fileIs(filepath.Join(b, "hello.txt"), "hello from a"))
	os.MkdirAll(filepath.Join(b, "sub"), 0o755)
	os.WriteFile(filepath.Join(b, "sub", "reply.txt"), []byte("reply from b"), 0o644)
	eventually(t, wa, 20*time.Second, "b's file on a", fileIs(filepath.Join(a, "sub", "reply.txt"), "reply from b"))
	os.Remove(filepath.Join(a, "hello.txt"))
	eventually(t, wb, 20*time.Second, "the delete on b", func() bool {
		_, err := os.Stat(filepath.Join(b, "hello.txt"))
		return os.IsNotExist(err)
	})
}

// TestWatchSlowWriter: a file written over 2 s is never synced half
// written: no version in the history holds a shorter copy of it.
func TestWatchSlowWriter(t *testing.T) {
	_, a, b := twoFolders(t)
	startWatch(t, a)
	wb := startWatch(t, b)
	path := filepath.Join(a, "slow.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	piece := bytes.Repeat([]byte("x"), 100_000)
	for range 10 {
		f.Write(piece)
		time.Sleep(200 * time.Millisecond) // the writer is slow: that is the scenario
	}
	f.Close()
	want := strings.Repeat("x", 1_000_000)
	eventually(t, wb, 20*time.Second, "the whole file on b", fileIs(filepath.Join(b, "slow.bin"), want))
	out, err := ferryRun(t, nil, "--json", "log", a, "slow.bin")
	if err != nil {
		t.Fatalf("log: %v\n%s", err, out)
	}
	var entries []struct {
		PathSize int64  `json:"path_size"`
		PathOp   string `json:"path_op"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.PathOp != "removed" && e.PathSize != 1_000_000 {
			t.Errorf("a version holds slow.bin with %d bytes: synced half written", e.PathSize)
		}
	}
}

// TestWatchBurst: 10,000 files created at once converge.
func TestWatchBurst(t *testing.T) {
	_, a, b := twoFolders(t)
	startWatch(t, a)
	wb := startWatch(t, b)
	for i := range 10_000 {
		d := filepath.Join(a, "burst", fmt.Sprintf("d%02d", i/200))
		if i%200 == 0 {
			os.MkdirAll(d, 0o755)
		}
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), []byte(fmt.Sprint(i)), 0o644)
	}
	eventually(t, wb, 90*time.Second, "10,000 files on b", func() bool {
		n := 0
		filepath.WalkDir(filepath.Join(b, "burst"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n == 10_000
	})
}

// TestWatchServerRestart: the server is killed and restarted while both
// watch; what was written meanwhile arrives, nothing is lost.
func TestWatchServerRestart(t *testing.T) {
	srv, a, b := twoFolders(t)
	wa, wb := startWatch(t, a), startWatch(t, b)
	os.WriteFile(filepath.Join(a, "before.txt"), []byte("before"), 0o644)
	eventually(t, wb, 20*time.Second, "before.txt on b", fileIs(filepath.Join(b, "before.txt"), "before"))
	addr := srv.addr
	srv.kill()
	os.WriteFile(filepath.Join(a, "during.txt"), []byte("written while the server was down"), 0o644)
	os.WriteFile(filepath.Join(b, "offline-b.txt"), []byte("b offline"), 0o644)
	// The same data and address: the watchers reconnect by themselves.
	srv2 := startServeAt(t, srv.data, addr)
	_ = srv2
	eventually(t, wb, 60*time.Second, "during.txt on b", fileIs(filepath.Join(b, "during.txt"), "written while the server was down"))
	eventually(t, wa, 60*time.Second, "offline-b.txt on a", fileIs(filepath.Join(a, "offline-b.txt"), "b offline"))
}

// TestThreeDevicesConverge is the merge property: random edits on three
// devices, synced in random order through a real server, end with three
// identical folders, and every content a device held when it synced is in
// the final tree or in its history. (Content overwritten before any sync
// never reached ferry: no tool could keep it.)
func TestThreeDevicesConverge(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	tok := srv.token("team", "write")
	env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp}
	var devs []string
	for i := range 3 {
		d := filepath.Join(tmp, fmt.Sprintf("dev%d", i))
		if out, err := ferryRun(t, env, "init", d, "--remote", srv.url("team"), "--root", "r"); err != nil {
			t.Fatal(out)
		}
		devs = append(devs, d)
	}
	r := rand.New(rand.NewPCG(7, 8))
	var written []string
	syncDev := func(t *testing.T, d string) {
		t.Helper()
		written = append(written, contents(folderContents(t, d))...)
		syncDevice(t, d)
	}
	for step := range 24 {
		d := devs[r.IntN(3)]
		name := fmt.Sprintf("f%d.txt", r.IntN(5))
		switch r.IntN(4) {
		case 0:
			os.Remove(filepath.Join(d, name))
		default:
			content := fmt.Sprintf("step %d on %s", step, filepath.Base(d))
			os.WriteFile(filepath.Join(d, name), []byte(content), 0o644)
		}
		if r.IntN(2) == 0 {
			syncDev(t, devs[r.IntN(3)])
		}
	}
	// Sync until quiet: two full rounds over all devices.
	for range 2 {
		for _, d := range devs {
			syncDev(t, d)
		}
	}
	want := folderContents(t, devs[0])
	for _, d := range devs[1:] {
		if got := folderContents(t, d); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s differs:\n%v\nwant\n%v", d, got, want)
		}
	}
	// Every written content is in the final tree or a version's tree.
	found := map[string]bool{}
	for _, c := range contents(want) {
		found[c] = true
	}
	out, err := ferryRun(t, nil, "--json", "log", devs[0])
	if err != nil {
		t.Fatal(out)
	}
	var versions []struct {
		Version string `json:"version"`
		Parents []string
	}
	json.Unmarshal([]byte(out), &versions)
	seen := map[string]bool{}
	var queue []string
	for _, v := range versions {
		queue = append(queue, v.Version)
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		if seen[v] {
			continue
		}
		seen[v] = true
		target := filepath.Join(tmp, "restore-"+v[:12])
		if out, err := ferryRun(t, nil, "restore", devs[0], "--version", v, "--to", target); err != nil {
			t.Fatalf("restore %s: %v\n%s", v[:12], err, out)
		}
		for _, c := range contents(folderContents(t, target)) {
			found[c] = true
		}
	}
	for _, c := range written {
		if !found[c] && !inParents(t, devs[0], c) {
			t.Errorf("%q was written but is in no version", c)
		}
	}
}

// inParents looks for content in the local-state parents of merges.
func inParents(t *testing.T, dev, content string) bool {
	out, err := ferryRun(t, nil, "--json", "log", dev)
	if err != nil {
		return false
	}
	var versions []struct {
		Parents []string `json:"parents"`
	}
	json.Unmarshal([]byte(out), &versions)
	for _, v := range versions {
		for _, p := range v.Parents {
			target := filepath.Join(t.TempDir(), "p")
			if _, err := ferryRun(t, nil, "restore", dev, "--version", p, "--to", target); err != nil {
				continue
			}
			if slices.Contains(contents(folderContents(t, target)), content) {
				return true
			}
		}
	}
	return false
}

func syncDevice(t *testing.T, d string) {
	t.Helper()
	out, err := ferryRun(t, nil, "sync", d)
	var ee *exec.ExitError
	if err != nil && !(errorsAs(err, &ee) && ee.ExitCode() == exitConflicts) {
		t.Fatalf("sync %s: %v\n%s", d, err, out)
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// contents drops the paths of folderContents' lines.
func contents(lines []string) []string {
	var out []string
	for _, l := range lines {
		_, c, _ := strings.Cut(l, "=")
		out = append(out, c)
	}
	return out
}

// folderContents lists a folder's files as path=content, sorted, without
// .ferry.
func folderContents(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == ".ferry" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel+"="+string(b))
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// TestThreeWatchersConverge: three `ferry watch` processes on one server,
// each writing its own files and all three writing the same file at once;
// the folders end identical, every write is there, and the same-file
// writes survive as the file plus conflict copies.
func TestThreeWatchersConverge(t *testing.T) {
	srv, a, b := twoFolders(t)
	c := filepath.Join(filepath.Dir(a), "c")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	for _, args := range [][]string{{"init", c, "--remote", srv.url("team"), "--root", "r"}, {"pull", c}} {
		if out, err := ferryRun(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	dirs := []string{a, b, c}
	var ws []*watchProc
	for _, d := range dirs {
		ws = append(ws, startWatch(t, d))
	}
	for i, d := range dirs {
		for j := range 5 {
			os.WriteFile(filepath.Join(d, fmt.Sprintf("own-%d-%d.txt", i, j)), []byte(fmt.Sprintf("device %d file %d", i, j)), 0o644)
		}
		os.WriteFile(filepath.Join(d, "shared.txt"), []byte(fmt.Sprintf("shared from device %d", i)), 0o644)
	}
	converged := func() bool {
		first := fmt.Sprint(folderContents(t, a))
		return first == fmt.Sprint(folderContents(t, b)) && first == fmt.Sprint(folderContents(t, c))
	}
	eventually(t, ws[0], 60*time.Second, "three folders equal", func() bool {
		// Converged and stays so: the watchers may still be merging.
		return converged() && len(contents(folderContents(t, a))) >= 16
	})
	got := contents(folderContents(t, a))
	for i := range dirs {
		for j := range 5 {
			if !slices.Contains(got, fmt.Sprintf("device %d file %d", i, j)) {
				t.Errorf("device %d's file %d is missing after convergence", i, j)
			}
		}
		if !slices.Contains(got, fmt.Sprintf("shared from device %d", i)) {
			t.Errorf("device %d's write of shared.txt was lost (neither the file nor a conflict copy)", i)
		}
	}
}

// TestWatchWhileCollecting: two watchers keep syncing while the server
// collects garbage every 100 ms with a grace of 3 s (an hour by default),
// so rewritten files' old data goes while writes go on; every write
// arrives, and the store checks clean.
func TestWatchWhileCollecting(t *testing.T) {
	tmp := t.TempDir()
	srv := startServeArgs(t, filepath.Join(tmp, "data"), "127.0.0.1:0", nil, "--gc-every=100ms", "--gc-grace=3s")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	for _, args := range [][]string{{"init", a, "--remote", srv.url("team"), "--root", "r"}, {"init", b, "--remote", srv.url("team"), "--root", "r"}} {
		if out, err := ferryRun(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	wa, wb := startWatch(t, a), startWatch(t, b)
	for i := range 15 {
		name := fmt.Sprintf("f%02d.bin", i%5) // rewrites leave dead data behind
		data := bytes.Repeat([]byte{byte(i)}, 300_000+i)
		os.WriteFile(filepath.Join(a, name), data, 0o644)
		eventually(t, wb, 30*time.Second, name+" on b", fileIs(filepath.Join(b, name), string(data)))
	}
	for _, w := range []*watchProc{wa, wb} {
		if ev := w.errorEvents(); len(ev) > 0 {
			t.Errorf("a watcher reported errors while the server collected: %q", ev)
		}
	}
	if out, err := ferryRun(t, nil, "check", a, "--read-data"); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
}

// TestWatchExitsOnRevokedToken: a revoked token is not a network fault to
// retry forever in silence: watch reports it and exits non-zero.
func TestWatchExitsOnRevokedToken(t *testing.T) {
	srv, a, _ := twoFolders(t)
	w := startWatch(t, a)
	code, out, errs := runCLI(t, "--json", "token", "list", "--data", srv.data)
	if code != 0 {
		t.Fatalf("token list: %s", errs)
	}
	var list []struct{ ID, Namespace, Perm string }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	revoked := 0
	for _, tk := range list {
		if tk.Namespace == "team" {
			if code, _, errs := runCLI(t, "token", "revoke", tk.ID, "--data", srv.data); code != 0 {
				t.Fatalf("token revoke: %s", errs)
			}
			revoked++
		}
	}
	if revoked != 1 {
		t.Fatalf("revoked %d tokens of namespace team, want 1: %s", revoked, out)
	}
	exited := make(chan error, 1)
	go func() {
		for range w.rounds { // closed when the process closes stdout
		}
		exited <- w.cmd.Wait()
	}()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errorsAs(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("watch ended with %v after its token was revoked, want a non-zero exit", err)
		}
		if !strings.Contains(w.errs.String(), "revoked") {
			t.Errorf("watch's stderr does not say the token was revoked:\n%s", w.errs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("watch still running 60 s after its token was revoked; errors: %q", w.errorEvents())
	}
}
