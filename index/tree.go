package index

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-sync/ferry/cas"
)

// NewTree sorts entries by name and checks them as DecodeTree would, so
// that what a writer encodes always decodes.
func NewTree(entries []Entry) (*Tree, error) {
	slices.SortFunc(entries, func(a, b Entry) int { return cmp.Compare(a.Name, b.Name) })
	t := &Tree{Entries: entries}
	if _, err := DecodeTree(EncodeTree(t)); err != nil {
		return nil, err
	}
	return t, nil
}

// LoadTree reads and decodes the tree ref; the zero ref is the empty tree.
func LoadTree(ctx context.Context, g cas.Getter, ref cas.Ref) (*Tree, error) {
	if ref.IsZero() {
		return &Tree{}, nil
	}
	b, err := g.Get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", ref.Short(), err)
	}
	t, err := DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", ref.Short(), err)
	}
	return t, nil
}

// LoadVersion reads and decodes the version ref.
func LoadVersion(ctx context.Context, g cas.Getter, ref cas.Ref) (*Version, error) {
	b, err := g.Get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", ref.Short(), err)
	}
	v, err := DecodeVersion(b)
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", ref.Short(), err)
	}
	return v, nil
}

// Lookup returns the entry at the slash-separated path below the tree
// root. The empty path names the root itself, as a dir entry.
func Lookup(ctx context.Context, g cas.Getter, root cas.Ref, path string) (Entry, error) {
	e := Entry{Kind: KindDir, Ref: root, Mode: 0o755}
	if path == "" {
		return e, nil
	}
	if err := ValidPath(path); err != nil {
		return Entry{}, err
	}
	for _, name := range strings.Split(path, "/") {
		if e.Kind != KindDir {
			return Entry{}, fmt.Errorf("%s: %w", path, cas.ErrNotFound)
		}
		t, err := LoadTree(ctx, g, e.Ref)
		if err != nil {
			return Entry{}, err
		}
		var ok bool
		if e, ok = t.Find(name); !ok {
			return Entry{}, fmt.Errorf("%s: %w", path, cas.ErrNotFound)
		}
	}
	return e, nil
}

// Walk calls fn for every entry below the tree root, depth first, parents
// before children, names in order. Returning SkipDir from fn for a dir
// skips its contents. Its work is bounded by a walk budget (budget.go).
func Walk(ctx context.Context, g cas.Getter, root cas.Ref, fn func(path string, e Entry) error) error {
	return walk(ctx, g, newBudget(), "", root, 0, fn)
}

// SkipDir tells Walk not to descend.
var SkipDir = fmt.Errorf("index: skip dir")

func walk(ctx context.Context, g cas.Getter, b *budget, dir string, ref cas.Ref, depth int, fn func(string, Entry) error) error {
	if depth >= MaxDepth {
		return fmt.Errorf("%w: %q is deeper than %d", ErrMalformed, dir, MaxDepth)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := b.loadTree(ctx, g, ref)
	if err != nil {
		return err
	}
	for _, e := range t.Entries {
		p := JoinPath(dir, e.Name)
		err := fn(p, e)
		if err == SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if e.Kind == KindDir {
			if err := walk(ctx, g, b, p, e.Ref, depth+1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
