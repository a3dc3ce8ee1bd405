// Package castest is the conformance suite for cas.Store and cas.Heads
// implementations: the Pebble DB, and the QUIC client that makes a remote
// look like one. Every implementation runs all of it.
package castest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/ferry-sync/ferry/cas"
)

// Store is what the suite needs of an implementation.
type Store interface {
	cas.Store
	cas.Heads
}

// Opener returns a fresh, empty store for one subtest; it registers its
// own cleanup.
type Opener func(t *testing.T) Store

// HeadMaker puts into s what a head may point at, distinct per seed, and
// returns its ref. A plain store takes any blob; a server takes only
// complete versions, so its suite passes a maker that builds one.
type HeadMaker func(t *testing.T, s Store, seed string) cas.Ref

// anyBlob is the HeadMaker of plain stores.
func anyBlob(t *testing.T, s Store, seed string) cas.Ref {
	return put(t, s, []byte(seed))
}

func blob(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func compressible(n int) []byte {
	return bytes.Repeat([]byte("ferry keeps every version. "), n/27+1)[:n]
}

// Run runs every conformance test against stores made by open.
func Run(t *testing.T, open Opener) { RunWith(t, open, anyBlob) }

// RunWith is Run with a HeadMaker for stores that check what heads name.
func RunWith(t *testing.T, open Opener, mk HeadMaker) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("WrongHash", func(t *testing.T) { testWrongHash(t, open(t)) })
	t.Run("TooBig", func(t *testing.T) { testTooBig(t, open(t)) })
	t.Run("HasMany", func(t *testing.T) { testHasMany(t, open(t)) })
	t.Run("ListDelete", func(t *testing.T) { testListDelete(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open(t)) })
	t.Run("Cancelled", func(t *testing.T) { testCancelled(t, open(t)) })
	t.Run("Heads", func(t *testing.T) { testHeads(t, open(t), mk) })
	t.Run("HeadRace", func(t *testing.T) { testHeadRace(t, open(t), mk) })
	t.Run("Tags", func(t *testing.T) { testTags(t, open(t)) })
}

func put(t *testing.T, s cas.Putter, data []byte) cas.Ref {
	t.Helper()
	ref := cas.Sum(data)
	if err := s.Put(context.Background(), ref, data); err != nil {
		t.Fatalf("Put(%d bytes): %v", len(data), err)
	}
	return ref
}

func testRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	for _, data := range [][]byte{
		{}, []byte("x"), blob(1, 100), compressible(10 << 10), blob(2, 64<<10), blob(3, 4<<20), compressible(4 << 20),
	} {
		ref := put(t, s, data)
		if err := s.Put(ctx, ref, data); err != nil {
			t.Errorf("second Put of %d bytes: %v", len(data), err)
		}
		got, err := s.Get(ctx, ref)
		if err != nil {
			t.Fatalf("Get(%s): %v", ref.Short(), err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("Get(%s) returned %d bytes that differ from the %d put", ref.Short(), len(got), len(data))
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, cas.Sum([]byte("never stored")))
	if !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Get of an absent ref = %v, want ErrNotFound", err)
	}
}

func testWrongHash(t *testing.T, s Store) {
	ctx := context.Background()
	for _, n := range []int{10, 1 << 20} {
		data := blob(4, n)
		claimed := cas.Sum([]byte("something else"))
		err := s.Put(ctx, claimed, data)
		if !errors.Is(err, cas.ErrCorrupt) {
			t.Errorf("Put with a wrong ref = %v, want ErrCorrupt", err)
		}
		if has, err := s.Has(ctx, []cas.Ref{claimed, cas.Sum(data)}); err != nil || has[0] || has[1] {
			t.Errorf("after a refused Put, Has = %v, %v; want nothing stored", has, err)
		}
	}
}

func testTooBig(t *testing.T, s Store) {
	data := make([]byte, cas.MaxBlobSize+1)
	err := s.Put(context.Background(), cas.Sum(data), data)
	if !errors.Is(err, cas.ErrTooBig) {
		t.Errorf("Put of %d bytes = %v, want ErrTooBig", len(data), err)
	}
}

func testHasMany(t *testing.T, s Store) {
	ctx := context.Background()
	var refs []cas.Ref
	want := make([]bool, 300)
	for i := range want {
		data := blob(uint64(100+i), 50+i*97)
		if i%3 == 0 {
			put(t, s, data)
			want[i] = true
		}
		refs = append(refs, cas.Sum(data))
	}
	got, err := s.Has(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Has[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if got, err := s.Has(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Has(nil) = %v, %v", got, err)
	}
}

func testListDelete(t *testing.T, s Store) {
	ctx := context.Background()
	want := cas.RefSet{}
	for i := range 20 {
		want.Add(put(t, s, blob(uint64(200+i), 1000*i)))
	}
	got := cas.RefSet{}
	if err := s.List(ctx, func(r cas.Ref) error { got.Add(r); return nil }); err != nil {
		t.Fatal(err)
	}
	for r := range want {
		if !got.Has(r) {
			t.Errorf("List misses %s", r.Short())
		}
	}
	victims := want.Sorted()[:5]
	if err := s.Delete(ctx, append(victims, cas.Sum([]byte("absent")))); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	has, err := s.Has(ctx, victims)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range has {
		if h {
			t.Errorf("Has(%s) after Delete = true", victims[i].Short())
		}
		if _, err := s.Get(ctx, victims[i]); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("Get(%s) after Delete = %v, want ErrNotFound", victims[i].Short(), err)
		}
	}
}

func testConcurrent(t *testing.T, s Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := range 8 {
				// Half the blobs are shared between workers.
				seed := uint64(300 + i)
				if i%2 == 1 {
					seed = uint64(400 + w*8 + i)
				}
				data := blob(seed, 20000+int(seed))
				if err := s.Put(ctx, cas.Sum(data), data); err != nil {
					errs <- err
					return
				}
				got, err := s.Get(ctx, cas.Sum(data))
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("get after put: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testCancelled(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := []byte("cancelled")
	if err := s.Put(ctx, cas.Sum(data), data); !errors.Is(err, context.Canceled) {
		t.Errorf("Put on a cancelled context = %v, want context.Canceled", err)
	}
}

func testHeads(t *testing.T, s Store, mk HeadMaker) {
	ctx := context.Background()
	a, b := mk(t, s, "version a"), mk(t, s, "version b")
	if _, err := s.Head(ctx, "docs"); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Head of a new root = %v, want ErrNotFound", err)
	}
	if err := s.SwapHead(ctx, "docs", cas.Ref{}, a); err != nil {
		t.Fatalf("first SwapHead: %v", err)
	}
	err := s.SwapHead(ctx, "docs", cas.Ref{}, b)
	var stale *cas.StaleError
	if !errors.As(err, &stale) || !errors.Is(err, cas.ErrStale) || stale.Current != a {
		t.Fatalf("SwapHead from a stale head = %v, want a StaleError naming %s", err, a.Short())
	}
	if err := s.SwapHead(ctx, "docs", a, b); err != nil {
		t.Fatalf("SwapHead a->b: %v", err)
	}
	if h, err := s.Head(ctx, "docs"); err != nil || h != b {
		t.Fatalf("Head = %s, %v; want %s", h.Short(), err, b.Short())
	}
	hist, err := s.History(ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Ref != a || hist[1].Ref != b || hist[0].Seq >= hist[1].Seq || hist[1].Time.Before(hist[0].Time) {
		t.Errorf("History = %+v, want a then b", hist)
	}
	if err := s.SwapHead(ctx, "other", cas.Ref{}, cas.Sum([]byte("never stored"))); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("SwapHead to an absent blob = %v, want ErrNotFound", err)
	}
	roots, err := s.Roots(ctx)
	if err != nil || len(roots) != 1 || roots[0] != "docs" {
		t.Errorf("Roots = %v, %v; want [docs]", roots, err)
	}
	for _, bad := range []string{"", "../x", "a/b", "a\x00b", ".hidden", string(make([]byte, 65))} {
		if _, err := s.Head(ctx, bad); !errors.Is(err, cas.ErrInvalidName) {
			t.Errorf("Head(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
}

// testHeadRace: many writers swap from the same head; exactly one wins.
func testHeadRace(t *testing.T, s Store, mk HeadMaker) {
	ctx := context.Background()
	base := mk(t, s, "base")
	if err := s.SwapHead(ctx, "race", cas.Ref{}, base); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	results := make(chan error, n)
	for i := range n {
		next := mk(t, s, fmt.Sprintf("next %d", i))
		wg.Go(func() { results <- s.SwapHead(ctx, "race", base, next) })
	}
	wg.Wait()
	close(results)
	wins := 0
	for err := range results {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, cas.ErrStale):
			t.Errorf("losing SwapHead = %v, want ErrStale", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d racing SwapHeads won, want exactly 1", wins, n)
	}
}

func testTags(t *testing.T, s Store) {
	ctx := context.Background()
	a := put(t, s, []byte("tagged"))
	if err := s.SetTag(ctx, "docs", "release-1", a); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTag(ctx, "docs", "ghost", cas.Sum([]byte("absent"))); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("SetTag to an absent blob = %v, want ErrNotFound", err)
	}
	tags, err := s.Tags(ctx, "docs")
	if err != nil || len(tags) != 1 || tags["release-1"] != a {
		t.Fatalf("Tags = %v, %v", tags, err)
	}
	if err := s.SetTag(ctx, "docs", "release-1", cas.Ref{}); err != nil {
		t.Fatal(err)
	}
	if tags, _ := s.Tags(ctx, "docs"); len(tags) != 0 {
		t.Errorf("Tags after removal = %v", tags)
	}
}
