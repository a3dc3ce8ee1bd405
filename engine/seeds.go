package engine

import (
	"context"
	"sync"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// seeds finds chunks in the folder's own files, so a pull takes a chunk
// from local disk (a file that moved, a copy, an earlier version kept
// elsewhere in the folder) instead of fetching it. It indexes the files of
// the base version that the stat cache says are on disk unchanged, on
// first use only: a pull that finds everything in old copies never pays.
type seeds struct {
	s    *session
	root cas.Ref
	once sync.Once
	idx  map[cas.Ref]seedLoc
}

type seedLoc struct {
	path string
	off  int64
}

func (x *seeds) Find(ctx context.Context, ref cas.Ref) (string, int64, bool) {
	x.once.Do(func() { x.build(ctx) })
	l, ok := x.idx[ref]
	return l.path, l.off, ok
}

func (x *seeds) build(ctx context.Context) {
	x.idx = map[cas.Ref]seedLoc{}
	if x.root.IsZero() {
		return
	}
	cache := x.s.f.StatCache()
	g := x.s.objects()
	_ = index.Walk(ctx, g, x.root, func(p string, e index.Entry) error {
		if e.Kind != index.KindFile || e.Size == 0 {
			return nil
		}
		st, ok := cache.Lookup(p)
		if !ok || st.Ref != e.Ref {
			return nil
		}
		chunks, _, err := index.Chunks(ctx, g, e.Ref)
		if err != nil {
			return nil
		}
		var off int64
		for _, c := range chunks {
			if _, dup := x.idx[c.Ref]; !dup {
				x.idx[c.Ref] = seedLoc{path: p, off: off}
			}
			off += int64(c.Len)
		}
		return nil
	})
}
