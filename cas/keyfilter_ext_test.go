package cas_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/ferry-sync/ferry/cas"
)

// TestKeyFilterNeverHidesAKey: with the absent-key filter in use, and
// while it is rebuilt under a stream of puts, every blob put is found,
// owned and readable, before and after a reopen; blobs never put are not.
func TestKeyFilterNeverHidesAKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	n0 := ns(t, db, "n")
	blob := func(i int) []byte { return binary.BigEndian.AppendUint64([]byte("blob "), uint64(i)) }
	put := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if err := n0.Put(ctx, cas.Sum(blob(i)), blob(i)); err != nil {
				t.Error(err)
				return
			}
			if i%100 == 0 {
				if err := n0.Flush(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}
	check := func(db *cas.DB, n int) {
		t.Helper()
		nsn := ns(t, db, "n")
		refs := make([]cas.Ref, 0, n+100)
		for i := range n + 100 {
			refs = append(refs, cas.Sum(blob(i)))
		}
		has, err := nsn.Has(ctx, refs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range refs {
			if has[i] != (i < n) {
				t.Fatalf("blob %d: has %v, want %v", i, has[i], i < n)
			}
			b, err := nsn.Get(ctx, r)
			switch {
			case i < n && (err != nil || string(b) != string(blob(i))):
				t.Fatalf("blob %d: get %q, %v", i, b, err)
			case i >= n && !errors.Is(err, cas.ErrNotFound):
				t.Fatalf("blob %d never put: get %v, want not found", i, err)
			}
		}
	}
	put(0, 5_000)
	if !db.KeyFilterReady() {
		t.Fatal("no key filter after a build")
	}
	check(db, 5_000)
	// Puts while a new filter is built: its iterator started before them.
	var wg sync.WaitGroup
	wg.Go(func() { put(5_000, 20_000) })
	for range 5 {
		db.KeyFilterRebuild()
		db.KeyFilterWait()
	}
	wg.Wait()
	db.KeyFilterWait()
	check(db, 20_000)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = cas.Open(dir, cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if !db.KeyFilterReady() {
		t.Fatal("no key filter after reopening")
	}
	check(db, 20_000)
}
