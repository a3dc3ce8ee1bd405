package index

import (
	"context"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
)

// Change is one difference between two trees: Old is nil for an added
// path, New is nil for a removed one.
type Change struct {
	Path     string
	Old, New *Entry
}

// Op names what a change does, for listings.
func (c Change) Op() string {
	switch {
	case c.Old == nil:
		return "added"
	case c.New == nil:
		return "removed"
	}
	return "modified"
}

// Diff calls fn for each difference between the trees a and b (either may
// be the zero ref: the empty tree). It descends only into directories whose
// refs differ, so its cost follows the size of the change.
//
// The order suits applying the changes to a folder: an added directory
// comes before its contents; a removed directory after them; a modified
// directory after its contents (so its mtime is set last); an entry that
// changes kind is a removal followed by an addition.
//
// Its work is bounded by a walk budget (see budget.go): a version whose
// trees repeat one another past it gives ErrTooBig.
func Diff(ctx context.Context, g cas.Getter, a, b cas.Ref, fn func(Change) error) error {
	if a == b {
		return nil
	}
	d := &differ{g: g, fn: fn, b: newBudget()}
	return d.trees(ctx, "", a, b, 0)
}

type differ struct {
	g  cas.Getter
	fn func(Change) error
	b  *budget
}

func (d *differ) trees(ctx context.Context, dir string, a, b cas.Ref, depth int) error {
	if depth >= MaxDepth {
		return fmt.Errorf("%w: %q is deeper than %d", ErrMalformed, dir, MaxDepth)
	}
	ta, err := d.b.loadTree(ctx, d.g, a)
	if err != nil {
		return err
	}
	tb, err := d.b.loadTree(ctx, d.g, b)
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(ta.Entries) || j < len(tb.Entries) {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case j == len(tb.Entries) || (i < len(ta.Entries) && ta.Entries[i].Name < tb.Entries[j].Name):
			ea := ta.Entries[i]
			if err := d.removed(ctx, JoinPath(dir, ea.Name), ea, depth); err != nil {
				return err
			}
			i++
		case i == len(ta.Entries) || tb.Entries[j].Name < ta.Entries[i].Name:
			eb := tb.Entries[j]
			if err := d.added(ctx, JoinPath(dir, eb.Name), eb, depth); err != nil {
				return err
			}
			j++
		default:
			ea, eb := ta.Entries[i], tb.Entries[j]
			i, j = i+1, j+1
			if ea == eb {
				continue
			}
			p := JoinPath(dir, ea.Name)
			if ea.Kind != eb.Kind {
				if err := d.removed(ctx, p, ea, depth); err != nil {
					return err
				}
				if err := d.added(ctx, p, eb, depth); err != nil {
					return err
				}
				continue
			}
			if ea.Kind == KindDir && ea.Ref != eb.Ref {
				if err := d.trees(ctx, p, ea.Ref, eb.Ref, depth+1); err != nil {
					return err
				}
			}
			if err := d.fn(Change{Path: p, Old: &ea, New: &eb}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *differ) added(ctx context.Context, p string, e Entry, depth int) error {
	if err := d.fn(Change{Path: p, New: &e}); err != nil {
		return err
	}
	if e.Kind != KindDir {
		return nil
	}
	return d.trees(ctx, p, cas.Ref{}, e.Ref, depth+1)
}

func (d *differ) removed(ctx context.Context, p string, e Entry, depth int) error {
	if e.Kind == KindDir {
		if err := d.trees(ctx, p, e.Ref, cas.Ref{}, depth+1); err != nil {
			return err
		}
	}
	return d.fn(Change{Path: p, Old: &e})
}
