package gc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// Namespace is what the mark reads: blobs and the named pointers.
type Namespace interface {
	cas.Getter
	Roots(ctx context.Context) ([]string, error)
	Head(ctx context.Context, root string) (cas.Ref, error)
	History(ctx context.Context, root string) ([]cas.HistoryEntry, error)
	Tags(ctx context.Context, root string) (map[string]cas.Ref, error)
}

// MarkStats counts what a mark found live.
type MarkStats struct {
	Roots    int `json:"roots"`
	Versions int `json:"versions"`
	Objects  int `json:"objects"`
	Chunks   int `json:"chunks"`
}

// Mark returns every blob a namespace keeps: for each root its head, the
// versions in its history and its tagged versions, each with everything
// under its tree, plus everything under pins (shares). Parent links are
// not followed: a forgotten version is gone even if a kept one names it.
func Mark(ctx context.Context, ns Namespace, pins []cas.Ref) (*Live, MarkStats, error) {
	m := &marker{ns: ns, walked: cas.RefSet{}}
	roots, err := ns.Roots(ctx)
	if err != nil {
		return nil, m.st, fmt.Errorf("mark: %w", err)
	}
	m.st.Roots = len(roots)
	for _, root := range roots {
		var keep []cas.Ref
		head, err := ns.Head(ctx, root)
		if err != nil && !errors.Is(err, cas.ErrNotFound) {
			return nil, m.st, fmt.Errorf("mark %s: %w", root, err)
		}
		if !head.IsZero() {
			keep = append(keep, head)
		}
		hist, err := ns.History(ctx, root)
		if err != nil {
			return nil, m.st, fmt.Errorf("mark %s: %w", root, err)
		}
		for _, h := range hist {
			keep = append(keep, h.Ref)
		}
		tags, err := ns.Tags(ctx, root)
		if err != nil {
			return nil, m.st, fmt.Errorf("mark %s: %w", root, err)
		}
		for _, r := range tags {
			keep = append(keep, r)
		}
		for _, r := range keep {
			if err := m.object(ctx, r, 0); err != nil {
				return nil, m.st, fmt.Errorf("mark %s: %w", root, err)
			}
		}
	}
	for _, r := range pins {
		if err := m.object(ctx, r, 0); err != nil {
			return nil, m.st, fmt.Errorf("mark pin %s: %w", r.Short(), err)
		}
	}
	// Sorted in place: one array of refs at the peak, not two.
	refs := m.chunks
	m.chunks = nil
	for r := range m.walked {
		refs = append(refs, r)
	}
	slices.SortFunc(refs, cas.Ref.Compare)
	refs = slices.Compact(refs)
	m.st.Chunks = len(refs) - m.st.Objects
	return &Live{refs: refs}, m.st, nil
}

// Live is the set of blobs a namespace keeps: sorted refs, 32 bytes each,
// where a map would take twice that and more.
type Live struct{ refs []cas.Ref }

// Has reports whether r is live.
func (l *Live) Has(r cas.Ref) bool {
	_, ok := slices.BinarySearchFunc(l.refs, r, cas.Ref.Compare)
	return ok
}

// Len is the number of live blobs.
func (l *Live) Len() int { return len(l.refs) }

type marker struct {
	ns Namespace
	// walked holds the objects walked; chunks the chunks met (with the
	// few repeats that files sharing chunks give, removed at the end).
	walked cas.RefSet
	chunks []cas.Ref
	st     MarkStats
}

// maxDepth bounds nesting (trees within trees, parts within files) so a
// crafted cycle-free but deep object chain cannot exhaust the stack.
const maxDepth = 512

// object marks ref and, if it is an object, what it names. A missing
// object is left for check to report: the mark keeps what it can reach.
func (m *marker) object(ctx context.Context, ref cas.Ref, depth int) error {
	if m.walked.Has(ref) {
		return nil
	}
	if depth > maxDepth {
		return fmt.Errorf("%w: objects nest deeper than %d", index.ErrMalformed, maxDepth)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := m.ns.Get(ctx, ref)
	if errors.Is(err, cas.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	m.walked.Add(ref)
	m.st.Objects++
	typ, err := index.TypeOf(b)
	if err != nil {
		return fmt.Errorf("object %s: %w", ref.Short(), err)
	}
	switch typ {
	case index.TypeVersion:
		v, err := index.DecodeVersion(b)
		if err != nil {
			return fmt.Errorf("version %s: %w", ref.Short(), err)
		}
		m.st.Versions++
		return m.object(ctx, v.Root, depth+1)
	case index.TypeTree:
		t, err := index.DecodeTree(b)
		if err != nil {
			return fmt.Errorf("tree %s: %w", ref.Short(), err)
		}
		for _, e := range t.Entries {
			if e.Kind == index.KindFile || e.Kind == index.KindDir {
				if err := m.object(ctx, e.Ref, depth+1); err != nil {
					return err
				}
			}
		}
	case index.TypeFile:
		f, err := index.DecodeFile(b)
		if err != nil {
			return fmt.Errorf("file %s: %w", ref.Short(), err)
		}
		for _, c := range f.Chunks {
			m.chunks = append(m.chunks, c.Ref)
		}
		for _, p := range f.Parts {
			if err := m.object(ctx, p.Ref, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
