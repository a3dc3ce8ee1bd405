package engine

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/gc"
	"github.com/ferry-sync/ferry/internal/failpoint"
	"github.com/ferry-sync/ferry/transport"
)

// clock is an injected clock tests move by hand: the store stamps puts
// with it and the collector computes its grace with it.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// gcServer is a real QUIC server on 127.0.0.1 over a store with an
// injected clock, in this process, so that a test can collect garbage in
// it at exact points of a push.
type gcServer struct {
	t     *testing.T
	db    *cas.DB
	srv   *transport.Server
	url   string
	creds Credentials
	clock *clock
}

func startGCServer(t *testing.T) *gcServer {
	t.Helper()
	dir := t.TempDir()
	clk := newClock()
	db, err := cas.Open(filepath.Join(dir, "store"), cas.Options{Create: true, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	m := serveStore(t, dir, db, clk)
	tok, _, err := m.tokens.Create("team", transport.PermWrite, "")
	if err != nil {
		t.Fatal(err)
	}
	return &gcServer{t: t, db: db, srv: m.srv, url: "quic://" + m.addr + "/team",
		creds: Credentials{Token: tok, Fingerprint: m.fp}, clock: clk}
}

// served is a store served over QUIC on 127.0.0.1 by this process.
type served struct {
	db     *cas.DB
	srv    *transport.Server
	tokens *transport.Tokens
	addr   string
	fp     string
}

// serveStore serves db (its certificate in dir) until the test ends, then
// closes it.
func serveStore(t *testing.T, dir string, db *cas.DB, clk *clock) served {
	t.Helper()
	tokens, err := transport.NewTokens(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, fp, err := transport.LoadOrCreateCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := transport.Listen("127.0.0.1:0", cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(db, tokens, transport.ServerOptions{Version: "test", Now: clk.Now})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		<-done
		db.Close()
	})
	return served{db: db, srv: srv, tokens: tokens, addr: ln.Addr().String(), fp: fp}
}

func (g *gcServer) folder(name, root string) string {
	g.t.Helper()
	dir := filepath.Join(g.t.TempDir(), name)
	if _, err := Init(context.Background(), dir, InitOptions{Remote: g.url, Root: root, Credentials: g.creds}); err != nil {
		g.t.Fatal(err)
	}
	return dir
}

// collect runs a collection as the server does: under its commit lock,
// with the grace measured on the injected clock after moving it 2 hours
// on, so everything put before counts as old.
func (g *gcServer) collect() *gc.Stats {
	g.t.Helper()
	g.clock.Advance(2 * time.Hour)
	st, err := CollectDB(context.Background(), g.db, g.srv.PauseCommits, GCOptions{Grace: time.Hour, Options: Options{Now: g.clock.Now}})
	if err != nil {
		g.t.Errorf("gc: %v", err)
	}
	return st
}

// verify checks the whole store with read-data and restores every version
// in dir's history, comparing each with what was pushed.
func (g *gcServer) verify(dir string, pushed map[string]map[string]string) {
	g.t.Helper()
	ctx := context.Background()
	res, err := CheckDB(ctx, g.db, "", CheckOptions{ReadData: true})
	if err != nil {
		g.t.Fatalf("check after gc: %v %+v", err, res.Damaged)
	}
	for v, want := range pushed {
		to := filepath.Join(g.t.TempDir(), "restore")
		if _, err := Restore(ctx, dir, RestoreOptions{Version: v, To: to}); err != nil {
			g.t.Fatalf("restore %s: %v", v[:12], err)
		}
		sameSnapshot(g.t, snapshot(g.t, to), want)
	}
}

func pushOK(t *testing.T, dir string) (*PushResult, map[string]string) {
	t.Helper()
	res, err := Push(context.Background(), dir, PushOptions{})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return res, snapshot(t, dir)
}

// once runs fn the first time only.
func once(fn func()) func() {
	var o sync.Once
	return func() { o.Do(fn) }
}

// TestGCInterleavings runs a collection at each step of a push where a
// careless one would lose data, with an injected clock that makes every
// blob old enough to collect. In each, the push ends with its version
// complete at the server (it succeeds, or recovers by sending again what
// was collected), the store checks clean, and every version restores
// exactly.
func TestGCInterleavings(t *testing.T) {
	cases := []struct {
		name string
		// prepare runs before the push under test (on folder dir).
		prepare func(t *testing.T, g *gcServer, dir string)
		step    string
		// during runs at step; collect is a full collection.
		during func(g *gcServer, dir string)
		// recovers: the push must have re-sent what the collection
		// removed (the only way to succeed).
		recovers bool
	}{
		{
			// The chunks are at the server, not yet named by any head:
			// nothing protects them but the commit's own check, which
			// refuses, and the client sends them again.
			name: "collect between upload and commit", step: "client-before-commit",
			during: func(g *gcServer, _ string) { g.collect() }, recovers: true,
		},
		{
			// The server said "I have it" for chunks of a forgotten
			// version; the collection then removes them before the commit.
			name: "collect after a dedup answer for forgotten data", step: "client-before-commit",
			prepare: func(t *testing.T, g *gcServer, dir string) {
				os.Rename(filepath.Join(dir, "new.bin"), filepath.Join(t.TempDir(), "kept-aside"))
				pushOK(t, dir) // new.bin deleted: only the forgotten version had it
				if _, err := Forget(context.Background(), dir, ForgetOptions{Policy: gc.Policy{Last: 1}}); err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, "new.bin"), random(42, 3<<20), 0o644)
			},
			during: func(g *gcServer, _ string) { g.collect() }, recovers: true,
		},
		{
			// The server checked the commit and is about to move the head:
			// a collection waits for the move (commit lock), then sees it.
			name: "collect requested while the head moves", step: "server-commit-checked",
			during: func(g *gcServer, _ string) {
				done := make(chan struct{})
				go func() { defer close(done); g.collect() }()
				g.t.Cleanup(func() { <-done })
			},
		},
	}
	for _, store := range gcStores {
		for _, tc := range cases {
			t.Run(store.name+"/"+tc.name, func(t *testing.T) {
				g := store.start(t)
				dir := g.folder("a", "r")
				pushed := map[string]map[string]string{}
				write(t, filepath.Join(dir, "old.txt"), []byte("first version"), 0o644)
				write(t, filepath.Join(dir, "new.bin"), random(42, 3<<20), 0o644)
				res, snap := pushOK(t, dir)
				pushed[res.Version] = snap
				if tc.prepare != nil {
					tc.prepare(t, g, dir)
					pushed = map[string]map[string]string{} // forgotten
				}
				write(t, filepath.Join(dir, "second.bin"), random(43, 2<<20), 0o644)
				remove := failpoint.Set(tc.step, once(func() { tc.during(g, dir) }))
				res, err := Push(context.Background(), dir, PushOptions{})
				remove()
				if err != nil {
					t.Fatalf("push across a collection: %v", err)
				}
				recovered := len(res.Warnings) > 0 && bytes.Contains([]byte(fmt.Sprint(res.Warnings)), []byte("collected meanwhile"))
				if recovered != tc.recovers {
					t.Errorf("push recovered by re-sending: %v, want %v (warnings %q)", recovered, tc.recovers, res.Warnings)
				}
				pushed[res.Version] = snapshot(t, dir)
				// One more collection with nothing in flight must keep all.
				g.collect()
				g.verify(dir, pushed)
			})
		}
	}
}

// TestGCDuringACollection: pushes that happen while a collection is
// between its start and its mark, and between its mark and its sweep,
// keep their data: what they wrote, or were told exists, after the
// collection began is protected.
func TestGCDuringACollection(t *testing.T) {
	for _, store := range gcStores {
		for _, step := range []string{"gc-begun", "gc-marked"} {
			t.Run(store.name+"/"+step, func(t *testing.T) {
				g := store.start(t)
				dir := g.folder("a", "r")
				pushed := map[string]map[string]string{}
				write(t, filepath.Join(dir, "base.bin"), random(50, 1<<20), 0o644)
				write(t, filepath.Join(dir, "gone.bin"), random(52, 1<<20), 0o644)
				pushOK(t, dir)
				// gone.bin's chunks are then only in a forgotten version: no
				// mark keeps them, only the protection of a Has that finds them.
				os.Remove(filepath.Join(dir, "gone.bin"))
				res, snap := pushOK(t, dir)
				pushed[res.Version] = snap
				if _, err := Forget(context.Background(), dir, ForgetOptions{Policy: gc.Policy{Last: 1}}); err != nil {
					t.Fatal(err)
				}
				g.clock.Advance(2 * time.Hour) // everything so far is old
				remove := failpoint.Set(step, once(func() {
					// A new file, one whose chunks are live (a copy of base),
					// and one whose chunks only the forgotten version had.
					write(t, filepath.Join(dir, "during.bin"), random(51, 1<<20), 0o644)
					write(t, filepath.Join(dir, "copy.bin"), random(50, 1<<20), 0o644)
					write(t, filepath.Join(dir, "revived.bin"), random(52, 1<<20), 0o644)
					res, snap := pushOK(t, dir)
					pushed[res.Version] = snap
				}))
				_, err := CollectDB(context.Background(), g.db, g.srv.PauseCommits, GCOptions{Grace: 0, Options: Options{Now: g.clock.Now}})
				remove()
				if err != nil {
					t.Fatal(err)
				}
				g.collect()
				g.verify(dir, pushed)
			})
		}
	}
}

// TestForgetThenGCReturnsSpace is the "done when": five pushes of
// a changing 20 MB file, forget --keep-last 1, gc with no grace: the store
// is near the size of one version, checks clean and restores exactly.
func TestForgetThenGCReturnsSpace(t *testing.T) {
	ctx := context.Background()
	g := startGCServer(t)
	dir := g.folder("a", "r")
	var last map[string]string
	var head string
	for i := range 5 {
		write(t, filepath.Join(dir, "big.bin"), random(uint64(60+i), 20<<20), 0o644)
		res, snap := pushOK(t, dir)
		head, last = res.Version, snap
	}
	fr, err := Forget(ctx, dir, ForgetOptions{Policy: gc.Policy{Last: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(fr.Keep) != 1 || len(fr.Remove) != 4 || fr.Keep[0].Version != head {
		t.Fatalf("forget kept %d and removed %d, want the head and 4", len(fr.Keep), len(fr.Remove))
	}
	st := g.collect()
	packs := dirBytes(t, filepath.Join(g.db.Dir(), "packs"))
	if live := int64(20 << 20); packs > live+live/10 {
		t.Errorf("after forget --keep-last 1 and gc the packs hold %d bytes, want within 10%% of %d", packs, live)
	}
	if st.Blobs == 0 || st.DiskFreed < 60<<20 {
		t.Errorf("gc deleted %d blobs and freed %d bytes, want about 80 MiB", st.Blobs, st.DiskFreed)
	}
	g.verify(dir, map[string]map[string]string{head: last})
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	list, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestGCStress: two pushers (each on its root, forgetting all but the
// newest version after each push and tagging every third), a restorer of
// tagged versions, and a collector in a loop, all at once (run it under
// -race). The injected clock runs 60 times faster than the real one and
// the grace is one of its minutes, so forgotten data is collected while
// the pushers go on. No push or restore may fail, data is deleted, and at
// the end the store checks clean and every tagged version and head
// restores exactly.
func TestGCStress(t *testing.T) {
	g := startGCServer(t)
	ctx := context.Background()
	var mu sync.Mutex
	kept := map[string]map[string]string{} // tagged versions and heads
	folderOf := map[string]string{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var errs atomic.Int64
	fail := func(format string, a ...any) {
		errs.Add(1)
		t.Errorf(format, a...)
	}
	for p := range 2 {
		dir := g.folder(fmt.Sprintf("p%d", p), fmt.Sprintf("root%d", p))
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(p), 9))
			for i := range 12 {
				name := filepath.Join(dir, fmt.Sprintf("f%d.bin", r.IntN(4)))
				if r.IntN(3) == 0 {
					os.Remove(name)
				} else {
					// Content repeats across pushers and steps, so that
					// dedup answers meet collections.
					write(t, name, random(uint64(r.IntN(6)), 256<<10+r.IntN(512<<10)), 0o644)
				}
				res, err := Push(ctx, dir, PushOptions{})
				if err != nil {
					fail("pusher %d step %d: %v", p, i, err)
					return
				}
				if res.UpToDate {
					continue
				}
				if i%3 == 0 {
					if _, err := Tag(ctx, dir, fmt.Sprintf("t%d", i), res.Version, false, Options{}); err != nil {
						fail("pusher %d tag: %v", p, err)
						return
					}
					mu.Lock()
					kept[res.Version], folderOf[res.Version] = snapshot(t, dir), dir
					mu.Unlock()
				}
				if _, err := Forget(ctx, dir, ForgetOptions{Policy: gc.Policy{Last: 1, KeepTagged: true}}); err != nil {
					fail("pusher %d forget: %v", p, err)
					return
				}
			}
			res, err := Push(ctx, dir, PushOptions{})
			if err != nil {
				fail("pusher %d last push: %v", p, err)
				return
			}
			mu.Lock()
			kept[res.Version], folderOf[res.Version] = snapshot(t, dir), dir
			mu.Unlock()
		})
	}
	var restorer sync.WaitGroup
	restorer.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			var v string
			var want map[string]string
			for v, want = range kept {
				break
			}
			dir := folderOf[v]
			mu.Unlock()
			if v == "" {
				continue
			}
			to := filepath.Join(t.TempDir(), fmt.Sprintf("r%d", n))
			if _, err := Restore(ctx, dir, RestoreOptions{Version: v, To: to}); err != nil {
				fail("restore %s during gc: %v", v[:12], err)
				return
			}
			sameSnapshot(t, snapshot(t, to), want)
			os.RemoveAll(to)
		}
	})
	collector := make(chan int)
	var deleted atomic.Int64
	go func() {
		n := 0
		base, realStart := g.clock.Now(), time.Now()
		for {
			select {
			case <-stop:
				collector <- n
				return
			default:
			}
			g.clock.ns.Store(base.Add(60 * time.Since(realStart)).UnixNano())
			st, err := CollectDB(ctx, g.db, g.srv.PauseCommits, GCOptions{Grace: time.Minute, Options: Options{Now: g.clock.Now}})
			if err != nil {
				fail("gc: %v", err)
			} else {
				deleted.Add(int64(st.Blobs))
			}
			n++
		}
	}()
	wg.Wait()
	close(stop)
	restorer.Wait()
	runs := <-collector
	if runs < 2 {
		t.Errorf("only %d collections ran during the pushes", runs)
	}
	if errs.Load() > 0 {
		return
	}
	st := g.collect() // everything forgotten is now past the grace
	if deleted.Load()+int64(st.Blobs) == 0 {
		t.Errorf("no collection deleted anything, though versions were forgotten")
	}
	mu.Lock()
	defer mu.Unlock()
	g.verify(folderOf[func() string {
		for v := range kept {
			return v
		}
		return ""
	}()], nil)
	for v, want := range kept {
		to := filepath.Join(t.TempDir(), "final")
		if _, err := Restore(ctx, folderOf[v], RestoreOptions{Version: v, To: to}); err != nil {
			t.Fatalf("restore %s after the stress: %v", v[:12], err)
		}
		sameSnapshot(t, snapshot(t, to), want)
	}
}

// TestGCCollectsAnUncommittedPushBeforeAMerge: a push sends its chunks,
// records them in its stat cache, and dies before the commit; a
// collection removes the chunks, which nothing named; another device
// changes the same file. The next push merges, and the merge puts this
// device's content in a conflict copy, for which the server lacks the
// chunks the stat cache vouched for. The merge must not change the folder
// until the remote has them: it reads every file again, sends them, and
// both contents survive, in the folder and at the server.
func TestGCCollectsAnUncommittedPushBeforeAMerge(t *testing.T) {
	g := startGCServer(t)
	a, b := g.folder("a", "r"), g.folder("b", "r")
	write(t, filepath.Join(a, "f.bin"), random(1, 1<<20), 0o644)
	pushOK(t, a)
	if _, err := Pull(context.Background(), b, Options{}); err != nil {
		t.Fatal(err)
	}
	mine := random(2, 1<<20)
	write(t, filepath.Join(b, "f.bin"), mine, 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	remove := failpoint.Set("client-before-commit", once(cancel))
	_, err := Push(ctx, b, PushOptions{})
	remove()
	if err == nil {
		t.Fatal("the push that should die before its commit succeeded")
	}
	g.collect()
	theirs := random(3, 1<<20)
	write(t, filepath.Join(a, "f.bin"), theirs, 0o644)
	pushOK(t, a)

	res, err := Push(context.Background(), b, PushOptions{})
	if err != nil {
		t.Fatalf("push that merges content the server collected: %v", err)
	}
	if !res.Merged || len(res.Conflicts) != 1 || !bytes.Contains([]byte(fmt.Sprint(res.Warnings)), []byte("collected meanwhile")) {
		t.Fatalf("push: merged %v, conflicts %v, warnings %q", res.Merged, res.Conflicts, res.Warnings)
	}
	got, err := os.ReadFile(filepath.Join(b, "f.bin"))
	if err != nil || !bytes.Equal(got, theirs) {
		t.Errorf("f.bin is not the other device's content: %v", err)
	}
	got, err = os.ReadFile(filepath.Join(b, res.Conflicts[0].Copy))
	if err != nil || !bytes.Equal(got, mine) {
		t.Errorf("the conflict copy %s is not this device's content: %v", res.Conflicts[0].Copy, err)
	}
	g.collect()
	g.verify(b, map[string]map[string]string{res.Version: snapshot(t, b)})
}
