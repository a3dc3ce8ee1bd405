package restore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// Planned is one change a restore would make (Options.DryRun).
type Planned struct {
	// Op is "write" (a file's content), "meta" (only its mode or mtime),
	// "link", "mkdir" or "remove" (a directory with all it holds).
	Op   string `json:"op"`
	Path string `json:"path"`
	Kind string `json:"kind"`
	Size int64  `json:"size,omitempty"`
}

// plan is ApplyAt with Options.DryRun: the same diff and the same rules
// about what is left alone, reported instead of done. It reads the target
// (for VerifyLocal and Skip) and writes nothing, not even the prefix.
func plan(ctx context.Context, dir, prefix string, g cas.Getter, from, to cas.Ref, opts Options) (*Result, error) {
	var res Result
	skipped := map[string]bool{}
	err := index.Diff(ctx, g, from, to, func(c index.Change) error {
		c.Path = index.JoinPath(prefix, c.Path)
		if skipped[c.Path] {
			return nil
		}
		if opts.VerifyLocal && c.Old != nil && c.Old.Kind != index.KindDir && !matchesOnDisk(filepath.Join(dir, filepath.FromSlash(c.Path)), c.Old, c.New == nil) {
			skipped[c.Path] = true
			res.Skipped++
			return nil
		}
		if opts.Skip != nil && c.Old == nil && c.New.Kind != index.KindDir && opts.Skip(c.Path, c.New) {
			res.Skipped++
			return nil
		}
		p := Planned{Path: c.Path}
		switch {
		case c.New == nil:
			p.Op, p.Kind = "remove", c.Old.Kind.String()
			res.Removed++
		case c.New.Kind == index.KindDir:
			if c.Old != nil && c.Old.Kind == index.KindDir {
				return nil // its contents are listed below it
			}
			p.Op, p.Kind = "mkdir", "dir"
			res.DirsMade++
		case c.New.Kind == index.KindSymlink:
			p.Op, p.Kind = "link", "symlink"
		case c.Old != nil && c.Old.Ref == c.New.Ref && c.Old.Kind == index.KindFile:
			p.Op, p.Kind, p.Size = "meta", "file", c.New.Size
		default:
			p.Op, p.Kind, p.Size = "write", "file", c.New.Size
			res.FilesWritten++
			res.BytesWritten += c.New.Size
		}
		opts.DryRun(p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// matchesOnDisk is writer.matches for a dry run, by path: nothing is
// opened for writing, so no descriptor discipline is needed.
func matchesOnDisk(full string, old *index.Entry, removal bool) bool {
	fi, err := os.Lstat(full)
	if err != nil {
		return removal && errors.Is(err, fs.ErrNotExist)
	}
	switch old.Kind {
	case index.KindFile:
		return fi.Mode().IsRegular() && fi.Size() == old.Size && fi.ModTime().UnixNano() == old.MTime
	case index.KindSymlink:
		t, err := os.Readlink(full)
		return err == nil && fi.Mode()&fs.ModeSymlink != 0 && t == old.Target
	}
	return false
}

// announce tells Progress how much a restore is about to write: one diff
// over trees the restore reads again at once (a folder's come from its
// cache).
func announce(ctx context.Context, g cas.Getter, from, to cas.Ref, progress func(Event)) error {
	var e Event
	err := index.Diff(ctx, g, from, to, func(c index.Change) error {
		if c.New != nil && c.New.Kind == index.KindFile && (c.Old == nil || c.Old.Kind != index.KindFile || c.Old.Ref != c.New.Ref) {
			e.TotalFiles++
			e.TotalBytes += c.New.Size
		}
		return nil
	})
	if err != nil {
		return err
	}
	progress(e)
	return nil
}
