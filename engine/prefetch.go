package engine

import (
	"context"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// batchGetter fetches many blobs in one exchange (the QUIC client).
type batchGetter interface {
	GetMany(ctx context.Context, refs []cas.Ref, fn func(cas.Ref, []byte) error) error
}

// prefetch brings the trees and file lists a pull from one tree to
// another will read into the folder's cache, a level of the tree at a
// time, in batches: a pull of many small files then costs a few round
// trips, not one per object. Subtrees whose refs did not change are not
// entered. It is an optimization: errors are left for the pull to meet.
func (s *session) prefetch(ctx context.Context, from, to cas.Ref) {
	bg, ok := s.remote.(batchGetter)
	if !ok || to.IsZero() {
		return
	}
	cache := s.f.Cache()
	fetch := func(refs []cas.Ref) {
		var missing []cas.Ref
		if has, err := cache.Has(ctx, refs); err == nil {
			for i, h := range has {
				if !h {
					missing = append(missing, refs[i])
				}
			}
		}
		for i := 0; i < len(missing); i += 4096 {
			_ = bg.GetMany(ctx, missing[i:min(i+4096, len(missing))], func(r cas.Ref, b []byte) error {
				_ = cache.Put(ctx, r, b)
				return nil
			})
		}
	}
	type pair struct{ old, new cas.Ref }
	level := []pair{{from, to}}
	for len(level) > 0 && ctx.Err() == nil {
		var trees []cas.Ref
		for _, p := range level {
			trees = append(trees, p.new)
			if !p.old.IsZero() {
				trees = append(trees, p.old)
			}
		}
		fetch(trees)
		var next []pair
		var files []cas.Ref
		for _, p := range level {
			tn, err := index.LoadTree(ctx, cache, p.new)
			if err != nil {
				continue
			}
			to := &index.Tree{}
			if !p.old.IsZero() {
				if t, err := index.LoadTree(ctx, cache, p.old); err == nil {
					to = t
				}
			}
			for _, e := range tn.Entries {
				o, had := to.Find(e.Name)
				if had && o.Ref == e.Ref && o.Kind == e.Kind {
					continue
				}
				switch e.Kind {
				case index.KindDir:
					var old cas.Ref
					if had && o.Kind == index.KindDir {
						old = o.Ref
					}
					next = append(next, pair{old, e.Ref})
				case index.KindFile:
					files = append(files, e.Ref)
				}
			}
		}
		fetch(files)
		level = next
	}
}
