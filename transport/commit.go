package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

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
func (s *Server) checkCommit(ctx context.Context, ns *cas.Namespace, root string, old, newRef cas.Ref) (err error) {
	failpoint.Hit("server-commit-check")
	var known *settledSet
	if !s.db.Shared() {
		known = s.settled.take(ns.Name(), s.db.Removals())
		defer func() {
			if err != nil {
				s.settled.restore(ns.Name(), known, s.db.Removals())
			}
		}()
	}
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
		// What puts since the last commit stored needs no lookup.
		var refs []cas.Ref
		var ask []int
		sizes := make([]int64, len(chunks))
		for i, c := range chunks {
			if n, ok := known.size(c.Ref); ok {
				sizes[i] = n
				continue
			}
			refs = append(refs, c.Ref)
			ask = append(ask, i)
		}
		if len(refs) > 0 {
			got, err := ns.Sizes(ctx, refs)
			if err != nil {
				return err
			}
			for j, i := range ask {
				sizes[i] = got[j]
			}
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
	// New files are read in batches sorted by ref (see cas.GetSorted).
	var newFiles []newFile
	checkFiles := func() error {
		slices.SortFunc(newFiles, func(a, b newFile) int { return bytes.Compare(a.ref[:], b.ref[:]) })
		refs := make([]cas.Ref, len(newFiles))
		for i, f := range newFiles {
			refs[i] = f.ref
		}
		err := ns.GetSorted(ctx, refs, func(i int, b []byte, err error) error {
			f := newFiles[i]
			var list []index.ChunkRef
			var size int64
			if err == nil {
				list, size, err = index.Chunks(ctx, knownGetter{ref: f.ref, b: b, g: ns}, f.ref)
			}
			switch {
			case errors.Is(err, cas.ErrNotFound):
				if len(missing) < maxMissing {
					missing = append(missing, f.ref)
				}
				return nil
			case err != nil:
				return fmt.Errorf("%s: %w", f.path, err)
			case size != f.size:
				return fmt.Errorf("%w: %s: the entry says %d bytes, its file object %d", index.ErrMalformed, f.path, f.size, size)
			}
			for _, ch := range list {
				chunks = append(chunks, pathChunk{ChunkRef: ch, path: f.path})
				if len(chunks) == MaxRefs {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			return nil
		})
		newFiles = newFiles[:0]
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
		newFiles = append(newFiles, newFile{ref: c.New.Ref, size: c.New.Size, path: c.Path})
		if len(newFiles) == fileBatch {
			if err := checkFiles(); err != nil {
				return err
			}
		}
		if len(missing) >= maxMissing {
			return errStopWalk
		}
		return nil
	})
	if err == nil {
		err = checkFiles()
	}
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

// fileBatch is how many new files a commit check reads at once, sorted:
// the larger the batch, the more of them share a Pebble block.
const fileBatch = 1 << 16

// newFile is a file a commit adds.
type newFile struct {
	ref  cas.Ref
	size int64
	path string
}

// knownGetter hands out b, already read, for ref, and reads the rest
// (the parts of a long file's list) through g.
type knownGetter struct {
	ref cas.Ref
	b   []byte
	g   cas.Getter
}

func (k knownGetter) Get(ctx context.Context, ref cas.Ref) ([]byte, error) {
	if ref == k.ref {
		return k.b, nil
	}
	return k.g.Get(ctx, ref)
}

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
