package cas_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// packBytes sums the sizes of the store's pack files.
func packBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	list, err := os.ReadDir(filepath.Join(dir, "packs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func put(t *testing.T, n *cas.Namespace, b []byte) cas.Ref {
	t.Helper()
	ref := cas.Sum(b)
	if err := n.Put(context.Background(), ref, b); err != nil {
		t.Fatal(err)
	}
	return ref
}

func liveSet(m map[string][]cas.Ref) func(string, cas.Ref) bool {
	sets := map[string]cas.RefSet{}
	for ns, refs := range m {
		sets[ns] = cas.RefSet{}
		for _, r := range refs {
			sets[ns].Add(r)
		}
	}
	return func(ns string, r cas.Ref) bool { return sets[ns].Has(r) }
}

func mustHave(t *testing.T, n *cas.Namespace, want map[cas.Ref]bool) {
	t.Helper()
	ctx := context.Background()
	for ref, live := range want {
		has, err := n.Has(ctx, []cas.Ref{ref})
		if err != nil {
			t.Fatal(err)
		}
		if has[0] != live {
			t.Errorf("%s: has %s = %v, want %v", n.Name(), ref.Short(), has[0], live)
		}
		if live {
			if _, err := n.Get(ctx, ref); err != nil {
				t.Errorf("%s: get %s after sweep: %v", n.Name(), ref.Short(), err)
			}
		}
	}
}

func TestSweepRemovesWhatNoNamespaceKeeps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	a, b := ns(t, db, "a"), ns(t, db, "b")
	shared := put(t, a, random(1, 2<<20))
	put(t, b, random(1, 2<<20))
	deadA := put(t, a, random(2, 5<<20))
	deadSmall := put(t, a, []byte("small and dead"))
	keptB := put(t, b, random(3, 1<<20))

	live := liveSet(map[string][]cas.Ref{"a": {shared}, "b": {keptB}})
	dry, err := db.Sweep(ctx, cas.SweepOptions{Live: live, Before: time.Now().Add(time.Hour), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Ownerships != 3 || dry.Blobs != 2 {
		t.Errorf("dry run would drop %d ownerships and %d blobs, want 3 and 2", dry.Ownerships, dry.Blobs)
	}
	st, err := db.Sweep(ctx, cas.SweepOptions{Live: live, Before: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// b's ownership of shared goes, but a keeps the blob.
	if st.Ownerships != 3 || st.Blobs != 2 {
		t.Errorf("dropped %d ownerships and %d blobs, want 3 and 2", st.Ownerships, st.Blobs)
	}
	mustHave(t, a, map[cas.Ref]bool{shared: true, deadA: false, deadSmall: false})
	mustHave(t, b, map[cas.Ref]bool{shared: false, keptB: true})
	after := packBytes(t, dir)
	if live := int64(3 << 20); after > live+live/10 {
		t.Errorf("packs hold %d bytes after the sweep, want about %d", after, live)
	}
	if st.DiskFreed < 5<<20 {
		t.Errorf("sweep says it freed %d bytes, want at least 5 MiB", st.DiskFreed)
	}
	cst, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { t.Errorf("check after sweep: %s: %s", d.Ref.Short(), d.Err) })
	if err != nil || cst.Blobs != 2 {
		t.Fatalf("check after sweep: %v, %d blobs, want 2", err, cst.Blobs)
	}
	// The survivors are still there after a reopen.
	db.Close()
	db = openDB(t, dir)
	mustHave(t, ns(t, db, "a"), map[cas.Ref]bool{shared: true, deadA: false})
	mustHave(t, ns(t, db, "b"), map[cas.Ref]bool{keptB: true})
}

func TestSweepSparesTheYoungAndTheDryRun(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	db, err := cas.Open(t.TempDir(), cas.Options{Create: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := ns(t, db, "a")
	old := put(t, a, random(4, 1<<20))
	now = now.Add(2 * time.Hour)
	young := put(t, a, random(5, 1<<20))
	nothing := func(string, cas.Ref) bool { return false }

	st, err := db.Sweep(ctx, cas.SweepOptions{Live: nothing, Before: now.Add(-time.Hour), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Blobs != 1 {
		t.Errorf("dry run would delete %d blobs, want 1", st.Blobs)
	}
	mustHave(t, a, map[cas.Ref]bool{old: true, young: true})

	if _, err := db.Sweep(ctx, cas.SweepOptions{Live: nothing, Before: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	mustHave(t, a, map[cas.Ref]bool{old: false, young: true})
	// A put of an existing blob renews its grace.
	now = now.Add(10 * time.Hour)
	put(t, a, random(5, 1<<20))
	if _, err := db.Sweep(ctx, cas.SweepOptions{Live: nothing, Before: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	mustHave(t, a, map[cas.Ref]bool{young: true})
}

// TestSweepSparesWhatWritersSawDuringGC: between BeginGC and the sweep, a
// blob reported present by Has, read by Get or put is kept even though the
// mark (taken earlier) did not see it.
func TestSweepSparesWhatWritersSawDuringGC(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	a := ns(t, db, "a")
	seen := put(t, a, random(6, 1<<20))
	read := put(t, a, random(7, 1<<20))
	dead := put(t, a, random(8, 1<<20))
	db.BeginGC()
	defer db.EndGC()
	if has, err := a.Has(ctx, []cas.Ref{seen}); err != nil || !has[0] {
		t.Fatal(has, err)
	}
	if _, err := a.Get(ctx, read); err != nil {
		t.Fatal(err)
	}
	fresh := put(t, a, random(9, 1<<20))
	_, err := db.Sweep(ctx, cas.SweepOptions{Live: func(string, cas.Ref) bool { return false }, Before: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	mustHave(t, a, map[cas.Ref]bool{seen: true, read: true, fresh: true, dead: false})
}

// TestSweepRepacksMostlyDeadPacks: a pack with one live blob among many
// dead ones is rewritten, and the live blob reads back from its new place.
func TestSweepRepacksMostlyDeadPacks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	a := ns(t, db, "a")
	var refs []cas.Ref
	for i := range 8 {
		refs = append(refs, put(t, a, random(uint64(20+i), 1<<20)))
	}
	st, err := db.Sweep(ctx, cas.SweepOptions{Live: liveSet(map[string][]cas.Ref{"a": refs[:1]}), Before: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksRewritten != 1 || st.Blobs != 7 {
		t.Errorf("rewrote %d packs and deleted %d blobs, want 1 and 7", st.PacksRewritten, st.Blobs)
	}
	if n := packBytes(t, dir); n > 1<<20+4096 {
		t.Errorf("packs hold %d bytes, want about 1 MiB", n)
	}
	mustHave(t, a, map[cas.Ref]bool{refs[0]: true, refs[1]: false})
	if _, err := a.Get(ctx, refs[1]); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("get of a swept blob: %v, want ErrNotFound", err)
	}
}

// TestNamespacesListsEveryNamespaceWithData: a namespace with blobs or a
// head but no config record is still listed, so a collection marks it.
func TestNamespacesListsEveryNamespaceWithData(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	put(t, ns(t, db, "blobs-only"), []byte("x"))
	h := ns(t, db, "head-only")
	ref := put(t, h, []byte("y"))
	if err := h.SwapHead(ctx, "r", cas.Ref{}, ref); err != nil {
		t.Fatal(err)
	}
	if err := ns(t, db, "config-only").SetConfig(ctx, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	got, err := db.Namespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[blobs-only config-only head-only]"; fmt.Sprint(got) != want {
		t.Errorf("namespaces %v, want %s", got, want)
	}
}
