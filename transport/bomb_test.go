package transport

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/failpoint"
)

// dagBomb puts into p a version of 2^40 files of 1 KiB (a petabyte)
// through 40 distinct trees: each names the one below it twice.
func dagBomb(t *testing.T, ctx context.Context, p interface {
	Put(context.Context, cas.Ref, []byte) error
}) cas.Ref {
	t.Helper()
	put := func(b []byte) cas.Ref {
		r := cas.Sum(b)
		if err := p.Put(ctx, r, b); err != nil {
			t.Fatal(err)
		}
		return r
	}
	data := make([]byte, 1<<10)
	fo, _ := index.FileObjects([]index.ChunkRef{{Ref: put(data), Len: uint32(len(data))}})
	entry := index.Entry{Kind: index.KindFile, Mode: 0o644, Size: int64(len(data)), Ref: put(fo)}
	for level := range 40 {
		a, b := entry, entry
		a.Name, b.Name = "a", "b"
		tr := index.EncodeTree(&index.Tree{Entries: []index.Entry{a, b}})
		entry = index.Entry{Name: fmt.Sprint(level), Kind: index.KindDir, Mode: 0o755, Size: 2 * entry.Size, Ref: put(tr)}
	}
	if entry.Size < 1<<50 {
		t.Fatalf("the bomb is only %d bytes", entry.Size)
	}
	return put(index.EncodeVersion(&index.Version{Root: entry.Ref, Time: time.Unix(1, 0)}))
}

// TestDAGBombCommit (C7): a version of a petabyte of paths through 40
// distinct trees is refused with ETOOBIG after work and memory bounded by
// what it holds, not by its logical size. We refuse rather than accept
// it as a DAG: no device could restore, pull or diff it. While its check
// runs, another tenant's commits and a collection starting go on: the
// check holds no lock.
func TestDAGBombCommit(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	bomber := s.dial(t, "bomber", s.token(t, "bomber", PermWrite))
	other := s.dial(t, "other", s.token(t, "other", PermWrite))
	bomb := dagBomb(t, ctx, bomber)
	if err := bomber.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Park the bomb's check at its start; meanwhile a collection begins
	// and another tenant commits twice.
	parked, release := make(chan struct{}), make(chan struct{})
	var first bool
	remove := failpoint.Set("server-commit-check", func() {
		if !first {
			first = true
			close(parked)
			<-release
		}
	})
	defer remove()
	result := make(chan error, 1)
	go func() { result <- bomber.SwapHead(ctx, "r", cas.Ref{}, bomb) }()
	<-parked
	done := make(chan struct{})
	go func() {
		defer close(done)
		resume := s.srv.PauseCommits() // as a collection does to begin
		s.db.BeginGC()
		resume()
		s.db.EndGC()
		for i := range 2 {
			v := commitFile(t, other, []byte(fmt.Sprint("other ", i)), true)
			head, _ := other.Head(ctx, "r")
			if err := other.SwapHead(ctx, "r", head, v); err != nil {
				t.Errorf("the other tenant's commit: %v", err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("a collection and another tenant's commits waited for the bomb's check")
	}
	close(release)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	select {
	case err := <-result:
		if !errors.Is(err, index.ErrTooBig) {
			t.Fatalf("commit of a DAG bomb = %v, want ETOOBIG", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the commit check of a DAG bomb did not end")
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 256<<20 {
		t.Errorf("the check grew the heap by %d MiB", grew>>20)
	}
	if _, err := bomber.Head(ctx, "r"); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("the bomb became the head: %v", err)
	}
}
