package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/pgtest"
	"github.com/ferry-sync/ferry/internal/s3test"
	"github.com/ferry-sync/ferry/transport"
)

// The crash loop (RELIABILITY.md §3.4; catalogue F1, F6, F8, E1, E2): the
// real `ferry serve` under four concurrent pushers (roots r1 and r2 with
// one device each, root r3 shared by two devices that merge) and a puller
// of r1, all real processes. The loop kills the server with SIGKILL at
// random moments, some during a collection, some within milliseconds of a
// restart (a crash during recovery), and kills clients mid-push and
// mid-pull. An ack log outside the server (fsynced, one JSON line per
// version a client was told is committed) is the oracle: after every
// restart every acknowledged version is in its root's history; at the end
// the store checks clean with --read-data and each root's last
// acknowledged version restores to exactly the tree that was pushed.
//
// FERRY_CRASHLOOP_ITERS sets the iterations (default 30, what CI runs);
// FERRY_CRASHLOOP_REPORT=FILE writes the figures as markdown (make
// crashloop: 1,000 iterations into bench/results/crashloop.md).
func TestCrashLoop(t *testing.T) {
	iters := 30
	if v, err := strconv.Atoi(os.Getenv("FERRY_CRASHLOOP_ITERS")); err == nil && v > 0 {
		iters = v
	}
	crashLoop(t, iters, nil)
}

// TestCrashLoopS3Packs is the crash loop with the server's packs in a
// real S3 server (versitygw) and a one-byte pack cache: a kill may land
// between an upload and the commit of its records, and every
// acknowledged version must still restore from the bucket.
func TestCrashLoopS3Packs(t *testing.T) {
	iters := 10
	if v, err := strconv.Atoi(os.Getenv("FERRY_CRASHLOOP_ITERS")); err == nil && v > 0 {
		iters = v
	}
	s3 := s3test.Start(t, "packs")
	crashLoop(t, iters, &serveExtra{env: s3.Env(), args: []string{"--packs", "s3://packs/loop?endpoint=" + s3.Endpoint + "&region=" + s3test.Region, "--pack-cache", "1"}})
}

// TestCrashLoopCluster is the crash loop against a cluster of two
// servers over one PostgreSQL database and one versitygw bucket: every
// client names both, each kill takes one server (the clients fail over to
// the other) or both, collections run through either, and every
// acknowledged version must survive.
func TestCrashLoopCluster(t *testing.T) {
	iters := 10
	if v, err := strconv.Atoi(os.Getenv("FERRY_CRASHLOOP_ITERS")); err == nil && v > 0 {
		iters = v
	}
	pg := pgtest.Start(t)
	s3 := s3test.Start(t, "packs")
	crashLoop(t, iters, &serveExtra{env: s3.Env(), members: 2, args: []string{
		"--store", "s3://packs/cluster?endpoint=" + s3.Endpoint + "&region=" + s3test.Region,
		"--meta", pg.NewDB(t), "--pack-cache", "1",
	}})
}

// serveExtra is what a crash loop's server runs with beside its data.
// members > 1 runs that many servers as one cluster (args name the
// shared store and database); each kill takes one of them or all.
type serveExtra struct {
	env, args []string
	members   int
}

func crashLoop(t *testing.T, iters int, extra *serveExtra) {
	if extra == nil {
		extra = &serveExtra{}
	}

	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("FERRY_CRASHLOOP_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (FERRY_CRASHLOOP_SEED to replay the schedule)", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	tmp := t.TempDir()
	n := max(extra.members, 1)
	datas := make([]string, n)
	for i := range datas {
		datas[i] = filepath.Join(tmp, "data")
		if n > 1 {
			datas[i] = filepath.Join(tmp, fmt.Sprint("data", i))
		}
	}
	serveAt := func(i int, addr string, more ...string) *serverProc {
		return startServeArgs(t, datas[i], addr, extra.env, append(append([]string(nil), extra.args...), more...)...)
	}
	srvs := make([]*serverProc, n)
	addrs := make([]string, n)
	for i := range srvs {
		srvs[i] = serveAt(i, "127.0.0.1:0", "--gc-every", "0", "--gc-grace", "1s")
		addrs[i] = srvs[i].addr
	}
	srv := srvs[0]
	// A cluster's clients name every member, and fail over between them.
	addr := strings.Join(addrs, ",")
	tok := srv.token("ns", "write")
	env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.fp, "FERRY_IDLE_TIMEOUT=2s"}
	admin := readAdminToken(t, datas[0])
	acks := newAckLog(t, filepath.Join(tmp, "acks.log"))

	// The workload: four pushers, one puller.
	l := &loop{t: t, env: env, acks: acks, written: map[string]map[string]bool{}}
	roots := []string{"r1", "r2", "r3", "r3"}
	for i, root := range roots {
		dir := filepath.Join(tmp, fmt.Sprintf("dev%d", i))
		if out, err := ferryRun(t, env, "init", dir, "--remote", "quic://"+addr+"/ns", "--root", root); err != nil {
			t.Fatalf("init %s: %v\n%s", dir, err, out)
		}
		l.devices = append(l.devices, &device{dir: dir, root: root, rng: rand.New(rand.NewPCG(seed+uint64(i), 7))})
	}
	puller := filepath.Join(tmp, "puller")
	if out, err := ferryRun(t, env, "init", puller, "--remote", "quic://"+addr+"/ns", "--root", "r1"); err != nil {
		t.Fatalf("init puller: %v\n%s", err, out)
	}
	ctx, stop := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	for _, d := range l.devices {
		workers.Go(func() { l.push(ctx, d) })
	}
	workers.Go(func() { l.pull(ctx, puller) })

	start := time.Now()
	var st crashStats
	for i := 0; i < iters; i++ {
		// Let the workload run a while: mostly short, sometimes long, so
		// that startup, recovery and steady state all get hit.
		var delay time.Duration
		switch r := rng.IntN(10); {
		case r < 3:
			delay = time.Duration(rng.IntN(5)) * time.Millisecond
		case r < 8:
			delay = time.Duration(5+rng.IntN(500)) * time.Millisecond
		default:
			delay = time.Duration(500+rng.IntN(1500)) * time.Millisecond
		}
		var gcCmd *exec.Cmd
		if rng.IntN(4) == 0 {
			gcCmd = ferryCmd([]string{"FERRY_TOKEN=" + admin, "FERRY_FINGERPRINT=" + srv.fp}, "gc", "--remote", "quic://"+addr, "--grace", "1s")
			if gcCmd.Start() == nil {
				st.gcKills++
			} else {
				gcCmd = nil
			}
		}
		if rng.IntN(4) == 0 {
			st.clientKills += l.killClient(rng)
		}
		time.Sleep(delay)
		// One server dies, or (in a cluster, a third of the time) all.
		victims := []int{rng.IntN(n)}
		if n > 1 && rng.IntN(3) == 0 {
			victims = victims[:0]
			for i := range n {
				victims = append(victims, i)
			}
		}
		for _, v := range victims {
			srvs[v].kill()
		}
		if gcCmd != nil {
			gcCmd.Wait()
		}
		if rng.IntN(5) == 0 {
			// A crash on top of a crash: killed while it recovers.
			v := victims[0]
			srvs[v] = serveAt(v, addrs[v])
			time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
			srvs[v].kill()
			st.recoveryKills++
		}
		for _, v := range victims {
			srvs[v] = serveAt(v, addrs[v])
		}
		srv = srvs[0]
		st.iterations++
		l.verifyAcked(t, addr, srv.fp, admin)
	}
	stop()
	workers.Wait()
	for i := range srvs {
		srvs[i].kill()
		srvs[i] = serveAt(i, addrs[i])
	}
	srv = srvs[0]
	l.verifyAcked(t, addr, srv.fp, admin)
	// Every device's rerun completes, whatever the loop left it in (a
	// killed push, a merge to finish), and is acknowledged. --force: a
	// merge may delete most of a folder the other device emptied, which
	// the deletion guard otherwise asks about.
	for _, d := range l.devices {
		var stderr bytes.Buffer
		cmd := ferryCmd(env, "--json", "push", "--force", d.dir)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var res struct {
			Version string `json:"version"`
		}
		var ee *exec.ExitError
		if (err != nil && !(errors.As(err, &ee) && ee.ExitCode() == exitConflicts)) || json.Unmarshal(out, &res) != nil || res.Version == "" {
			t.Fatalf("rerun push of %s after the loop: %v\n%s%s", d.dir, err, out, stderr.String())
		}
		acks.add(ack{Root: d.root, Version: res.Version, Digest: treeDigest(d.dir)})
	}
	l.verifyAcked(t, addr, srv.fp, admin)

	adminEnv := []string{"FERRY_TOKEN=" + admin, "FERRY_FINGERPRINT=" + srv.fp}
	if out, err := ferryRun(t, adminEnv, "check", "--read-data", "--remote", "quic://"+addr); err != nil {
		t.Fatalf("check after the crash loop: %v\n%s\nserver:\n%s", err, out, srv.logs)
	}
	// Each root's last acknowledged version restores to exactly what was
	// pushed.
	for _, root := range []string{"r1", "r2", "r3"} {
		last, ok := acks.last(root)
		if !ok {
			t.Fatalf("root %s: no push was ever acknowledged in %d iterations", root, iters)
		}
		target := filepath.Join(tmp, "restore-"+root)
		dev := l.deviceOf(root)
		if out, err := ferryRun(t, env, "restore", dev.dir, "--version", last.Version, "--to", target); err != nil {
			t.Fatalf("restore %s@%s: %v\n%s", root, last.Version[:12], err, out)
		}
		if got := treeDigest(target); got != last.Digest {
			t.Fatalf("root %s: version %s restores to %s, but was pushed as %s", root, last.Version[:12], got, last.Digest)
		}
	}
	// No leftover temporary files under final names anywhere, and the
	// data directory holds none of atomicfile's temporaries.
	for _, data := range datas {
		if temps, _ := filepath.Glob(filepath.Join(data, ".ferry-tmp-*")); len(temps) > 0 {
			t.Errorf("stray temporary files in the data directory: %v", temps)
		}
	}
	st.acked = acks.count()
	st.unknown = int(l.unknown.Load())
	st.pulls, st.pullKills = int(l.pulls.Load()), int(l.pullKills.Load())
	st.elapsed = time.Since(start)
	t.Logf("%d iterations, %d versions acknowledged, 0 lost, %d pushes unknown; kills: %d during gc, %d during recovery, %d clients; %d pulls (%d killed); %s",
		st.iterations, st.acked, st.unknown, st.gcKills, st.recoveryKills, st.clientKills, st.pulls, st.pullKills, st.elapsed.Round(time.Second))
	if path := os.Getenv("FERRY_CRASHLOOP_REPORT"); path != "" {
		st.write(t, path, seed)
	}
}

type crashStats struct {
	iterations, acked, unknown          int
	gcKills, recoveryKills, clientKills int
	pulls, pullKills                    int
	elapsed                             time.Duration
}

func (st crashStats) write(t *testing.T, path string, seed uint64) {
	report := fmt.Sprintf(`# Crash loop

Measured %s on this machine with `+"`make crashloop`"+` (seed %d): the real `+"`ferry serve`"+`
killed with SIGKILL at random moments under four concurrent pushers (roots r1 and r2, and
r3 shared by two devices that merge) and a puller, some kills during a collection and some
within 50 ms of a restart; clients killed mid-push and mid-pull. The oracle is an ack log
outside the server; after every restart every acknowledged version must be in its root's
history, and at the end `+"`check --read-data`"+` must be clean and each root's last
acknowledged version must restore exactly.

| figure | value |
|---|---|
| iterations | %d |
| versions acknowledged | %d |
| acknowledged versions lost | 0 |
| pushes with an unknown outcome (killed or cut off) | %d |
| server kills during a collection | %d |
| server kills during recovery | %d |
| client processes killed mid-push or mid-pull | %d |
| pulls completed / killed | %d / %d |
| time | %s |

kill -9 tests process crashes only: the page cache survives, so missing fsyncs are invisible
here. Power loss is covered by cas.TestCrashKeepsAcknowledgedHeads (CrashClone of the store's
filesystem at every write).
`, time.Now().UTC().Format("2006-01-02 15:04 UTC"), seed, st.iterations, st.acked, st.unknown,
		st.gcKills, st.recoveryKills, st.clientKills, st.pulls, st.pullKills, st.elapsed.Round(time.Second))
	if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
}

// device is one pushing folder.
type device struct {
	dir, root string
	rng       *rand.Rand
	mu        sync.Mutex
	proc      *os.Process // the push running now, for the killer
}

type loop struct {
	t       *testing.T
	env     []string
	acks    *ackLog
	devices []*device
	// written holds, per root and path, the digests of every content a
	// device gave that path: a file a pull left under its final name must
	// be one of them (never a part).
	mu      sync.Mutex
	written map[string]map[string]bool

	pullMu         sync.Mutex
	pullProc       *os.Process
	unknown, pulls atomic.Int64
	pullKills      atomic.Int64
}

func (l *loop) deviceOf(root string) *device {
	for _, d := range l.devices {
		if d.root == root {
			return d
		}
	}
	return nil
}

// push edits the device's folder and pushes, until ctx ends.
func (l *loop) push(ctx context.Context, d *device) {
	for ctx.Err() == nil {
		l.edit(d)
		cmd := ferryCmd(l.env, "--json", "push", d.dir)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		err := cmd.Start()
		if err == nil {
			d.mu.Lock()
			d.proc = cmd.Process
			d.mu.Unlock()
			err = cmd.Wait()
			d.mu.Lock()
			d.proc = nil
			d.mu.Unlock()
		}
		out := stdout.Bytes()
		var res struct {
			Version string `json:"version"`
		}
		var ee *exec.ExitError
		if err == nil && json.Unmarshal(out, &res) == nil && res.Version != "" {
			l.acks.add(ack{Root: d.root, Version: res.Version, Digest: treeDigest(d.dir)})
			continue
		}
		if errors.As(err, &ee) && ee.ExitCode() == exitConflicts {
			// A merge with conflict copies is committed too.
			if json.Unmarshal(out, &res) == nil && res.Version != "" {
				l.acks.add(ack{Root: d.root, Version: res.Version, Digest: treeDigest(d.dir)})
				continue
			}
		}
		l.unknown.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // the server may be restarting
		}
	}
}

// edit changes a few files: new content (from 0 bytes to 3 MiB, some of
// it copied from other files, so dedup-heavy), and deletions.
func (l *loop) edit(d *device) {
	r := d.rng
	for range 1 + r.IntN(3) {
		name := fmt.Sprintf("f%d.bin", r.IntN(8))
		if r.IntN(3) == 0 {
			name = "sub/" + name
		}
		p := filepath.Join(d.dir, filepath.FromSlash(name))
		switch op := r.IntN(10); {
		case op == 0:
			os.Remove(p)
			continue
		case op < 3:
			// The content of another file: a dedup hit.
			other := filepath.Join(d.dir, fmt.Sprintf("f%d.bin", r.IntN(8)))
			if b, err := os.ReadFile(other); err == nil {
				l.write(d, name, p, b)
				continue
			}
		}
		size := r.IntN(64 << 10)
		if r.IntN(6) == 0 {
			size = 1<<20 + r.IntN(2<<20)
		}
		b := make([]byte, size)
		for i := 0; i < len(b); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < len(b); j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		l.write(d, name, p, b)
	}
}

func (l *loop) write(d *device, name, p string, b []byte) {
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		l.t.Errorf("write %s: %v", p, err)
	}
	sum := sha256.Sum256(b)
	l.mu.Lock()
	if l.written[d.root] == nil {
		l.written[d.root] = map[string]bool{}
	}
	l.written[d.root][name+"\x00"+hex.EncodeToString(sum[:])] = true
	l.mu.Unlock()
}

// pull pulls r1 into the puller's folder, until ctx ends. After every
// pull, killed or not, every file under a final name must be a content
// some device wrote there.
func (l *loop) pull(ctx context.Context, dir string) {
	for ctx.Err() == nil {
		cmd := ferryCmd(l.env, "pull", "--force", dir)
		err := cmd.Start()
		if err == nil {
			l.pullMu.Lock()
			l.pullProc = cmd.Process
			l.pullMu.Unlock()
			err = cmd.Wait()
			l.pullMu.Lock()
			l.pullProc = nil
			l.pullMu.Unlock()
		}
		if err == nil {
			l.pulls.Add(1)
		}
		l.checkNoPartial(dir, "r1")
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *loop) checkNoPartial(dir, root string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	walkFolder(dir, func(rel string, info fs.FileInfo) {
		if !info.Mode().IsRegular() || strings.Contains(rel, ".sync-conflict-") {
			return // conflict copies are not tracked by name
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return
		}
		sum := sha256.Sum256(b)
		if !l.written[root][rel+"\x00"+hex.EncodeToString(sum[:])] {
			l.t.Errorf("pull left %s with content no device wrote there (%d bytes): a partial file under its final name", rel, len(b))
		}
	})
}

// walkFolder calls fn for every entry of a folder but directories, with
// its slash-separated path, leaving out .ferry and temporary files.
func walkFolder(dir string, fn func(rel string, info fs.FileInfo)) {
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			if rel == ".ferry" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(e.Name(), ".ferry-tmp-") {
			return nil
		}
		if info, err := e.Info(); err == nil {
			fn(filepath.ToSlash(rel), info)
		}
		return nil
	})
}

// killClient kills one running client process (a push, or the pull).
func (l *loop) killClient(rng *rand.Rand) int {
	if rng.IntN(3) == 0 {
		l.pullMu.Lock()
		defer l.pullMu.Unlock()
		if l.pullProc != nil {
			l.pullProc.Signal(syscall.SIGKILL)
			l.pullKills.Add(1)
			return 1
		}
		return 0
	}
	d := l.devices[rng.IntN(len(l.devices))]
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		d.proc.Signal(syscall.SIGKILL)
		return 1
	}
	return 0
}

// verifyAcked checks that every acknowledged version is in its root's
// history on the restarted server.
func (l *loop) verifyAcked(t *testing.T, addr, fp, admin string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, addr, "", transport.ClientOptions{Token: admin, Fingerprint: fp})
	if err != nil {
		t.Fatalf("dial the restarted server: %v", err)
	}
	defer c.Close()
	for root, versions := range l.acks.byRoot() {
		hist, err := c.AdminHistory(ctx, "ns", root)
		if err != nil {
			t.Fatalf("history of %s: %v", root, err)
		}
		have := map[string]bool{}
		for _, h := range hist {
			have[h.Ref.String()] = true
		}
		for _, v := range versions {
			if !have[v] {
				t.Fatalf("root %s: acknowledged version %s is not in the history after a restart (lost)", root, v[:12])
			}
		}
	}
}

// ack is one line of the ack log.
type ack struct {
	Root    string `json:"root"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

// ackLog is the oracle: an append-only, fsynced file outside the server.
type ackLog struct {
	t    *testing.T
	mu   sync.Mutex
	f    *os.File
	acks []ack
}

func newAckLog(t *testing.T, path string) *ackLog {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &ackLog{t: t, f: f}
}

func (a *ackLog) add(x ack) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, _ := json.Marshal(x)
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		a.t.Errorf("ack log: %v", err)
	}
	if err := a.f.Sync(); err != nil {
		a.t.Errorf("ack log: %v", err)
	}
	a.acks = append(a.acks, x)
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acks)
}

func (a *ackLog) last(root string) (ack, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.acks) - 1; i >= 0; i-- {
		if a.acks[i].Root == root {
			return a.acks[i], true
		}
	}
	return ack{}, false
}

func (a *ackLog) byRoot() map[string][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string][]string{}
	for _, x := range a.acks {
		if !slices.Contains(out[x.Root], x.Version) {
			out[x.Root] = append(out[x.Root], x.Version)
		}
	}
	return out
}

// treeDigest hashes a folder's regular files and symlinks (path, mode,
// content), leaving out .ferry and temporary files.
func treeDigest(dir string) string {
	var lines []string
	walkFolder(dir, func(rel string, info fs.FileInfo) {
		var sum [32]byte
		p := filepath.Join(dir, filepath.FromSlash(rel))
		switch {
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return
			}
			sum = sha256.Sum256(b)
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			sum = sha256.Sum256([]byte(target))
		}
		lines = append(lines, fmt.Sprintf("%s %o %x", rel, info.Mode().Perm(), sum))
	})
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// TestConcurrentPushersKeepEveryAck (E2): eight clients, goroutines of
// this process, push into one root at once, each editing its own folder
// and merging with the others. Every push the server acknowledged is in
// the root's history and an ancestor of the final head: no acknowledged
// version is ever lost to another client's compare-and-swap.
func TestConcurrentPushersKeepEveryAck(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	creds := engine.Credentials{Token: srv.token("team", "write"), Fingerprint: srv.fp}
	ctx := context.Background()
	const clients, rounds = 8, 4
	dirs := make([]string, clients)
	for i := range dirs {
		dirs[i] = filepath.Join(tmp, fmt.Sprintf("c%d", i))
		if _, err := engine.Init(ctx, dirs[i], engine.InitOptions{Remote: srv.url("team"), Root: "r", Credentials: creds}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Go(func() {
			for round := range rounds {
				// Its own file, and a shared one every client writes.
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("own-%d.txt", i)), []byte(fmt.Sprintf("client %d round %d", i, round)), 0o644)
				os.WriteFile(filepath.Join(dir, "shared.txt"), []byte(fmt.Sprintf("shared by %d in round %d", i, round)), 0o644)
				res, err := engine.Push(ctx, dir, engine.PushOptions{Options: engine.Options{Credentials: creds}})
				if err != nil {
					t.Errorf("client %d round %d: %v", i, round, err)
					return
				}
				mu.Lock()
				acked = append(acked, res.Version)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	c, err := transport.Dial(ctx, srv.addr, "team", transport.ClientOptions{Token: creds.Token, Fingerprint: srv.fp})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hist, err := c.History(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	inHistory := map[cas.Ref]bool{}
	for _, h := range hist {
		inHistory[h.Ref] = true
	}
	head, err := c.Head(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	ancestors := map[cas.Ref]bool{}
	for queue := []cas.Ref{head}; len(queue) > 0; {
		r := queue[0]
		queue = queue[1:]
		if ancestors[r] {
			continue
		}
		ancestors[r] = true
		v, err := index.LoadVersion(ctx, c, r)
		if err != nil {
			continue // a merge's "local state" parent is stored but not kept
		}
		queue = append(queue, v.Parents...)
	}
	for _, v := range acked {
		r, err := cas.ParseRef(v)
		if err != nil {
			t.Fatalf("acknowledged version %q: %v", v, err)
		}
		if !inHistory[r] {
			t.Errorf("acknowledged version %s is not in the history", r.Short())
		}
		if !ancestors[r] {
			t.Errorf("acknowledged version %s is not an ancestor of the head %s", r.Short(), head.Short())
		}
	}
	t.Logf("%d pushes acknowledged, %d history entries, all ancestors of the head", len(acked), len(hist))
}
