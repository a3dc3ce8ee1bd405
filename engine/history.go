package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// LogTimeLayout is how a log prints a version's time (the store's, which
// orders history and which @TIME names).
const LogTimeLayout = index.LogTimeLayout

// LogEntry is one version in a log listing.
type LogEntry struct {
	Version string `json:"version"`
	// Time is when the device made the version, by its clock; Stored,
	// when the store took it, by the store's. The order is the store's.
	Time     time.Time `json:"time"`
	Stored   time.Time `json:"stored"`
	Device   string    `json:"device"`
	Message  string    `json:"message,omitempty"`
	Parents  []string  `json:"parents"`
	Files    int64     `json:"files"`
	Bytes    int64     `json:"bytes"`
	Tags     []string  `json:"tags,omitempty"`
	Head     bool      `json:"head,omitempty"`
	Path     string    `json:"path,omitempty"`
	PathOp   string    `json:"path_op,omitempty"` // with a path: added, removed, modified
	PathSize int64     `json:"path_size,omitempty"`
	// Conflicts are the version's conflict records: copies a merge made,
	// and paths an override replaced (kind "overridden", no copy).
	Conflicts []Conflict `json:"conflicts,omitempty"`
}

// Log lists the root's versions, newest first. With a path, it lists only
// the versions in which that path changed.
func Log(ctx context.Context, dir, path string, o Options) ([]LogEntry, error) {
	s, err := open(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if path != "" {
		if err := index.ValidPath(path); err != nil {
			return nil, err
		}
	}
	hist, err := s.remote.History(ctx, s.root())
	if err != nil {
		return nil, err
	}
	tags, err := s.remote.Tags(ctx, s.root())
	if err != nil {
		return nil, err
	}
	head, err := s.head(ctx)
	if err != nil {
		return nil, err
	}
	byRef := map[cas.Ref][]string{}
	for name, r := range tags {
		byRef[r] = append(byRef[r], name)
	}
	g := s.objects()
	out := []LogEntry{}
	var prev *index.Entry
	for _, h := range hist {
		v, err := index.LoadVersion(ctx, g, h.Ref)
		if err != nil {
			return nil, err
		}
		e := LogEntry{Version: h.Ref.String(), Time: v.Time, Stored: h.Time, Device: v.Device, Message: v.Message, Files: v.Summary.Files, Bytes: v.Summary.Bytes, Head: h.Ref == head, Parents: []string{}}
		for _, p := range v.Parents {
			e.Parents = append(e.Parents, p.String())
		}
		for _, c := range v.Conflicts {
			e.Conflicts = append(e.Conflicts, Conflict{Path: c.Path, Copy: c.Copy, Kind: c.Kind})
		}
		e.Tags = byRef[h.Ref]
		slices.Sort(e.Tags)
		if path != "" {
			cur, err := index.Lookup(ctx, g, v.Root, path)
			var curp *index.Entry
			switch {
			case err == nil:
				curp = &cur
			case errors.Is(err, cas.ErrNotFound):
			default:
				return nil, err
			}
			op := pathOp(prev, curp)
			prev = curp
			if op == "" {
				continue
			}
			e.Path, e.PathOp = path, op
			if curp != nil {
				e.PathSize = curp.Size
			}
		}
		out = append(out, e)
	}
	slices.Reverse(out)
	if path != "" && len(out) == 0 {
		return nil, cas.Errorf(ErrNoVersionTouched, "no version touched %s", path)
	}
	return out, nil
}

func pathOp(prev, cur *index.Entry) string {
	switch {
	case prev == nil && cur == nil:
		return ""
	case prev == nil:
		return "added"
	case cur == nil:
		return "removed"
	case *prev == *cur:
		return ""
	}
	return "modified"
}

// Diff lists the changes from version a to version b. An empty b means
// the folder as it is now; an empty a means the head.
func Diff(ctx context.Context, dir, a, b string, o Options) ([]Change, error) {
	s, err := openOffline(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	ra, err := s.treeOf(ctx, s.offlineVersion(a))
	if err != nil {
		return nil, err
	}
	var rb cas.Ref
	if b == "" {
		sc, err := s.scan(ctx, nil)
		if err != nil {
			return nil, err
		}
		sc.CacheUpdate.Discard()
		rb = sc.Root
	} else if rb, err = s.treeOf(ctx, b); err != nil {
		return nil, err
	}
	out := []Change{}
	err = index.Diff(ctx, s.objects(), ra, rb, func(c index.Change) error {
		if c.New != nil && c.Old != nil && c.New.Kind == index.KindDir {
			return nil
		}
		out = append(out, toChange(c))
		return nil
	})
	return out, err
}

// treeOf resolves a version name to its root tree.
func (s *session) treeOf(ctx context.Context, name string) (cas.Ref, error) {
	v, err := s.resolve(ctx, name)
	if errors.Is(err, cas.ErrNotFound) && (name == "" || name == "head" || name == index.BaseName) {
		return cas.Ref{}, nil // no versions yet: the empty tree
	}
	if err != nil {
		return cas.Ref{}, err
	}
	return s.versionRoot(ctx, v)
}

// LsEntry is one line of a listing.
type LsEntry struct {
	Path   string    `json:"path"`
	Kind   string    `json:"kind"`
	Mode   string    `json:"mode"`
	Size   int64     `json:"size"`
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"`
}

// Ls lists the entries of a version at path (a directory's contents, or
// one file); recursive lists everything below.
func Ls(ctx context.Context, dir, version, path string, recursive bool, o Options) ([]LsEntry, error) {
	s, err := openOffline(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	root, err := s.treeOf(ctx, s.offlineVersion(version))
	if err != nil {
		return nil, err
	}
	if root.IsZero() {
		return nil, ErrNoHead
	}
	g := s.objects()
	e, err := index.Lookup(ctx, g, root, path)
	if errors.Is(err, cas.ErrNotFound) {
		return nil, &notInVersion{path: path, version: version}
	}
	if err != nil {
		return nil, err
	}
	out := []LsEntry{}
	add := func(p string, e index.Entry) {
		mode := e.Mode
		switch e.Kind {
		case index.KindDir:
			mode |= fs.ModeDir
		case index.KindSymlink:
			mode |= fs.ModeSymlink
		}
		le := LsEntry{Path: p, Kind: e.Kind.String(), Mode: mode.String(), Size: e.Size, Target: e.Target}
		if e.MTime != 0 {
			le.MTime = time.Unix(0, e.MTime).UTC()
		}
		out = append(out, le)
	}
	if e.Kind != index.KindDir {
		add(path, e)
		return out, nil
	}
	err = index.Walk(ctx, g, e.Ref, func(p string, c index.Entry) error {
		add(index.JoinPath(path, p), c)
		if !recursive && c.Kind == index.KindDir {
			return index.SkipDir
		}
		return nil
	})
	return out, err
}

// TagResult names a tagged version.
type TagResult struct {
	Tag     string `json:"tag"`
	Version string `json:"version"`
}

// Tag names a version (default: head). An empty name lists the tags;
// remove deletes the tag.
func Tag(ctx context.Context, dir, name, version string, remove bool, o Options) ([]TagResult, error) {
	s, err := open(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	tags, err := s.remote.Tags(ctx, s.root())
	if err != nil {
		return nil, err
	}
	if name != "" {
		old, exists := tags[name]
		var ref cas.Ref
		switch {
		case remove && !exists:
			return nil, cas.Errorf(cas.ErrNotFound, "there is no tag %q", name)
		case remove:
			delete(tags, name)
		default:
			if err := index.ValidTagName(name); err != nil {
				return nil, err
			}
			if ref, err = s.resolve(ctx, version); err != nil {
				return nil, err
			}
			if exists && old != ref && !s.opts.Force {
				return nil, cas.Errorf(ErrTagExists, "tag %q already names version %s (--force moves it)", name, old.Short())
			}
			tags[name] = ref
		}
		if err := s.remote.SetTag(ctx, s.root(), name, ref); err != nil {
			return nil, err
		}
	}
	out := []TagResult{}
	for t, r := range tags {
		out = append(out, TagResult{Tag: t, Version: r.String()})
	}
	slices.SortFunc(out, func(a, b TagResult) int {
		if a.Tag < b.Tag {
			return -1
		}
		if a.Tag > b.Tag {
			return 1
		}
		return 0
	})
	return out, nil
}

// ErrPathNotInVersion: a PATH argument names nothing in the version (it
// is also cas.ErrNotFound).
var ErrPathNotInVersion = errors.New("not in the version")

// notInVersion says which path and which version.
type notInVersion struct{ path, version string }

func (e *notInVersion) Error() string {
	if e.version == "" {
		return e.path + " is not in the version"
	}
	return fmt.Sprintf("%s is not in version %s", e.path, e.version)
}

func (e *notInVersion) Is(target error) bool {
	return target == ErrPathNotInVersion || target == cas.ErrNotFound
}

// ErrTagExists: a tag would move to another version without --force.
var ErrTagExists = errors.New("the tag exists")

// ErrNoVersionTouched: log PATH found no version in which PATH changed.
var ErrNoVersionTouched = errors.New("no version touched the path")
