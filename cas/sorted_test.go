package cas_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/ferry-sync/ferry/cas"
)

// TestGetSorted: GetSorted answers what Get answers for every ref, sorted
// or not: flushed blobs, blobs still pending, blobs another namespace
// owns, blobs never put, and blobs put after its iterators were made.
func TestGetSorted(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	n, other := ns(t, db, "n"), ns(t, db, "m")
	blob := func(i int) []byte { return binary.BigEndian.AppendUint64([]byte("sorted "), uint64(i)) }
	var refs []cas.Ref
	add := func(n *cas.Namespace, lo, hi int) {
		for i := lo; i < hi; i++ {
			if err := n.Put(ctx, cas.Sum(blob(i)), blob(i)); err != nil {
				t.Fatal(err)
			}
			refs = append(refs, cas.Sum(blob(i)))
		}
	}
	add(n, 0, 2000)
	add(other, 2000, 2050) // owned by another namespace only
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	add(n, 2050, 2100) // pending
	for i := 2100; i < 2150; i++ {
		refs = append(refs, cas.Sum(blob(i))) // never put
	}
	// Put during the walk, before the walk reaches them.
	late := map[cas.Ref]int{}
	for i := 2150; i < 2200; i++ {
		refs = append(refs, cas.Sum(blob(i)))
		late[cas.Sum(blob(i))] = i
	}
	want := func(r cas.Ref) ([]byte, error) {
		return n.Get(ctx, r)
	}
	for _, sorted := range []bool{true, false} {
		in := slices.Clone(refs)
		if sorted {
			slices.SortFunc(in, func(a, b cas.Ref) int { return bytes.Compare(a[:], b[:]) })
		}
		putLate := sorted
		calls := 0
		err := n.GetSorted(ctx, in, func(i int, b []byte, err error) error {
			calls++
			if putLate && i == 0 {
				for r, j := range late {
					if err := n.Put(ctx, r, blob(j)); err != nil {
						return err
					}
				}
				if err := db.Flush(ctx); err != nil {
					return err
				}
			}
			wb, werr := want(in[i])
			if !bytes.Equal(b, wb) || errors.Is(err, cas.ErrNotFound) != errors.Is(werr, cas.ErrNotFound) || (err == nil) != (werr == nil) {
				t.Errorf("sorted %v: ref %d %s: GetSorted %q, %v; Get %q, %v", sorted, i, in[i].Short(), b, err, wb, werr)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if calls != len(in) {
			t.Errorf("%d calls for %d refs", calls, len(in))
		}
	}
	// What the late puts made owned was found: Get agrees on all of them.
	for r := range late {
		if _, err := n.Get(ctx, r); err != nil {
			t.Errorf("late blob %s: %v", r.Short(), err)
		}
	}
}
