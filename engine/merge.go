package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/restore"
	"github.com/ferry-sync/ferry/scan"
)

// ErrTooManyDeletes stops a pull or merge that would delete more of the
// folder than the guard allows (a missing mount must not look like
// "everything was deleted").
var ErrTooManyDeletes = errors.New("too many deletions")

// Deletion guard defaults: a pull or a push stops when it would delete
// more than half the folder's files (and at least guardMinFiles) or more
// than guardFiles, unless forced.
const (
	guardFiles    = 1000
	guardMinFiles = 5
)

// Conflict is a conflict copy a merge made.
type Conflict struct {
	Path string `json:"path"`
	Copy string `json:"copy"`
	Kind string `json:"kind"`
}

// mergeStore reads objects through the session's getter and writes the
// merged trees to the remote (and the folder's cache).
type mergeStore struct {
	cas.Getter
	s *session
}

func (m mergeStore) Put(ctx context.Context, ref cas.Ref, b []byte) error {
	if !m.s.local() {
		_ = m.s.f.Cache().Put(ctx, ref, b)
	}
	return m.s.remote.Put(ctx, ref, b)
}

func (m mergeStore) Flush(ctx context.Context) error { return m.s.remote.Flush(ctx) }

// merged is what a merge did.
type merged struct {
	version   cas.Ref
	conflicts []Conflict
	lost      []LostDeletion
	applied   *restore.Result
}

// LostDeletion is a path one side removed and the other changed: a merge
// keeps the change, so the removal did not happen.
type LostDeletion struct {
	Path string `json:"path"`
	// DeletedBy is "here" (this folder removed it) or "remote".
	DeletedBy string `json:"deleted_by"`
}

// mergeInto merges the folder's scanned state with the remote head over
// their common base, brings the folder to the merge (conflict copies
// included), and moves the head to a version with two parents: the head,
// and a version of the local state (so nothing of either side leaves
// history). A stale head is returned as cas.ErrStale for the caller to
// retry.
func (s *session) mergeInto(ctx context.Context, sc *scan.Result, base, head cas.Ref, message string) (*merged, error) {
	baseRoot, err := s.versionRoot(ctx, base)
	if err != nil {
		return nil, err
	}
	headRoot, err := s.versionRoot(ctx, head)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now().UTC()
	local := &index.Version{Root: sc.Root, Time: now, Device: s.f.Config.Device, Message: "local state, merged", Summary: sc.Summary}
	if !base.IsZero() {
		local.Parents = []cas.Ref{base}
	}
	localRef, err := s.putVersion(ctx, local)
	if err != nil {
		return nil, err
	}
	var lost []LostDeletion
	root, conflicts, err := index.Merge(ctx, mergeStore{Getter: s.objects(), s: s}, baseRoot, sc.Root, headRoot, index.MergeOptions{
		Device: s.f.Config.Device, Now: now,
		LostDeletion: func(p string, here bool) {
			by := "remote"
			if here {
				by = "here"
			}
			lost = append(lost, LostDeletion{Path: p, DeletedBy: by})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if err := s.commitCache(ctx, sc); err != nil {
		return nil, err
	}
	if err := s.conflictContentAtRemote(ctx, root, conflicts); err != nil {
		return nil, err
	}
	m := &merged{lost: lost}
	if m.applied, err = s.apply(ctx, sc.Root, root, sc.Summary.Files+sc.Summary.Symlinks); err != nil {
		return nil, err
	}
	v := &index.Version{Root: root, Parents: []cas.Ref{head, localRef}, Time: now, Device: s.f.Config.Device, Message: message}
	if v.Summary, err = s.summarize(ctx, root); err != nil {
		return nil, err
	}
	for _, c := range conflicts {
		v.Conflicts = append(v.Conflicts, c)
		m.conflicts = append(m.conflicts, Conflict{Path: c.Path, Copy: c.Copy, Kind: c.Kind})
	}
	m.conflicts = append(m.conflicts, aliasConflicts(m.applied)...)
	ref, err := s.putVersion(ctx, v)
	if err != nil {
		return nil, err
	}
	if err := s.remote.Flush(ctx); err != nil {
		return nil, err
	}
	if err := s.remote.SwapHead(ctx, s.root(), head, ref); err != nil {
		return nil, err
	}
	if err := s.f.SetBase(ref); err != nil {
		return nil, err
	}
	m.version = ref
	return m, nil
}

func (s *session) putVersion(ctx context.Context, v *index.Version) (cas.Ref, error) {
	b := index.EncodeVersion(v)
	ref := cas.Sum(b)
	if err := s.remote.Put(ctx, ref, b); err != nil {
		return cas.Ref{}, err
	}
	if !s.local() {
		_ = s.f.Cache().Put(ctx, ref, b)
	}
	return ref, nil
}

// apply brings the folder from tree `from` (what the last scan saw) to
// tree `to`, after the deletion guard. Files that changed on disk since
// the scan are left alone (restore checks each before it replaces it).
func (s *session) apply(ctx context.Context, from, to cas.Ref, files int64) (*restore.Result, error) {
	if err := s.guard(ctx, from, to, files); err != nil {
		return nil, err
	}
	s.prefetch(ctx, from, to)
	base, _ := s.f.Base()
	baseRoot, _ := s.versionRoot(ctx, base)
	return restore.Apply(ctx, s.f.Dir, s.objects(), from, to, s.folderRestore(restore.Options{
		Chunks:      &countingGetter{g: s.remote},
		Cache:       s.f.StatCache(),
		Seeds:       &seeds{s: s, root: baseRoot},
		Workers:     s.restoreWorkers(),
		VerifyLocal: true,
		Logger:      s.opts.Logger,
	}))
}

// folderRestore adds to a restore into the folder itself what it needs to
// know of the folder's disk: its mapped names, and whether it folds case.
func (s *session) folderRestore(o restore.Options) restore.Options {
	o.Names, o.CaseFold, o.Device, o.Now = s.f.Names(), s.f.Config.CaseFold, s.f.Config.Device, s.opts.Now
	if o.Progress == nil {
		o.Progress = downloadProgress(s.opts.Progress)
	}
	return o
}

// downloadProgress passes a restore's events on as the "download" phase.
func downloadProgress(fn func(Progress)) func(restore.Event) {
	if fn == nil {
		return nil
	}
	return func(e restore.Event) {
		action := ""
		if e.Files > 0 && e.Path != "" {
			action = "written"
		}
		fn(Progress{Phase: "download", Files: e.Files, Bytes: e.Bytes, TotalFiles: e.TotalFiles, TotalBytes: e.TotalBytes, Path: e.Path, Action: action})
	}
}

// aliasConflicts lists as conflicts the names a folding filesystem could
// not hold: each is kept on disk under a conflict copy's name.
func aliasConflicts(rr *restore.Result) []Conflict {
	var out []Conflict
	for _, a := range rr.Aliases {
		out = append(out, Conflict{Path: a.Path, Copy: a.Disk, Kind: "case"})
	}
	return out
}

// guard refuses to apply a change that deletes more than half of the
// folder's files or more than guardFiles, unless forced.
func (s *session) guard(ctx context.Context, from, to cas.Ref, files int64) error {
	removed, err := s.deletions(ctx, from, to)
	if err != nil || !tooMany(removed, files) {
		return err
	}
	return cas.Errorf(ErrTooManyDeletes, "the remote would delete %d of the folder's %d files; if that is right, run again with --force", removed, files)
}

func tooMany(removed, files int64) bool {
	return removed > guardFiles || (removed >= guardMinFiles && removed*2 > files)
}

// deletions counts the files and links a change from from to to removes:
// paths that go whose content is nowhere in the new tree. A renamed or
// moved directory deletes nothing, however many files it holds.
func (s *session) deletions(ctx context.Context, from, to cas.Ref) (int64, error) {
	if s.opts.Force || from.IsZero() {
		return 0, nil
	}
	gone := map[string]cas.Ref{} // removed, and not put back as another kind
	added := map[cas.Ref]bool{}  // the content of paths that appear
	err := index.Diff(ctx, s.objects(), from, to, func(c index.Change) error {
		switch {
		case c.New == nil && c.Old.Kind != index.KindDir:
			gone[c.Path] = c.Old.Ref
		case c.Old == nil:
			delete(gone, c.Path)
			if c.New.Kind != index.KindDir {
				added[c.New.Ref] = true
			}
		}
		return nil
	})
	var n int64
	for _, ref := range gone {
		if !added[ref] {
			n++
		}
	}
	return n, err
}

// pushGuard is the deletion guard of a push: a folder that lost most of
// its files since its base (an unmounted disk, a wrong rm) must not make
// that the version every other device then pulls.
func (s *session) pushGuard(ctx context.Context, base, baseRoot, root cas.Ref) error {
	if s.opts.Force || base.IsZero() {
		return nil
	}
	v, err := index.LoadVersion(ctx, s.objects(), base)
	if err != nil {
		return err
	}
	files := v.Summary.Files + v.Summary.Symlinks
	removed, err := s.deletions(ctx, baseRoot, root)
	if err != nil || !tooMany(removed, files) {
		return err
	}
	return cas.Errorf(ErrTooManyDeletes, "this push would delete %d of the %d files of version %s (a disk not mounted? a wrong rm?); if that is right, run again with --force", removed, files, base.Short())
}

// summarize counts what a tree holds.
func (s *session) summarize(ctx context.Context, root cas.Ref) (index.Summary, error) {
	var sum index.Summary
	err := index.Walk(ctx, s.objects(), root, func(_ string, e index.Entry) error {
		switch e.Kind {
		case index.KindFile:
			sum.Files++
			sum.Bytes += e.Size
		case index.KindDir:
			sum.Dirs++
		case index.KindSymlink:
			sum.Symlinks++
		}
		return nil
	})
	return sum, err
}
