package cas_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/cas/castest"
	"github.com/ferry-sync/ferry/internal/s3test"
	"github.com/ferry-sync/ferry/s3store"
)

// s3Packs is a pack store on a real S3 server (versitygw), under a
// prefix of its own.
func s3Packs(t *testing.T, srv *s3test.Server, prefix string) cas.PackStore {
	t.Helper()
	s, err := s3store.Open(context.Background(), "packs", prefix, s3store.Options{Endpoint: srv.Endpoint, Region: s3test.Region, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openS3DB(t *testing.T, dir string, ps cas.PackStore, cacheBytes int64) *cas.DB {
	t.Helper()
	db, err := cas.Open(dir, cas.Options{Create: true, Packs: ps, PacksName: "s3://packs/test", CacheBytes: cacheBytes})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestConformanceS3Packs: the store suite, with packs in S3 and a local
// cache of one byte, so that every pack read after its flush is a ranged
// read of its object.
func TestConformanceS3Packs(t *testing.T) {
	srv := s3test.Start(t, "packs")
	n := 0
	castest.Run(t, func(t *testing.T) castest.Store {
		n++
		db := openS3DB(t, t.TempDir(), s3Packs(t, srv, filepath.Join("conf", string(rune('a'+n%26)), t.Name())+"/"), 1)
		t.Cleanup(func() { db.Close() })
		return ns(t, db, "default")
	})
}

// TestS3PacksOutliveTheDisk: what a flush made durable is in S3: with the
// store's local packs gone, a store reopened on the same bucket reads
// every blob bit-exact, and a full check re-hashes them from S3.
func TestS3PacksOutliveTheDisk(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	ps := s3Packs(t, srv, "outlive/")
	dir := t.TempDir()
	db := openS3DB(t, dir, ps, 0)
	n := ns(t, db, "a")
	var blobs [][]byte
	for i := range 6 {
		b := random(uint64(i+1), 512<<10+i)
		blobs = append(blobs, b)
		if err := n.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			if err := db.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	if len(packs) < 2 {
		t.Fatalf("%d local packs; the test needs two", len(packs))
	}
	// One local copy is cut short (read as missing: the object is whole),
	// the others are lost.
	if err := os.Truncate(packs[0], 100); err != nil {
		t.Fatal(err)
	}
	for _, p := range packs[1:] {
		os.Remove(p)
	}
	// Opened without its pack store, or with another, the store refuses.
	for _, o := range []cas.Options{{}, {Packs: ps, PacksName: "s3://other/place"}} {
		if d, err := cas.Open(dir, o); !errors.Is(err, cas.ErrPacksElsewhere) {
			if d != nil {
				d.Close()
			}
			t.Fatalf("opened with packs %q: %v, want ErrPacksElsewhere", o.PacksName, err)
		}
	}
	db = openS3DB(t, dir, ps, 0)
	defer db.Close()
	n = ns(t, db, "a")
	for i, b := range blobs {
		got, err := n.Get(ctx, cas.Sum(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("blob %d after the local packs were lost: %d bytes, %v", i, len(got), err)
		}
	}
	st, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { t.Errorf("damage: %+v", d) })
	if err != nil || st.BlobsRead < len(blobs) {
		t.Fatalf("check --read-data from S3: %+v %v", st, err)
	}
}

// TestS3UploadRetried: an S3 server that is down makes a flush fail
// without failing the store; once it is back, the next flush uploads the
// pack and commits, and nothing was acknowledged that S3 did not hold.
func TestS3UploadRetried(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	dir := t.TempDir()
	db := openS3DB(t, dir, s3Packs(t, srv, "retry/"), 1)
	defer db.Close()
	n := ns(t, db, "a")
	b := random(9, 1<<20)
	if err := n.Put(ctx, cas.Sum(b), b); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := db.Flush(ctx); err == nil {
		t.Fatal("a flush with S3 down succeeded")
	}
	if err := n.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(b)); err == nil {
		t.Fatal("a head moved onto a blob whose pack S3 does not hold")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatalf("the flush after S3 came back: %v", err)
	}
	if err := n.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(b)); err != nil {
		t.Fatal(err)
	}
	got, err := n.Get(ctx, cas.Sum(b))
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("get after the retried upload: %v", err)
	}
	var stale *cas.StaleError
	if err := n.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(b)); !errors.As(err, &stale) {
		t.Errorf("the store is not answering as a live one: %v", err)
	}
}

// TestS3SweepDeletesObjects: a collection that rewrites a mostly dead pack
// deletes its object from S3 too; the live blob is read from the new one.
func TestS3SweepDeletesObjects(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	ps := s3Packs(t, srv, "sweep/")
	db := openS3DB(t, t.TempDir(), ps, 1)
	defer db.Close()
	a := ns(t, db, "a")
	var refs []cas.Ref
	for i := range 8 {
		refs = append(refs, put(t, a, random(uint64(40+i), 1<<20)))
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	objects := func() int {
		n := 0
		if err := ps.(*s3store.Store).List(ctx, func(string, int64, time.Time) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := objects()
	st, err := db.Sweep(ctx, cas.SweepOptions{Live: liveSet(map[string][]cas.Ref{"a": refs[:1]}), Before: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksRewritten != 1 || st.Blobs != 7 {
		t.Fatalf("rewrote %d packs and deleted %d blobs, want 1 and 7", st.PacksRewritten, st.Blobs)
	}
	if after := objects(); after != before {
		// One pack rewritten into one new pack: as many objects as before.
		t.Errorf("%d pack objects before the sweep, %d after", before, after)
	}
	mustHave(t, a, map[cas.Ref]bool{refs[0]: true, refs[1]: false})
	if got, err := a.Get(ctx, refs[0]); err != nil || cas.Sum(got) != refs[0] {
		t.Fatalf("the live blob after the rewrite: %v", err)
	}
}

// TestS3CacheFill: a pack read from S3 is copied into the local cache, so
// the reads after it are local (they go on with S3 down); on a cache disk
// that is full, the copy is given up and reads go to S3 and succeed.
func TestS3CacheFill(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	ps := s3Packs(t, srv, "fill/")
	mem := vfs.NewMem()
	var full atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt) && strings.HasSuffix(op.Path, ".fill") {
			return syscall.ENOSPC
		}
		return nil
	}))
	open := func() *cas.DB {
		db, err := cas.Open("store", cas.Options{Create: true, FS: fs, Packs: ps, PacksName: "s3://packs/fill", CacheBytes: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	n := ns(t, db, "a")
	a, b := random(61, 700<<10), random(62, 900<<10)
	put(t, n, a)
	put(t, n, b)
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	dropLocalPacks := func() {
		names, _ := mem.List("store/packs")
		for _, name := range names {
			if strings.HasSuffix(name, ".pack") {
				mem.Remove(mem.PathJoin("store/packs", name))
			}
		}
	}
	dropLocalPacks()

	// A full cache disk: the copy fails, the reads go to S3.
	full.Store(true)
	db = open()
	n = ns(t, db, "a")
	for _, blob := range [][]byte{a, b} {
		if got, err := n.Get(ctx, cas.Sum(blob)); err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("get with the cache disk full: %v", err)
		}
	}
	db.Close()

	// Room again: the first read copies the pack in; with S3 down, the
	// next reads are served from the copy.
	full.Store(false)
	db = open()
	defer db.Close()
	n = ns(t, db, "a")
	if got, err := n.Get(ctx, cas.Sum(a)); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("first get: %v", err)
	}
	srv.Stop()
	if got, err := n.Get(ctx, cas.Sum(b)); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("get from the cached copy with S3 down: %v", err)
	}
}

// TestS3SweepOrphans: a pack object no record names (an upload whose
// flush never committed) is deleted by a collection once it is older than
// the grace, and spared while it is young; a dry run only counts it.
func TestS3SweepOrphans(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	ps := s3Packs(t, srv, "orphans/")
	db := openS3DB(t, t.TempDir(), ps, 0)
	defer db.Close()
	a := ns(t, db, "a")
	live := put(t, a, random(70, 600<<10))
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	orphan := "00000000deadbeef.pack"
	if err := ps.Create(ctx, orphan, strings.NewReader("FERRYPK1 a crashed upload"), 25); err != nil {
		t.Fatal(err)
	}
	exists := func() bool {
		_, err := ps.Size(ctx, orphan)
		return err == nil
	}
	keep := liveSet(map[string][]cas.Ref{"a": {live}})
	for _, tc := range []struct {
		before time.Time
		dry    bool
		want   int
		stays  bool
	}{
		{time.Now().Add(-time.Hour), false, 0, true}, // young: spared
		{time.Now().Add(time.Hour), true, 1, true},   // dry: counted
		{time.Now().Add(time.Hour), false, 1, false}, // old: deleted
	} {
		st, err := db.Sweep(ctx, cas.SweepOptions{Live: keep, Before: tc.before, DryRun: tc.dry})
		if err != nil {
			t.Fatal(err)
		}
		if st.OrphanPacks != tc.want || exists() != tc.stays {
			t.Errorf("sweep before %s (dry %v): %d orphans, object there %v; want %d, %v", tc.before.Format(time.TimeOnly), tc.dry, st.OrphanPacks, exists(), tc.want, tc.stays)
		}
	}
	if got, err := a.Get(ctx, live); err != nil || cas.Sum(got) != live {
		t.Fatalf("the live blob after the orphan sweep: %v", err)
	}
}

// TestMigratePacks: a local store's packs move into S3 (each compared
// byte for byte after its upload) and the store then opens only with its
// pack store, reading from S3 once the local copies are gone; and back:
// downloaded, checked, local again.
func TestMigratePacks(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	ps := s3Packs(t, srv, "migrate/")
	dir := t.TempDir()
	db := openDB(t, dir)
	n := ns(t, db, "a")
	blobs := [][]byte{random(80, 700<<10), random(81, 2<<20), []byte("inline")}
	for _, b := range blobs {
		put(t, n, b)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := cas.MigratePacksOut(ctx, dir, ps, "s3://packs/migrate")
	if err != nil || st.Packs == 0 {
		t.Fatalf("migrate out: %+v %v", st, err)
	}
	if d, err := cas.Open(dir, cas.Options{}); !errors.Is(err, cas.ErrPacksElsewhere) {
		if d != nil {
			d.Close()
		}
		t.Fatalf("opened locally after the migration: %v", err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	for _, p := range packs {
		os.Remove(p)
	}
	db, err = cas.Open(dir, cas.Options{Packs: ps, PacksName: "s3://packs/migrate", CacheBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	n = ns(t, db, "a")
	for i, b := range blobs {
		if got, err := n.Get(ctx, cas.Sum(b)); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("blob %d from S3 after the migration: %v", i, err)
		}
	}
	db.Close()

	if st, err = cas.MigratePacksIn(ctx, dir, ps, "s3://packs/migrate"); err != nil || st.Packs == 0 {
		t.Fatalf("migrate in: %+v %v", st, err)
	}
	srv.Stop() // local again: S3 is not needed
	db = openDB(t, dir)
	n = ns(t, db, "a")
	for i, b := range blobs {
		if got, err := n.Get(ctx, cas.Sum(b)); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("blob %d after migrating back: %v", i, err)
		}
	}
}
