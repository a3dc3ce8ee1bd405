package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// ConflictCopy is a conflict copy in the folder and what it stands for.
type ConflictCopy struct {
	Path   string    `json:"path"` // the path both sides changed
	Copy   string    `json:"copy"` // the local side's content, kept here
	Device string    `json:"device"`
	Time   time.Time `json:"time"`
}

var conflictName = regexp.MustCompile(`^(.*)\.sync-conflict-(\d{8}-\d{6})-([^.]+)(\..*)?$`)

// parseConflict reads a conflict copy's path.
func parseConflict(p string) (ConflictCopy, bool) {
	dir, name := path.Split(p)
	m := conflictName.FindStringSubmatch(name)
	if m == nil {
		return ConflictCopy{}, false
	}
	t, _ := time.Parse("20060102-150405", m[2])
	return ConflictCopy{Path: dir + m[1] + m[4], Copy: p, Device: m[3], Time: t}, true
}

// Conflicts lists the conflict copies in the folder: a conflict is
// unresolved while its copy exists.
func Conflicts(ctx context.Context, dir string, o Options) ([]ConflictCopy, error) {
	s, err := openOffline(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.conflicts(ctx)
}

func (s *session) conflicts(ctx context.Context) ([]ConflictCopy, error) {
	sc, err := s.scan(ctx, nil)
	if err != nil {
		return nil, err
	}
	sc.CacheUpdate.Discard()
	return s.conflictsIn(ctx, sc.Root)
}

// conflictsIn lists the conflict copies in a scanned tree.
func (s *session) conflictsIn(ctx context.Context, root cas.Ref) ([]ConflictCopy, error) {
	out := []ConflictCopy{}
	err := index.Walk(ctx, s.objects(), root, func(p string, e index.Entry) error {
		if c, ok := parseConflict(p); ok && index.IsConflictCopy(e.Name) {
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// Keep says how to resolve a conflict.
type Keep string

// The ways to resolve a conflict.
const (
	KeepLocal  Keep = "local"  // the copy replaces the path
	KeepRemote Keep = "remote" // the copy goes
	KeepBoth   Keep = "both"   // the copy stays, renamed to NAME.DEVICE.EXT
)

// ResolveResult says what resolve did.
type ResolveResult struct {
	Path string `json:"path"`
	Kept string `json:"kept"`
	Now  string `json:"renamed_to,omitempty"`
	// Copy is the conflict copy settled.
	Copy string `json:"copy"`
	// DryRun: nothing was changed; the fields say what would have been.
	DryRun bool `json:"dry_run,omitempty"`
}

// ResolveOptions say how to settle a conflict.
type ResolveOptions struct {
	Options
	Keep Keep
	// DryRun changes nothing: the result says what would be.
	DryRun bool
}

// Resolve settles one conflict: PATH is the changed path or its copy. The
// change is made in the folder; the next push or sync records it.
func Resolve(ctx context.Context, dir, p string, ro ResolveOptions) (*ResolveResult, error) {
	keep := ro.Keep
	s, err := open(ctx, dir, ro.Options)
	if err != nil {
		return nil, err
	}
	defer s.close()
	p = strings.Trim(p, "/")
	if err := index.ValidPath(p); err != nil {
		return nil, err
	}
	all, err := s.conflicts(ctx)
	if err != nil {
		return nil, err
	}
	var match []ConflictCopy
	for _, c := range all {
		if c.Path == p || c.Copy == p {
			match = append(match, c)
		}
	}
	switch {
	case len(match) == 0:
		return nil, fmt.Errorf("resolve %s: no conflict copy for it", p)
	case len(match) > 1:
		var names []string
		for _, c := range match {
			names = append(names, c.Copy)
		}
		return nil, fmt.Errorf("resolve %s: %d conflict copies (%s); name the copy to resolve", p, len(match), strings.Join(names, ", "))
	}
	c := match[0]
	root, err := os.OpenRoot(s.f.Dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	res := &ResolveResult{Path: c.Path, Kept: string(keep), Copy: c.Copy, DryRun: ro.DryRun}
	switch keep {
	case KeepLocal, KeepRemote:
	case KeepBoth:
		ext := path.Ext(c.Path)
		res.Now = strings.TrimSuffix(c.Path, ext) + "." + c.Device + ext
		for i := 2; ; i++ {
			if _, err := root.Lstat(res.Now); errors.Is(err, os.ErrNotExist) {
				break
			}
			res.Now = fmt.Sprintf("%s.%s-%d%s", strings.TrimSuffix(c.Path, ext), c.Device, i, ext)
		}
	default:
		return nil, fmt.Errorf("resolve: keep %q: want local, remote or both", keep)
	}
	if ro.DryRun {
		return res, nil
	}
	switch keep {
	case KeepLocal:
		// A rename replaces the path atomically; a directory in the way
		// (a dir-file conflict) goes first.
		if fi, err := root.Lstat(c.Path); err == nil && fi.IsDir() {
			if err := root.RemoveAll(c.Path); err != nil {
				return nil, err
			}
		}
		err = root.Rename(c.Copy, c.Path)
	case KeepRemote:
		err = root.RemoveAll(c.Copy)
	case KeepBoth:
		err = root.Rename(c.Copy, res.Now)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", c.Path, err)
	}
	return res, nil
}
