package index

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferry-sync/ferry/cas"
)

// Conflict is one path both sides changed to different content. The remote
// side keeps the name; the local side is kept as Copy, a sibling named
// NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.EXT (Syncthing's format).
type Conflict struct {
	Path string
	Copy string
	// Kind says what collided: "content" (two files or links), "dir-file"
	// (a directory and a file or link), or ConflictOverridden.
	Kind string
}

// ConflictOverridden is the kind of a conflict record with no copy: an
// override replaced the remote's change to Path with the local state;
// the version's first parent holds what the remote had.
const ConflictOverridden = "overridden"

// MergeOptions name the local device and the time, for conflict names.
type MergeOptions struct {
	Device string
	Now    time.Time
	// LostDeletion, if set, is told of each path one side removed and the
	// other changed: the change wins, and the removal is undone
	// (deletedLocally says which side removed it).
	LostDeletion func(path string, deletedLocally bool)
}

// ConflictMarker is in the name of every conflict copy.
const ConflictMarker = ".sync-conflict-"

// ConflictName returns the name of the local copy of name.
func ConflictName(name string, now time.Time, device string) string {
	ext := path.Ext(name)
	base := strings.TrimSuffix(name, ext)
	if base == "" { // ".bashrc": all extension
		base, ext = name, ""
	}
	mark := ConflictMarker + now.UTC().Format("20060102-150405") + "-" + device
	if over := len(base) + len(mark) + len(ext) - MaxNameLen; over > 0 {
		// Keep the name valid: shorten the base, on a UTF-8 boundary.
		cut := max(len(base)-over, 0)
		for cut > 0 && !utf8.RuneStart(base[cut]) {
			cut--
		}
		base = base[:cut]
		if len(base)+len(mark)+len(ext) > MaxNameLen {
			ext = ""
		}
	}
	return base + mark + ext
}

// IsConflictCopy reports whether name is a conflict copy's.
func IsConflictCopy(name string) bool { return strings.Contains(name, ConflictMarker) }

// mergeStore is what a merge reads and writes: it stores the merged trees.
type mergeStore interface {
	cas.Getter
	cas.Putter
}

// Merge merges three trees per path: base (the last state both sides
// agreed on), local and remote. A change on one side wins; the same change
// on both is no conflict; a delete against a modification keeps the
// modification; two different contents keep both (the remote's under the
// name, the local's as a conflict copy); a directory against a file keeps
// both the same way. Merged trees are put into s; the result is the root
// of the merge and the conflicts it recorded, in path order.
//
// Merge is pure: no OS, no network, no clock but opts.Now.
func Merge(ctx context.Context, s mergeStore, base, local, remote cas.Ref, opts MergeOptions) (cas.Ref, []Conflict, error) {
	m := &merger{s: s, opts: opts, b: newBudget()}
	root, err := m.tree(ctx, "", base, local, remote, 0)
	return root, m.conflicts, err
}

type merger struct {
	s         mergeStore
	opts      MergeOptions
	conflicts []Conflict
	b         *budget
}

func (m *merger) tree(ctx context.Context, dir string, b, l, r cas.Ref, depth int) (cas.Ref, error) {
	switch {
	case l == r:
		return l, nil
	case l == b:
		return r, nil
	case r == b:
		return l, nil
	}
	if depth >= MaxDepth {
		return cas.Ref{}, fmt.Errorf("%w: %q is deeper than %d", ErrMalformed, dir, MaxDepth)
	}
	tb, err := m.b.loadTree(ctx, m.s, b)
	if err != nil {
		return cas.Ref{}, err
	}
	tl, err := m.b.loadTree(ctx, m.s, l)
	if err != nil {
		return cas.Ref{}, err
	}
	tr, err := m.b.loadTree(ctx, m.s, r)
	if err != nil {
		return cas.Ref{}, err
	}
	names := map[string]bool{}
	for _, t := range []*Tree{tb, tl, tr} {
		for _, e := range t.Entries {
			names[e.Name] = true
		}
	}
	var out []Entry
	taken := map[string]bool{}
	for name := range names {
		taken[name] = true
	}
	for _, name := range sortedNames(names) {
		if err := ctx.Err(); err != nil {
			return cas.Ref{}, err
		}
		eb, hasB := tb.Find(name)
		el, hasL := tl.Find(name)
		er, hasR := tr.Find(name)
		p := JoinPath(dir, name)
		pick, conflict, err := m.entry(ctx, p, opt(eb, hasB), opt(el, hasL), opt(er, hasR), depth)
		if err != nil {
			return cas.Ref{}, err
		}
		if pick != nil {
			out = append(out, *pick)
		}
		if conflict != nil {
			c := *conflict
			c.Name = m.copyName(name, taken)
			taken[c.Name] = true
			out = append(out, c)
			kind := "content"
			if (c.Kind == KindDir) != (pick != nil && pick.Kind == KindDir) {
				kind = "dir-file"
			}
			m.conflicts = append(m.conflicts, Conflict{Path: p, Copy: JoinPath(dir, c.Name), Kind: kind})
		}
	}
	t, err := NewTree(out)
	if err != nil {
		return cas.Ref{}, err
	}
	enc := EncodeTree(t)
	ref := cas.Sum(enc)
	if err := m.s.Put(ctx, ref, enc); err != nil {
		return cas.Ref{}, err
	}
	return ref, nil
}

func opt(e Entry, ok bool) *Entry {
	if !ok {
		return nil
	}
	return &e
}

func same(a, b *Entry) bool {
	switch {
	case a == nil || b == nil:
		return a == b
	case a.Kind != b.Kind || a.Ref != b.Ref || a.Target != b.Target:
		return false
	case a.Kind == KindDir:
		return a.Mode == b.Mode // a directory's size follows its contents
	}
	return a.Mode == b.Mode && a.MTime == b.MTime && a.Size == b.Size
}

// sameContent ignores metadata: the bytes (or target, or tree) are equal.
func sameContent(a, b *Entry) bool {
	return a != nil && b != nil && a.Kind == b.Kind && a.Ref == b.Ref && a.Target == b.Target
}

// entry merges one name. It returns the entry to keep under the name (nil:
// none) and, for a conflict, the local entry to keep as a copy.
func (m *merger) entry(ctx context.Context, p string, b, l, r *Entry, depth int) (*Entry, *Entry, error) {
	switch {
	case same(l, r):
		return l, nil, nil
	case same(l, b):
		return r, nil, nil
	case same(r, b):
		return l, nil, nil
	case l == nil: // removed here, changed there: the change wins
		m.lostDeletion(p, true)
		return r, nil, nil
	case r == nil:
		m.lostDeletion(p, false)
		return l, nil, nil
	case l.Kind == KindDir && r.Kind == KindDir:
		var bref cas.Ref
		if b != nil && b.Kind == KindDir {
			bref = b.Ref
		}
		ref, err := m.tree(ctx, p, bref, l.Ref, r.Ref, depth+1)
		if err != nil {
			return nil, nil, err
		}
		e := *r
		e.Ref = ref
		if b != nil && l.Mode != b.Mode {
			e.Mode = l.Mode // the local side changed the mode
		}
		return &e, nil, nil
	case sameContent(l, r):
		// Only metadata differs: the newer change wins, no copy.
		if l.MTime > r.MTime {
			return l, nil, nil
		}
		return r, nil, nil
	}
	return r, l, nil
}

func (m *merger) lostDeletion(p string, local bool) {
	if m.opts.LostDeletion != nil {
		m.opts.LostDeletion(p, local)
	}
}

// copyName finds a free conflict name for name in its directory.
func (m *merger) copyName(name string, taken map[string]bool) string {
	c := ConflictName(name, m.opts.Now, m.opts.Device)
	for i := 2; taken[c]; i++ {
		c = ConflictName(name, m.opts.Now, fmt.Sprintf("%s-%d", m.opts.Device, i))
	}
	return c
}

func sortedNames(names map[string]bool) []string {
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	slices.Sort(out) // byte order, as trees sort
	return out
}
