package cas_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/cas/castest"
)

func openDB(t *testing.T, dir string) *cas.DB {
	t.Helper()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func ns(t *testing.T, db *cas.DB, name string) *cas.Namespace {
	t.Helper()
	n, err := db.Namespace(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConformance(t *testing.T) {
	castest.Run(t, func(t *testing.T) castest.Store {
		return ns(t, openDB(t, t.TempDir()), "default")
	})
}

func random(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	_, _ = r.Read(b)
	return b
}

func TestPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	n := ns(t, db, "a")
	big, small := random(1, 3<<20), []byte("small")
	for _, b := range [][]byte{big, small} {
		if err := n.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(small)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	n = ns(t, openDB(t, dir), "a")
	for _, b := range [][]byte{big, small} {
		got, err := n.Get(ctx, cas.Sum(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("after reopen Get = %d bytes, %v", len(got), err)
		}
	}
	if h, err := n.Head(ctx, "r"); err != nil || h != cas.Sum(small) {
		t.Fatalf("head after reopen = %s, %v", h.Short(), err)
	}
}

// TestNamespaceIsolation: a blob stored for A is absent to B until B puts
// the bytes itself, and B cannot point a head or tag at it.
func TestNamespaceIsolation(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	a, b := ns(t, db, "alice"), ns(t, db, "bob")
	data := random(2, 100<<10)
	ref := cas.Sum(data)
	if err := a.Put(ctx, ref, data); err != nil {
		t.Fatal(err)
	}
	if has, _ := b.Has(ctx, []cas.Ref{ref}); has[0] {
		t.Error("bob sees alice's blob in Has")
	}
	if _, err := b.Get(ctx, ref); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("bob Get of alice's blob = %v, want ErrNotFound", err)
	}
	if err := b.SwapHead(ctx, "r", cas.Ref{}, ref); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("bob SwapHead to alice's blob = %v, want ErrNotFound", err)
	}
	// The error for "absent everywhere" is the same as for "alice's".
	_, errAbsent := b.Get(ctx, cas.Sum([]byte("nobody")))
	_, errOther := b.Get(ctx, ref)
	if errAbsent.Error()[len("get ")+12:] != errOther.Error()[len("get ")+12:] {
		t.Errorf("errors differ: %q vs %q", errAbsent, errOther)
	}
	if err := b.Put(ctx, ref, data); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
		t.Errorf("bob Get after his own Put = %v", err)
	}
	if err := a.Delete(ctx, []cas.Ref{ref}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, ref); err != nil {
		t.Errorf("alice's Delete took bob's blob: %v", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	openDB(t, dir)
	_, err := cas.Open(dir, cas.Options{})
	if !errors.Is(err, cas.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := cas.Open(filepath.Join(t.TempDir(), "nothing"), cas.Options{})
	if !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Open of a missing store = %v, want ErrNotFound", err)
	}
}

// TestCorruptPackDetected flips one byte of a blob on disk: Get reports
// ErrCorrupt (never wrong bytes) and Check with ReadData names the blob.
func TestCorruptPackDetected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	n := ns(t, db, "a")
	good, bad := random(3, 1<<20), random(4, 1<<20)
	for _, b := range [][]byte{good, bad} {
		if err := n.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	// Closed, so that reads come from the disk, not the open pack's buffer.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("want one pack, have %v", packs)
	}
	raw, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, bad[1000:1100])
	if i < 0 {
		t.Fatal("blob bytes not found in the pack (compressed?)")
	}
	raw[i] ^= 0x40
	if err := os.WriteFile(packs[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	n = ns(t, db, "a")
	if _, err := n.Get(ctx, cas.Sum(bad)); !errors.Is(err, cas.ErrCorrupt) {
		t.Errorf("Get of a corrupted blob = %v, want ErrCorrupt", err)
	}
	if _, err := n.Get(ctx, cas.Sum(good)); err != nil {
		t.Errorf("Get of the intact blob = %v", err)
	}
	var found []cas.Damage
	st, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { found = append(found, d) })
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Ref != cas.Sum(bad) || st.Damaged != 1 {
		t.Errorf("Check found %+v (%+v), want only %s", found, st, cas.Sum(bad).Short())
	}
	// Without ReadData nothing is read, but the damage found is recorded.
	found = nil
	if _, err := db.Check(ctx, cas.CheckOptions{}, func(d cas.Damage) { found = append(found, d) }); err != nil || len(found) != 1 || found[0].Ref != cas.Sum(bad) {
		t.Errorf("Check without ReadData found %v, %v; want the recorded damage of %s", found, err, cas.Sum(bad).Short())
	}
}

// TestUnrecordedPackRemoved: a pack whose recording batch never committed
// (a crash between write and flush) is removed on open; recorded packs are
// cut back to their recorded length.
func TestUnrecordedPackRemoved(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	n := ns(t, db, "a")
	kept := random(5, 1<<20)
	if err := n.Put(ctx, cas.Sum(kept), kept); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	stray := filepath.Join(dir, "packs", "00000000000000ff.pack")
	if err := os.WriteFile(stray, []byte("FERRYPK1garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(packs[0], os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("unrecorded tail"))
	f.Close()
	// magic, one entry header, the payload (random: stored raw).
	recorded := int64(len("FERRYPK1") + 41 + len(kept))

	n = ns(t, openDB(t, dir), "a")
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("stray pack still there: %v", err)
	}
	if after, _ := os.Stat(packs[0]); after.Size() != recorded {
		t.Errorf("pack size %d, want the tail cut to the recorded %d", after.Size(), recorded)
	}
	if got, err := n.Get(ctx, cas.Sum(kept)); err != nil || !bytes.Equal(got, kept) {
		t.Errorf("Get after recovery: %v", err)
	}
}

func TestCompressesWhenItPays(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	n := ns(t, db, "a")
	text := bytes.Repeat([]byte("the same line, again and again\n"), 100000)
	if err := n.Put(ctx, cas.Sum(text), text); err != nil {
		t.Fatal(err)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var total int64
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	for _, p := range packs {
		st, _ := os.Stat(p)
		total += st.Size()
	}
	if total > int64(len(text))/10 {
		t.Errorf("%d bytes of repetitive text take %d bytes in packs; want compression", len(text), total)
	}
	payload, flags := cas.Encode(nil, random(6, 1<<20))
	if flags != 0 || len(payload) != 1<<20 {
		t.Errorf("random data: flags %v, %d bytes; want stored raw", flags, len(payload))
	}
}

func TestKV(t *testing.T) {
	db := openDB(t, t.TempDir())
	kv, err := db.KV("state")
	if err != nil {
		t.Fatal(err)
	}
	b := kv.Batch()
	for _, k := range []string{"a/1", "a/2", "b/1"} {
		b.Set([]byte(k), []byte("v"+k))
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	var keys []string
	kv.Scan([]byte("a/"), func(k, v []byte) error { keys = append(keys, string(k)); return nil })
	if len(keys) != 2 || keys[0] != "a/1" || keys[1] != "a/2" {
		t.Errorf("Scan(a/) = %v", keys)
	}
	b = kv.Batch()
	b.DeletePrefix([]byte("a/"))
	b.Commit(false)
	if _, err := kv.Get([]byte("a/1")); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Get after DeletePrefix = %v", err)
	}
	if v, err := kv.Get([]byte("b/1")); err != nil || string(v) != "vb/1" {
		t.Errorf("Get(b/1) = %q, %v", v, err)
	}
}

func TestRefText(t *testing.T) {
	r := cas.Sum([]byte("x"))
	p, err := cas.ParseRef(r.String())
	if err != nil || p != r {
		t.Fatalf("ParseRef(String()) = %v, %v", p, err)
	}
	for _, bad := range []string{"", "xyz", r.String()[:63], r.String() + "0", "ZZ" + r.String()[2:], "AB" + r.String()[2:]} {
		if _, err := cas.ParseRef(bad); !errors.Is(err, cas.ErrBadRef) {
			t.Errorf("ParseRef(%q) = %v, want ErrBadRef", bad, err)
		}
	}
}

// TestReadsAcrossThePackBuffer reads blobs back while they are in the open
// pack's buffer, straddling it, written out, after a flush and after a
// reopen: every read sees the same bytes.
func TestReadsAcrossThePackBuffer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	n := ns(t, db, "a")
	var blobs [][]byte
	for i, size := range []int{5000, 3 << 20, 9 << 20, 100 << 10, 1 << 20, 6000, 4<<20 - 41, 12345} {
		b := random(uint64(50+i), size)
		blobs = append(blobs, b)
		if err := n.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		for _, b := range blobs {
			got, err := n.Get(ctx, cas.Sum(b))
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("%s: Get of %d bytes: %v", when, len(b), err)
			}
		}
	}
	check("buffered")
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("flushed")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	n = ns(t, openDB(t, dir), "a")
	check("reopened")
}

// TestEncodeSamples: a large blob is compressed when any part of it
// compresses where the samples fall, stored raw when it is random
// throughout, and a blob with a compressible head still compresses.
func TestEncodeSamples(t *testing.T) {
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog. "), 1<<20/45)
	half := append(append([]byte(nil), text[:len(text)/2]...), random(7, len(text)/2)...)
	cases := []struct {
		name     string
		raw      []byte
		wantZstd bool
	}{
		{"random 1 MiB", random(6, 1<<20), false},
		{"text 1 MiB", text, true},
		{"text then random", half, true},
		{"random 32 KiB (below sampling)", random(8, 32<<10), false},
		{"text 32 KiB (below sampling)", text[:32<<10], true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			payload, flags := cas.Encode(make([]byte, 0, len(tc.raw)), tc.raw)
			if got := flags&cas.FlagZstd != 0; got != tc.wantZstd {
				t.Fatalf("compressed %v, want %v", got, tc.wantZstd)
			}
			if tc.wantZstd && len(payload) >= len(tc.raw) {
				t.Fatalf("compressed to %d of %d bytes", len(payload), len(tc.raw))
			}
			back, err := cas.Decode(nil, cas.Sum(tc.raw), flags, payload, len(tc.raw))
			if err != nil || !bytes.Equal(back, tc.raw) {
				t.Fatalf("round trip: %v", err)
			}
		})
	}
}

// TestSmallStoreFootprint: a store's fixed footprint grows with its data.
// A new store with a few blobs takes a few megabytes on disk, not the
// 18 MB of a WAL preallocated for a 16 MiB memtable; a store of 300 MB
// gets the full memtable.
func TestSmallStoreFootprint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := db.Namespace("n")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		b := []byte(fmt.Sprintf("blob %d", i))
		if err := ns.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var used int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		var st syscall.Stat_t
		if err == nil && syscall.Stat(p, &st) == nil && d.Type().IsRegular() {
			used += st.Blocks * 512
		}
		return nil
	})
	if used > 4<<20 {
		t.Errorf("a store of 100 small blobs uses %d KiB on disk", used>>10)
	}
	db.Close()
	if got := cas.MemTableFor(dir); got != 1<<20 {
		t.Errorf("memtable of a tiny store: %d", got)
	}
	f, err := os.Create(filepath.Join(dir, "packs", "big"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(300 << 20)
	f.Close()
	if got := cas.MemTableFor(dir); got != 16<<20 {
		t.Errorf("memtable of a 300 MB store: %d MiB, want 16", got>>20)
	}
}
