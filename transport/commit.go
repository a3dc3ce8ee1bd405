package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/failpoint"
)

// commit runs check, then move, such that no collection begins between
// them unseen. The check runs without the commit lock: it may walk a large
// version, and neither other tenants' commits nor a collection waiting for
// the lock should wait on it. The move runs under the lock, and only if no
// collection began since the check started (its count is unchanged): a
// collection that began mid-check may not protect what the check found
// before it began, so the check runs again, then under that collection's
// protection. After a few such races the check runs under the lock.
func (s *Server) commit(check, move func() error) error {
	for range maxRechecks {
		epoch := s.db.GCEpoch()
		if err := check(); err != nil {
			return err
		}
		s.commitMu.RLock()
		if s.db.GCEpoch() == epoch {
			err := move()
			s.commitMu.RUnlock()
			return err
		}
		s.commitMu.RUnlock()
	}
	s.commitMu.RLock()
	defer s.commitMu.RUnlock()
	if err := check(); err != nil {
		return err
	}
	return move()
}

// maxRechecks bounds the checks a commit runs outside the lock.
const maxRechecks = 3

// maxMissing bounds the refs a refused commit lists.
const maxMissing = 100

// checkCommit refuses a head move to a version that is not complete in
// the namespace. It walks only what the new version adds over the old one
// (which was checked when it became the head): every new tree must be
// present and pass the strict decoder (so a bad name is EINVALPATH), and
// every new file's list and chunks must be present. The walk names paths
// (the errors do), so it is bounded by index's walk budget: a version
// whose trees repeat one another into, say, a petabyte of paths is
// refused with ETOOBIG after work in proportion to the few trees it
// really holds, rather than accepted as a DAG that no device could then
// restore, diff or pull.
func (s *Server) checkCommit(ctx context.Context, ns *cas.Namespace, root string, old, newRef cas.Ref) error {
	failpoint.Hit("server-commit-check")
	v, err := index.LoadVersion(ctx, ns, newRef)
	if errors.Is(err, cas.ErrNotFound) {
		return &missingError{refs: []cas.Ref{newRef}}
	}
	if err != nil {
		return fmt.Errorf("commit %s: %w", newRef.Short(), err)
	}
	var oldRoot cas.Ref
	if !old.IsZero() {
		if ov, err := index.LoadVersion(ctx, ns, old); err == nil {
			oldRoot = ov.Root
		}
	}
	if _, err := index.LoadTree(ctx, ns, v.Root); errors.Is(err, cas.ErrNotFound) {
		return &missingError{refs: []cas.Ref{v.Root}}
	} else if err != nil {
		return fmt.Errorf("commit %s: %w", newRef.Short(), err)
	}
	var missing []cas.Ref
	var chunks []pathChunk
	flush := func() error {
		if len(chunks) == 0 {
			return nil
		}
		refs := make([]cas.Ref, len(chunks))
		for i, c := range chunks {
			refs[i] = c.Ref
		}
		sizes, err := ns.Sizes(ctx, refs)
		if err != nil {
			return err
		}
		for i, n := range sizes {
			switch c := chunks[i]; {
			case n < 0:
				if len(missing) < maxMissing {
					missing = append(missing, c.Ref)
				}
			case n != int64(c.Len):
				return fmt.Errorf("%w: %s: its file object gives chunk %s %d bytes, the stored chunk has %d", index.ErrMalformed, c.path, c.Ref.Short(), c.Len, n)
			}
		}
		chunks = chunks[:0]
		return nil
	}
	settings, err := s.Settings(ns.Name())
	if err != nil {
		return err
	}
	absent := &absentGetter{g: ns}
	files := cas.RefSet{} // each file object checked once, wherever it repeats
	err = index.Diff(ctx, absent, oldRoot, v.Root, func(c index.Change) error {
		if settings.Portable && c.New != nil && c.Old == nil {
			if err := index.PortableName(c.New.Name); err != nil {
				return fmt.Errorf("%s: %w (the namespace is portable)", c.Path, err)
			}
		}
		if c.New == nil || c.New.Kind != index.KindFile || (c.Old != nil && c.Old.Kind == index.KindFile && c.Old.Ref == c.New.Ref) || files.Has(c.New.Ref) {
			return nil
		}
		files.Add(c.New.Ref)
		list, size, err := index.Chunks(ctx, ns, c.New.Ref)
		switch {
		case errors.Is(err, cas.ErrNotFound):
			if len(missing) < maxMissing {
				missing = append(missing, c.New.Ref)
			}
			return nil
		case err != nil:
			return fmt.Errorf("%s: %w", c.Path, err)
		case size != c.New.Size:
			return fmt.Errorf("%w: %s: the entry says %d bytes, its file object %d", index.ErrMalformed, c.Path, c.New.Size, size)
		}
		for _, ch := range list {
			chunks = append(chunks, pathChunk{ChunkRef: ch, path: c.Path})
			if len(chunks) == MaxRefs {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if len(missing) >= maxMissing {
			return errStopWalk
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		if errors.Is(err, cas.ErrNotFound) && !absent.ref.IsZero() {
			return &missingError{refs: append(missing, absent.ref)}
		}
		return fmt.Errorf("commit %s of %q: %w", newRef.Short(), root, err)
	}
	if err := flush(); err != nil {
		return err
	}
	if len(missing) > 0 {
		return &missingError{refs: missing}
	}
	return nil
}

var errStopWalk = errors.New("stop")

// pathChunk is a chunk a commit adds, with the path that names it.
type pathChunk struct {
	index.ChunkRef
	path string
}

// absentGetter remembers the last ref its getter did not have.
type absentGetter struct {
	g   cas.Getter
	ref cas.Ref
}

func (a *absentGetter) Get(ctx context.Context, ref cas.Ref) ([]byte, error) {
	b, err := a.g.Get(ctx, ref)
	if errors.Is(err, cas.ErrNotFound) {
		a.ref = ref
	}
	return b, err
}
