package transport

import (
	"context"
	"errors"
	"testing"

	"github.com/ferry-sync/ferry/cas"
)

// TestSettledSet: what puts record is found with its length until the
// store's Removals counter moves; a put that raced a removal is not
// recorded; a check that failed gives its record back.
func TestSettledSet(t *testing.T) {
	a, b, c := cas.Sum([]byte("a")), cas.Sum([]byte("b")), cas.Sum([]byte("c"))
	tests := []struct {
		name  string
		run   func(s *settled) *settledSet
		found map[cas.Ref]int64 // refs the taken set holds
	}{
		{"recorded", func(s *settled) *settledSet {
			s.add("n", a, 10, 1, 1)
			s.add("n", b, 20, 1, 1)
			return s.take("n", 1)
		}, map[cas.Ref]int64{a: 10, b: 20}},
		{"other namespace", func(s *settled) *settledSet {
			s.add("m", a, 10, 1, 1)
			return s.take("n", 1)
		}, nil},
		{"removal during the put", func(s *settled) *settledSet {
			s.add("n", a, 10, 1, 2)
			return s.take("n", 2)
		}, nil},
		{"removal before the check", func(s *settled) *settledSet {
			s.add("n", a, 10, 1, 1)
			return s.take("n", 2)
		}, nil},
		{"newer puts start over", func(s *settled) *settledSet {
			s.add("n", a, 10, 1, 1)
			s.add("n", b, 20, 2, 2)
			s.add("n", c, 30, 1, 1) // read its counter before b's removal: dropped
			return s.take("n", 2)
		}, map[cas.Ref]int64{b: 20}},
		{"given back after a failed check", func(s *settled) *settledSet {
			s.add("n", a, 10, 1, 1)
			set := s.take("n", 1)
			s.add("n", b, 20, 1, 1)
			s.restore("n", set, 1)
			return s.take("n", 1)
		}, map[cas.Ref]int64{a: 10, b: 20}},
		{"not given back after a removal", func(s *settled) *settledSet {
			s.add("n", a, 10, 1, 1)
			set := s.take("n", 1)
			s.restore("n", set, 2)
			return s.take("n", 2)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s settled
			set := tt.run(&s)
			for _, r := range []cas.Ref{a, b, c} {
				n, ok := set.size(r)
				if want, in := tt.found[r]; ok != in || n != want {
					t.Errorf("size(%s) = %d, %v; want %d, %v", r.Short(), n, ok, want, in)
				}
			}
			var left int64
			for ns, set := range s.byNS {
				if ns == "n" {
					t.Errorf("namespace n still holds %d entries after the take", len(set.refs))
				}
				left += int64(len(set.refs))
			}
			if got := s.total.Load(); got != left {
				t.Errorf("%d entries counted, %d held", got, left)
			}
		})
	}
}

// TestCommitAfterRemoval: the commit check trusts what puts just stored
// only while nothing was removed since. A chunk whose ownership is dropped
// between its put and the commit makes the commit fail as missing, and the
// retry after putting it again succeeds.
func TestCommitAfterRemoval(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := s.dial(t, "a", s.token(t, "a", PermWrite))
	content := []byte("a chunk that goes away")
	ver := commitFile(t, c, content, true)
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.srv.settled.total.Load(); n != 4 {
		t.Fatalf("%d blobs recorded after four puts, want 4", n)
	}
	ns, err := s.db.Namespace("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(ctx, []cas.Ref{cas.Sum(content)}); err != nil {
		t.Fatal(err)
	}
	err = c.SwapHead(ctx, "r", cas.Ref{}, ver)
	if !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("commit after the chunk's ownership was dropped = %v, want not found", err)
	}
	if err := c.Put(ctx, cas.Sum(content), content); err != nil {
		t.Fatal(err)
	}
	if err := c.SwapHead(ctx, "r", cas.Ref{}, ver); err != nil {
		t.Fatalf("commit after the chunk was put again: %v", err)
	}
	if n := s.srv.settled.total.Load(); n != 0 {
		t.Errorf("%d blobs still recorded after the commit, want 0", n)
	}
}
