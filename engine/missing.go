package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// Before a restore writes anything, it finds what of the version the
// store can no longer give (data that retention and gc removed, or that
// is damaged): a restore is whole, or, with --partial, everything but
// those paths, which are named.

// ErrIncomplete: a version cannot be restored whole.
var ErrIncomplete = errors.New("the version cannot be restored whole")

// IncompleteError names what a version lacks.
type IncompleteError struct {
	Version string
	Paths   []string // the first few
	Total   int
}

func (e *IncompleteError) Error() string {
	more := ""
	if e.Total > len(e.Paths) {
		more = fmt.Sprintf(" and %d more", e.Total-len(e.Paths))
	}
	return fmt.Sprintf("version %s cannot be restored whole: the store no longer has the data of %d paths (forgotten and collected, or damaged): %s%s; restore the rest with --partial",
		e.Version, e.Total, strings.Join(e.Paths, ", "), more)
}

func (e *IncompleteError) Is(target error) bool { return target == ErrIncomplete }

// maxNamed bounds the paths an IncompleteError names.
const maxNamed = 20

// missingUnder returns the paths below entry e (at path p) whose data the
// remote lacks: trees and file objects that cannot be read, and files
// with a chunk the remote does not have (a damaged chunk counts as
// missing). Each distinct file object is checked once, its chunks asked
// for in batches; the walk has index's budget, so trees that repeat one
// another into an absurd number of paths end it with ErrTooBig.
func (s *session) missingUnder(ctx context.Context, g cas.Getter, p string, e index.Entry) ([]string, error) {
	var missing []string
	files := cas.RefSet{}
	walk := func(visit func(p string, ref cas.Ref)) error {
		budget := index.NewBudget()
		var tree func(dir string, ref cas.Ref, depth int) error
		tree = func(dir string, ref cas.Ref, depth int) error {
			if depth >= index.MaxDepth {
				return fmt.Errorf("%w: %q is deeper than %d", index.ErrMalformed, dir, index.MaxDepth)
			}
			t, err := budget.LoadTree(ctx, g, ref)
			if lost(err) {
				if visit == nil {
					missing = append(missing, dir)
				}
				return nil
			}
			if err != nil {
				return err
			}
			for _, c := range t.Entries {
				cp := index.JoinPath(dir, c.Name)
				switch c.Kind {
				case index.KindDir:
					if err := tree(cp, c.Ref, depth+1); err != nil {
						return err
					}
				case index.KindFile:
					if visit != nil {
						visit(cp, c.Ref)
					} else {
						files.Add(c.Ref)
					}
				}
			}
			return nil
		}
		switch e.Kind {
		case index.KindDir:
			return tree(p, e.Ref, 0)
		case index.KindFile:
			if visit != nil {
				visit(p, e.Ref)
			} else {
				files.Add(e.Ref)
			}
		}
		return nil
	}
	if err := walk(nil); err != nil {
		return nil, err
	}
	lostFiles, err := s.lostFiles(ctx, g, files)
	if err != nil {
		return nil, err
	}
	if len(lostFiles) > 0 {
		// The paths of the lost files: a second walk, in the rare case.
		err := walk(func(p string, ref cas.Ref) {
			if lostFiles.Has(ref) {
				missing = append(missing, p)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(missing)
	return slices.Compact(missing), nil
}

// lostFiles returns the file objects of files whose list, or a chunk, the
// remote lacks.
func (s *session) lostFiles(ctx context.Context, g cas.Getter, files cas.RefSet) (cas.RefSet, error) {
	out := cas.RefSet{}
	owners := map[cas.Ref][]cas.Ref{} // chunk -> file objects waiting on it
	var refs []cas.Ref
	flush := func() error {
		if len(refs) == 0 {
			return nil
		}
		has, err := s.remote.Has(ctx, refs)
		if err != nil {
			return err
		}
		for i, ok := range has {
			if !ok {
				for _, f := range owners[refs[i]] {
					out.Add(f)
				}
			}
			delete(owners, refs[i])
		}
		refs = refs[:0]
		return nil
	}
	for f := range files {
		chunks, _, err := index.Chunks(ctx, g, f)
		if lost(err) {
			out.Add(f)
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, c := range chunks {
			if _, queued := owners[c.Ref]; !queued {
				refs = append(refs, c.Ref)
			}
			owners[c.Ref] = append(owners[c.Ref], f)
		}
		if len(refs) >= 4096 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	return out, flush()
}

// lost reports whether err means the data is gone (not a passing error).
func lost(err error) bool {
	return errors.Is(err, cas.ErrNotFound) || errors.Is(err, cas.ErrCorrupt)
}

// pruning says what a partial restore leaves out: the missing paths, and
// every directory above one (the only trees that change).
type pruning struct {
	missing, above map[string]bool
}

func newPruning(paths []string) pruning {
	pr := pruning{missing: map[string]bool{}, above: map[string]bool{}}
	for _, p := range paths {
		pr.missing[p] = true
		for i := strings.LastIndexByte(p, '/'); i > 0; i = strings.LastIndexByte(p[:i], '/') {
			pr.above[p[:i]] = true
		}
	}
	return pr
}

// prune returns the tree ref, as a tree of ov, with the entries at the
// missing paths (below dir) replaced by what keep gives for them (the
// target's own entry, left alone) or dropped. Trees with nothing missing
// below them keep their refs.
func (pr pruning) prune(ctx context.Context, g cas.Getter, ov *overlay, dir string, ref cas.Ref, keep func(p string) (index.Entry, bool)) (cas.Ref, error) {
	t, err := index.LoadTree(ctx, g, ref)
	if err != nil {
		return cas.Ref{}, err
	}
	out := make([]index.Entry, 0, len(t.Entries))
	changed := false
	for _, e := range t.Entries {
		p := index.JoinPath(dir, e.Name)
		switch {
		case pr.missing[p]:
			changed = true
			if k, ok := keep(p); ok {
				out = append(out, k)
			}
			continue
		case e.Kind == index.KindDir && pr.above[p]:
			r, err := pr.prune(ctx, g, ov, p, e.Ref, keep)
			if err != nil {
				return cas.Ref{}, err
			}
			changed = changed || r != e.Ref
			e.Ref = r
		}
		out = append(out, e)
	}
	if !changed {
		return ref, nil
	}
	b := index.EncodeTree(&index.Tree{Entries: out})
	r := cas.Sum(b)
	ov.extra[r] = b
	return r, nil
}
