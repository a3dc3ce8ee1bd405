package index

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
)

// ErrTooBig: a walk would visit far more entries than the trees it reads
// hold (a DAG bomb: a few small trees whose entries all name one subtree
// describe a folder of 10^15 paths), or an object is larger than allowed.
var ErrTooBig = errors.New("too big")

// Walks that name every path (Walk, Diff, Merge) visit each entry under
// each path, so repeats multiply. Each such walk charges the entries it
// visits against the bytes of the distinct trees it has read: it may
// visit MinWalkEntries entries, and one more per byte of distinct tree
// data, about forty times what trees without repeats hold. Beyond that it
// stops with ErrTooBig, after work and memory proportional to what the
// version really holds. Walks over distinct objects only (check, gc's
// mark, a share's reach, a commit's presence check of what it adds) need
// no such budget: they visit each object once.
const MinWalkEntries = 1 << 20

// Budget is one walk's, for walks written outside this package.
type Budget = budget

// NewBudget returns a fresh walk budget.
func NewBudget() *Budget { return newBudget() }

// LoadTree reads the tree ref through g and charges its entries to the
// budget (ErrTooBig when they pass it).
func (b *budget) LoadTree(ctx context.Context, g cas.Getter, ref cas.Ref) (*Tree, error) {
	return b.loadTree(ctx, g, ref)
}

// budget is one walk's. It also keeps the trees it read, up to
// cacheBytes of them, for the walk to meet again: a tree a version repeats
// is decoded once (the trees it returns are shared: read, never changed).
type budget struct {
	entries, allowance int64
	seen               map[cas.Ref]*Tree // nil for a tree not kept
	cached             int64
}

const cacheBytes = 4 << 20

func newBudget() *budget {
	return &budget{allowance: MinWalkEntries, seen: map[cas.Ref]*Tree{}}
}

// loadTree reads the tree ref through g and charges its entries.
func (b *budget) loadTree(ctx context.Context, g cas.Getter, ref cas.Ref) (*Tree, error) {
	if ref.IsZero() {
		return &Tree{}, nil
	}
	t, known := b.seen[ref]
	if t == nil {
		raw, err := g.Get(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("tree %s: %w", ref.Short(), err)
		}
		if t, err = DecodeTree(raw); err != nil {
			return nil, fmt.Errorf("tree %s: %w", ref.Short(), err)
		}
		if !known {
			b.allowance += int64(len(raw))
		}
		b.seen[ref] = nil
		if b.cached+int64(len(raw)) <= cacheBytes {
			b.seen[ref] = t
			b.cached += int64(len(raw))
		}
	}
	b.entries += int64(len(t.Entries))
	if b.entries > b.allowance {
		return nil, fmt.Errorf("%w: the walk has visited %d entries through only %d distinct trees (%d bytes): a version whose trees repeat one another this much is refused", ErrTooBig, b.entries, len(b.seen), b.allowance-MinWalkEntries)
	}
	return t, nil
}
