package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/restore"
)

// ErrPruned: the version was forgotten and its data collected.
var ErrPruned = errors.New("the version was forgotten and its data collected")

// RestoreOptions choose what to restore and where.
type RestoreOptions struct {
	Options
	Version string   // a version name (required)
	Paths   []string // slash-separated paths in the version; none: all
	// To is the target directory. Empty means in place: the folder itself,
	// after its current state is pushed, so the restore can be undone.
	To string
	// Partial restores what the store still has of a version that lacks
	// data (forgotten and collected, or damaged), leaving those paths out
	// (in place: as they are); without it such a restore writes nothing
	// and fails with an *IncompleteError.
	Partial bool
	// Overwrite says what a restore --to a directory that is not empty
	// does with the files there; empty refuses such a target.
	Overwrite Overwrite
	// Delete removes from the target (below Paths) what the version does
	// not have, so the target mirrors it.
	Delete bool
	// DryRun writes nothing, here or at the remote: the result lists what
	// the restore would write and remove (Plan).
	DryRun bool
}

// Planned is one change a dry run would make (see restore.Planned).
type Planned = restore.Planned

// RestoreResult is what a restore did.
type RestoreResult struct {
	Version      string `json:"version"`
	Target       string `json:"target"`
	Pushed       string `json:"pushed_first,omitempty"` // in place: the version saved before
	FilesWritten int64  `json:"files_written"`
	BytesWritten int64  `json:"bytes_written"`
	Removed      int64  `json:"removed"`
	// Kept counts files left as they were (--overwrite never|if-changed).
	Kept int64 `json:"kept,omitempty"`
	// Missing are the paths a partial restore left out.
	Missing    []string `json:"missing,omitempty"`
	DurationMS int64    `json:"duration_ms"`
	Warnings   []string `json:"warnings,omitempty"`
	// DryRun: nothing was written; Plan is what would have been, and
	// WouldSave says an in-place restore would push the folder first.
	DryRun    bool              `json:"dry_run,omitempty"`
	Plan      []restore.Planned `json:"plan,omitempty"`
	WouldSave bool              `json:"would_save_first,omitempty"`
}

// Restore writes a version, or paths of it, into a target directory, or
// back into the folder in place. Nothing is written outside the target.
func Restore(ctx context.Context, dir string, o RestoreOptions) (*RestoreResult, error) {
	start := time.Now()
	s, err := open(ctx, dir, o.Options)
	if err != nil {
		return nil, err
	}
	defer s.close()
	res, err := s.restore(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	res.DurationMS = durationMS(start)
	return res, nil
}

func (s *session) restore(ctx context.Context, o RestoreOptions) (*RestoreResult, error) {
	if o.Version == "" {
		return nil, errors.New("which version? (--version V)")
	}
	for i, p := range o.Paths {
		p = strings.Trim(filepath.ToSlash(p), "/")
		if err := index.ValidPath(p); err != nil {
			return nil, err
		}
		o.Paths[i] = p
	}
	vref, err := s.resolve(ctx, o.Version)
	if err != nil {
		return nil, err
	}
	vroot, err := s.versionRoot(ctx, vref)
	if errors.Is(err, cas.ErrNotFound) {
		return nil, fmt.Errorf("%w: version %s: %v", ErrPruned, vref.Short(), err)
	}
	if err != nil {
		return nil, err
	}
	res := &RestoreResult{Version: vref.String()}
	var from cas.Ref // what the target holds now, as far as the restore knows
	target := o.To
	if target == "" {
		// In place: save what is here first, so nothing is lost and the
		// restore itself can be undone.
		target = s.f.Dir
		if from, res.WouldSave, err = s.saveBeforeRestore(ctx, vref, o.DryRun, res); err != nil {
			return nil, err
		}
	} else {
		if target, err = filepath.Abs(target); err != nil {
			return nil, err
		}
		if err := checkTarget(target, o); err != nil {
			return nil, err
		}
		if !o.DryRun {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return nil, err
			}
		}
	}
	res.Target = target
	var g cas.Getter = s.objects()
	// What the store lacks, before anything is written.
	type part struct {
		path  string
		entry index.Entry
	}
	parts := []part{{entry: index.Entry{Kind: index.KindDir, Ref: vroot}}}
	if len(o.Paths) > 0 {
		parts = parts[:0]
		for _, p := range o.Paths {
			want, err := index.Lookup(ctx, g, vroot, p)
			if errors.Is(err, cas.ErrNotFound) {
				return nil, &notInVersion{path: p, version: o.Version}
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			parts = append(parts, part{path: p, entry: want})
		}
	}
	var missing []string
	for _, pt := range parts {
		m, err := s.missingUnder(ctx, g, pt.path, pt.entry)
		if err != nil {
			return nil, err
		}
		missing = append(missing, m...)
	}
	if len(missing) > 0 {
		if !o.Partial || slices.Contains(missing, "") {
			return nil, &IncompleteError{Version: vref.Short(), Paths: missing[:min(len(missing), maxNamed)], Total: len(missing)}
		}
		// Partial: the version minus what is missing; in place, what is
		// there now stays.
		pr := newPruning(missing)
		ov := &overlay{g: g, extra: map[cas.Ref][]byte{}}
		keep := func(p string) (index.Entry, bool) {
			if from.IsZero() {
				return index.Entry{}, false
			}
			e, err := index.Lookup(ctx, g, from, p)
			return e, err == nil
		}
		if vroot, err = pr.prune(ctx, g, ov, "", vroot, keep); err != nil {
			return nil, err
		}
		g = ov
		res.Missing = missing
		res.Warnings = append(res.Warnings, fmt.Sprintf("partial restore: %d paths left out, the store no longer has their data", len(missing)))
	}
	ropts := restore.Options{Chunks: s.remote, Logger: s.opts.Logger, Progress: downloadProgress(s.opts.Progress)}
	if target == s.f.Dir {
		ropts = s.folderRestore(ropts)
		ropts.Cache = s.f.StatCache()
	} else {
		ropts.Skip = skipFor(target, o.Overwrite)
	}
	if o.DryRun {
		res.DryRun = true
		var mu sync.Mutex
		ropts.DryRun = func(p restore.Planned) {
			mu.Lock()
			res.Plan = append(res.Plan, p)
			mu.Unlock()
		}
	}
	if len(o.Paths) == 0 {
		rr, err := restore.Apply(ctx, target, g, from, vroot, ropts)
		if err != nil {
			return nil, err
		}
		res.add(rr)
		return res, s.deleteExtra(ctx, g, target, vroot, o, res)
	}
	for _, p := range o.Paths {
		if slices.Contains(res.Missing, p) {
			continue
		}
		rr, err := s.restorePath(ctx, g, target, p, from, vroot, ropts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		res.add(rr)
	}
	return res, s.deleteExtra(ctx, g, target, vroot, o, res)
}

// saveBeforeRestore pushes the folder before an in-place restore, so that
// the restore can be undone, and returns the tree the folder then holds.
// A dry run pushes nothing: it scans, and says whether it would.
func (s *session) saveBeforeRestore(ctx context.Context, vref cas.Ref, dry bool, res *RestoreResult) (from cas.Ref, wouldSave bool, err error) {
	base, err := s.f.Base()
	if err != nil {
		return cas.Ref{}, false, err
	}
	if dry {
		sc, err := s.scan(ctx, nil)
		if err != nil {
			return cas.Ref{}, false, err
		}
		sc.CacheUpdate.Discard()
		baseRoot, err := s.versionRoot(ctx, base)
		if err != nil {
			return cas.Ref{}, false, err
		}
		return sc.Root, !sameTree(sc.Root, baseRoot), nil
	}
	pr, err := s.push(ctx, fmt.Sprintf("before restore of %s", vref.Short()))
	if err != nil {
		return cas.Ref{}, false, fmt.Errorf("saving the folder before restoring: %w", err)
	}
	if !pr.UpToDate {
		res.Pushed = pr.Version
	}
	if base, err = s.f.Base(); err != nil {
		return cas.Ref{}, false, err
	}
	from, err = s.versionRoot(ctx, base)
	return from, false, err
}

// deleteExtra is restore --to --delete, after the restore.
func (s *session) deleteExtra(ctx context.Context, g cas.Getter, target string, vroot cas.Ref, o RestoreOptions, res *RestoreResult) error {
	if !o.Delete || target == s.f.Dir {
		return nil
	}
	var dry func(string, bool)
	if o.DryRun {
		dry = func(p string, dir bool) {
			kind := "file"
			if dir {
				kind = "dir"
			}
			res.Plan = append(res.Plan, restore.Planned{Op: "remove", Path: p, Kind: kind})
		}
	}
	n, err := mirrorDelete(ctx, g, target, vroot, o.Paths, dry)
	res.Removed += n
	return err
}

func (r *RestoreResult) add(rr *restore.Result) {
	r.FilesWritten += rr.FilesWritten
	r.BytesWritten += rr.BytesWritten
	r.Removed += rr.Removed
	r.Kept += rr.Skipped
	r.Warnings = append(r.Warnings, rr.Warnings...)
}

// restorePath restores one path: the entry at p in the version replaces
// the entry at p in the target. Both sides are wrapped in one-entry trees
// of p's parent, so the restorer's diff does the rest.
func (s *session) restorePath(ctx context.Context, g cas.Getter, target, p string, from, to cas.Ref, ro restore.Options) (*restore.Result, error) {
	want, err := index.Lookup(ctx, g, to, p)
	if errors.Is(err, cas.ErrNotFound) {
		return nil, &notInVersion{path: p}
	}
	if err != nil {
		return nil, err
	}
	dir, name := p, ""
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, name = p[:i], p[i+1:]
	} else {
		dir, name = "", p
	}
	ov := &overlay{g: g, extra: map[cas.Ref][]byte{}}
	want.Name = name
	toTree := ov.tree(want)
	var fromTree cas.Ref
	if !from.IsZero() {
		if have, err := index.Lookup(ctx, g, from, p); err == nil {
			have.Name = name
			fromTree = ov.tree(have)
		}
	}
	ro.Chunks = s.remote
	return restore.ApplyAt(ctx, target, dir, ov, fromTree, toTree, ro)
}

// overlay serves a few made-up trees on top of a getter.
type overlay struct {
	g     cas.Getter
	extra map[cas.Ref][]byte
}

func (o *overlay) tree(e index.Entry) cas.Ref {
	b := index.EncodeTree(&index.Tree{Entries: []index.Entry{e}})
	r := cas.Sum(b)
	o.extra[r] = b
	return r
}

func (o *overlay) Get(ctx context.Context, r cas.Ref) ([]byte, error) {
	if b, ok := o.extra[r]; ok {
		return b, nil
	}
	return o.g.Get(ctx, r)
}
