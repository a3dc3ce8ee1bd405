package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// Overwrite says what restore --to does with files already in a target
// that is not empty.
type Overwrite string

const (
	// OverwriteAlways writes every file of the version.
	OverwriteAlways Overwrite = "always"
	// OverwriteIfChanged writes a file only where the one there differs
	// in size or modification time.
	OverwriteIfChanged Overwrite = "if-changed"
	// OverwriteNever writes only files that are not there.
	OverwriteNever Overwrite = "never"
)

// ErrTargetNotEmpty: restore --to into a directory that holds files, with
// no --overwrite to say what to do with them.
var ErrTargetNotEmpty = errors.New("the target is not empty")

// ParseOverwrite checks an --overwrite value.
func ParseOverwrite(s string) (Overwrite, error) {
	switch o := Overwrite(s); o {
	case "", OverwriteAlways, OverwriteIfChanged, OverwriteNever:
		return o, nil
	}
	return "", fmt.Errorf("--overwrite %q: want always, if-changed or never", s)
}

// checkTarget refuses a non-empty target unless the options say what to
// do with what is there.
func checkTarget(target string, o RestoreOptions) error {
	ents, err := os.ReadDir(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore: target %s: %w", target, err)
	}
	if len(ents) > 0 && o.Overwrite == "" && !o.Delete {
		return cas.Errorf(ErrTargetNotEmpty, "restore: %s is not empty: say what to do with the files there with --overwrite always|if-changed|never (and --delete to remove what the version does not have)", target)
	}
	return nil
}

// skipFor is restore's Skip for an overwrite mode.
func skipFor(target string, mode Overwrite) func(string, *index.Entry) bool {
	switch mode {
	case OverwriteNever:
		return func(p string, _ *index.Entry) bool {
			_, err := os.Lstat(filepath.Join(target, filepath.FromSlash(p)))
			return err == nil
		}
	case OverwriteIfChanged:
		return func(p string, e *index.Entry) bool {
			fi, err := os.Lstat(filepath.Join(target, filepath.FromSlash(p)))
			if err != nil || e.Kind != index.KindFile || !fi.Mode().IsRegular() {
				return false
			}
			return fi.Size() == e.Size && fi.ModTime().UnixNano() == e.MTime && fi.Mode().Perm() == e.Mode.Perm()
		}
	}
	return nil
}

// mirrorDelete removes from target what the version (at vroot) does not
// have, below the given paths (all of it when there are none): restore
// --to --delete, rsync's --delete. With dry set, it is told each path
// instead, and removes nothing.
func mirrorDelete(ctx context.Context, g cas.Getter, target string, vroot cas.Ref, paths []string, dry func(p string, dir bool)) (int64, error) {
	keep := map[string]bool{}
	err := index.Walk(ctx, g, vroot, func(p string, _ index.Entry) error {
		keep[p] = true
		return nil
	})
	if err != nil {
		return 0, err
	}
	under := func(p string) (in, above bool) {
		if len(paths) == 0 {
			return true, false
		}
		for _, q := range paths {
			if p == q || strings.HasPrefix(p, q+"/") {
				return true, false
			}
			if strings.HasPrefix(q, p+"/") {
				above = true
			}
		}
		return false, above
	}
	var removed int64
	err = filepath.WalkDir(target, func(full string, d fs.DirEntry, err error) error {
		if err != nil && full == target && dry != nil && errors.Is(err, fs.ErrNotExist) {
			return filepath.SkipAll // a dry run into a target not made yet
		}
		if err != nil {
			return err
		}
		if full == target {
			return nil
		}
		rel, _ := filepath.Rel(target, full)
		p := filepath.ToSlash(rel)
		in, above := under(p)
		switch {
		case !in && above:
			return nil // a directory on the way to a restored path
		case !in:
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		case keep[p]:
			return nil
		}
		if dry != nil {
			dry(p, d.IsDir())
		} else if err := os.RemoveAll(full); err != nil {
			return fmt.Errorf("restore --delete: %w", err)
		}
		removed++
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	return removed, err
}
