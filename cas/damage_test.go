package cas_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ferry-sync/ferry/cas"
)

// flipPackByte flips one bit of the stored bytes of blob b in the store
// at dir (closed), found by a run of its bytes.
func flipPackByte(t *testing.T, dir string, b []byte) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	for _, p := range packs {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(raw, b[1000:1100]); i >= 0 {
			raw[i] ^= 0x40
			if err := os.WriteFile(p, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("blob bytes not found in any pack (compressed?)")
}

// TestDamagedBlobHealsOnPut (C10): a blob whose pack bytes rot is found
// on read, recorded as damaged, reported missing to every namespace that
// owns it (so their devices send it again), and replaced by the first
// put of the right bytes; the mark survives a restart until then, and the
// old copy becomes garbage that a sweep reclaims.
func TestDamagedBlobHealsOnPut(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	a, b := ns(t, db, "a"), ns(t, db, "b")
	good, bad := random(5, 1<<20), random(6, 1<<20)
	for _, n := range []*cas.Namespace{a, b} {
		for _, blob := range [][]byte{good, bad} {
			if err := n.Put(ctx, cas.Sum(blob), blob); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	flipPackByte(t, dir, bad)

	db, err := cas.Open(dir, cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b = ns(t, db, "a"), ns(t, db, "b")
	if got, err := a.Get(ctx, cas.Sum(bad)); !errors.Is(err, cas.ErrCorrupt) || got != nil {
		t.Fatalf("Get of the rotten blob = %d bytes, %v; want ErrCorrupt and no bytes", len(got), err)
	}
	for _, n := range []*cas.Namespace{a, b} {
		has, err := n.Has(ctx, []cas.Ref{cas.Sum(good), cas.Sum(bad)})
		if err != nil || !has[0] || has[1] {
			t.Fatalf("namespace %s: Has(good, damaged) = %v, %v; want [true false]", n.Name(), has, err)
		}
		if d, err := n.Damaged(ctx, 10); err != nil || len(d) != 1 || d[0] != cas.Sum(bad) {
			t.Fatalf("namespace %s: Damaged = %v, %v", n.Name(), d, err)
		}
	}
	if d, _ := ns(t, db, "c").Damaged(ctx, 10); len(d) != 0 {
		t.Errorf("a namespace that never owned the blob is told of its damage: %v", d)
	}
	// The mark is durable: a restart does not forget it.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	a, b = ns(t, db, "a"), ns(t, db, "b")
	if has, _ := b.Has(ctx, []cas.Ref{cas.Sum(bad)}); has[0] {
		t.Fatal("after a restart the damaged blob is reported present")
	}
	// Wrong bytes never heal it.
	if err := b.Put(ctx, cas.Sum(bad), good); !errors.Is(err, cas.ErrCorrupt) {
		t.Fatalf("Put of other bytes under the damaged ref = %v", err)
	}
	// One namespace's put of the right bytes heals it for both.
	if err := b.Put(ctx, cas.Sum(bad), bad); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*cas.Namespace{a, b} {
		got, err := n.Get(ctx, cas.Sum(bad))
		if err != nil || !bytes.Equal(got, bad) {
			t.Fatalf("namespace %s: Get after the heal = %d bytes, %v", n.Name(), len(got), err)
		}
		if has, _ := n.Has(ctx, []cas.Ref{cas.Sum(bad)}); !has[0] {
			t.Fatalf("namespace %s: Has after the heal = false", n.Name())
		}
	}
	if d, err := db.Damaged(ctx); err != nil || len(d) != 0 {
		t.Fatalf("damage records after the heal: %v, %v", d, err)
	}
	var found []cas.Damage
	if _, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { found = append(found, d) }); err != nil || len(found) != 0 {
		t.Fatalf("check after the heal: %v, %v", found, err)
	}
	// The rotten copy is garbage: a sweep that keeps everything live
	// rewrites its pack, and the data reads back intact.
	st, err := db.Sweep(ctx, cas.SweepOptions{Live: func(string, cas.Ref) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksRewritten+st.PacksDeleted == 0 || st.DiskFreed < 1<<20 {
		t.Errorf("sweep after the heal reclaimed nothing: %+v", st)
	}
	for _, blob := range [][]byte{good, bad} {
		if got, err := a.Get(ctx, cas.Sum(blob)); err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("after the sweep Get = %d bytes, %v", len(got), err)
		}
	}
}

// TestCheckMarksAndClears: check --read-data marks what it finds, and a
// marked blob that reads sound again (a passing read error) is unmarked.
func TestCheckMarksAndClears(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	a := ns(t, db, "a")
	blob := random(7, 1<<20)
	if err := a.Put(ctx, cas.Sum(blob), blob); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	raw, _ := os.ReadFile(packs[0])
	flipPackByte(t, dir, blob)

	db = openDB(t, dir)
	a = ns(t, db, "a")
	var found []cas.Damage
	if _, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { found = append(found, d) }); err != nil || len(found) != 1 {
		t.Fatalf("check found %v, %v", found, err)
	}
	if has, _ := a.Has(ctx, []cas.Ref{cas.Sum(blob)}); has[0] {
		t.Fatal("check found damage but did not record it")
	}
	// The disk gives the right bytes again (as after a passing error).
	if err := os.WriteFile(packs[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}
	found = nil
	if _, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { found = append(found, d) }); err != nil || len(found) != 0 {
		t.Fatalf("check of sound bytes found %v, %v", found, err)
	}
	if has, _ := a.Has(ctx, []cas.Ref{cas.Sum(blob)}); !has[0] {
		t.Fatal("a blob that verifies again is still reported missing")
	}
}

// flipFS flips a bit in what the disk returns for one block of the files
// it matches: the data block of the first read after it is turned on, and
// of every read of that block after. One rotten block of an sstable.
type flipFS struct {
	vfs.FS
	match  func(name string) bool
	on     atomic.Bool
	target atomic.Int64 // offset of the rotten block; -1 until chosen
	hits   atomic.Int64
}

func (f *flipFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	file, err := f.FS.Open(name, opts...)
	if err != nil || !f.match(name) {
		return file, err
	}
	return &flipFile{File: file, fs: f}, nil
}

type flipFile struct {
	vfs.File
	fs *flipFS
}

func (f *flipFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	// Data blocks are about 4 KiB; the smaller reads Pebble makes in the
	// background (table properties) are left alone.
	if n >= 2<<10 && f.fs.on.Load() && (f.fs.target.CompareAndSwap(-1, off) || f.fs.target.Load() == off) {
		p[n/2] ^= 0x08
		f.fs.hits.Add(1)
	}
	return n, err
}

// TestInlineBlobCorruption (C10, inline blobs): trees and file lists live
// in Pebble's sstables. Bit flips in what the disk returns for a table
// give ErrCorrupt, never wrong bytes; the blob is then missing to Has, and
// a put of its bytes serves it again while the table still rots.
func TestInlineBlobCorruption(t *testing.T) {
	ctx := context.Background()
	fs := &flipFS{FS: vfs.NewMem(), match: func(name string) bool { return strings.HasSuffix(name, ".sst") }}
	fs.target.Store(-1)
	open := func() *cas.DB {
		db, err := cas.Open("store", cas.Options{Create: true, FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	a := ns(t, db, "a")
	// Enough small objects for many data blocks, so that the one holding
	// the tree is not among those read while the store opens.
	tree := []byte("a small object kept inline in Pebble: a tree, say")
	for i := range 2000 {
		b := append(bytes.Clone(tree), byte(i), byte(i>>8))
		if i == 1000 {
			b = tree
		}
		if err := a.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.FlushMemtable(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open() // no table or block cached
	defer db.Close()
	a = ns(t, db, "a")
	fs.on.Store(true)
	got, err := a.Get(ctx, cas.Sum(tree))
	if !errors.Is(err, cas.ErrCorrupt) || got != nil {
		t.Fatalf("Get through rotten sstable reads = %q, %v; want ErrCorrupt", got, err)
	}
	if fs.hits.Load() == 0 {
		t.Fatal("no sstable read was damaged: the test did not test")
	}
	if has, _ := a.Has(ctx, []cas.Ref{cas.Sum(tree)}); has[0] {
		t.Fatal("an unreadable inline blob is reported present")
	}
	if d, _ := a.Damaged(ctx, 10); len(d) != 1 || d[0] != cas.Sum(tree) {
		t.Fatalf("Damaged = %v, want the tree", d)
	}
	// A device sends the tree again: it is served from the new record,
	// though the old table still returns rot.
	if err := a.Put(ctx, cas.Sum(tree), tree); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, cas.Sum(tree)); err != nil || !bytes.Equal(got, tree) {
		t.Fatalf("Get after the re-put = %q, %v", got, err)
	}
	if d, _ := a.Damaged(ctx, 10); len(d) != 0 {
		t.Fatalf("Damaged after the re-put = %v", d)
	}
}

// TestSameRefOtherBytes (C11): with the hash forced to give one ref for
// everything (a collision, or a hashing bug), a put of other bytes under
// a stored ref is refused, never taken for a dedup hit, and the stored
// blob reads as it was.
func TestSameRefOtherBytes(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	a := ns(t, db, "a")
	fixed := cas.Sum([]byte("the one ref"))
	defer cas.ForceHash(func([]byte) cas.Ref { return fixed })()
	first, other := random(30, 10<<10), random(31, 20<<10)
	if err := a.Put(ctx, fixed, first); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, fixed, other); !errors.Is(err, cas.ErrCorrupt) || !strings.Contains(err.Error(), "different bytes") {
		t.Fatalf("put of other bytes under a stored ref = %v, want a refusal", err)
	}
	if got, err := a.Get(ctx, fixed); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("the stored blob reads as %d bytes, %v", len(got), err)
	}
}
