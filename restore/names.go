package restore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"golang.org/x/sys/unix"
)

// A version's names are not always the folder's: the folder may keep a
// name in NFD (macOS), and a filesystem that folds case cannot hold
// "README" beside "readme". Every operation looks a version name up in
// the folder's name map (state.Names) for its name on disk. On a folder
// that folds case, a name that collides with another the version keeps in
// the same directory gets an alias on disk: a conflict copy's name,
// recorded in the map, so that the folder's next scan gives the version
// its own name back and no push ever records it as deleted.

// Alias is a name the folder's filesystem could not hold beside another:
// Path is the version's, Disk the name it has on disk.
type Alias struct {
	Path string `json:"path"`
	Disk string `json:"disk"`
}

// names is the writer's view of the name map.
type names struct {
	mu     sync.Mutex
	mapped atomic.Bool                  // the folder has mapped names
	dirs   map[string]map[string]string // dir -> version name -> disk name
	// siblings: for a folding folder, the to-tree's names of a directory
	// by their folded form.
	siblings map[string]map[string][]string
}

// diskMap returns dir's version-to-disk names (nil for none). The caller
// holds w.nm.mu.
func (w *writer) diskMapLocked(dir string) map[string]string {
	if m, ok := w.nm.dirs[dir]; ok {
		return m
	}
	var m map[string]string
	if w.nm.mapped.Load() {
		if disk, err := w.opts.Names.Dir(dir); err == nil {
			for d, v := range disk {
				if m == nil {
					m = map[string]string{}
				}
				m[v] = d
			}
		}
	}
	if w.nm.dirs == nil {
		w.nm.dirs = map[string]map[string]string{}
	}
	w.nm.dirs[dir] = m
	return m
}

// disk returns the name on disk of the version's entry name in dir.
func (w *writer) disk(dir, name string) string {
	if !w.nm.mapped.Load() && !w.opts.CaseFold {
		return name
	}
	w.nm.mu.Lock()
	defer w.nm.mu.Unlock()
	if d, ok := w.diskMapLocked(dir)[name]; ok {
		return d
	}
	return name
}

// at splits p into its directory and its name in the version, and gives
// the name's spelling on disk.
func (w *writer) at(p string) (dir, name, disk string) {
	dir, name = split(p)
	return dir, name, w.disk(dir, name)
}

// toSiblings returns the names the to-tree keeps in dir, by folded form.
func (w *writer) toSiblings(ctx context.Context, dir string) map[string][]string {
	w.nm.mu.Lock()
	s, ok := w.nm.siblings[dir]
	w.nm.mu.Unlock()
	if ok {
		return s
	}
	s = map[string][]string{}
	if e, err := index.Lookup(ctx, w.g, w.to, dir); err == nil && e.Kind == index.KindDir {
		if t, err := index.LoadTree(ctx, w.g, e.Ref); err == nil {
			for _, c := range t.Entries {
				k := index.FoldName(c.Name)
				s[k] = append(s[k], c.Name)
			}
		}
	}
	w.nm.mu.Lock()
	if w.nm.siblings == nil {
		w.nm.siblings = map[string]map[string][]string{}
	}
	w.nm.siblings[dir] = s
	w.nm.mu.Unlock()
	return s
}

// foldAlias gives the added entry p an alias on disk when the folder
// folds case and another name the version keeps in the same directory is
// the same name there. Of such names, the one already on disk under its
// own spelling keeps it (so nothing that is there moves); when none is,
// the first in the version's order does.
func (w *writer) foldAlias(ctx context.Context, p string) error {
	if !w.opts.CaseFold {
		return nil
	}
	dir, name := split(p)
	w.nm.mu.Lock()
	_, mapped := w.diskMapLocked(dir)[name]
	w.nm.mu.Unlock()
	if mapped {
		return nil
	}
	group := w.toSiblings(ctx, dir)[index.FoldName(name)]
	if len(group) < 2 {
		return nil
	}
	owner := slices.Min(group)
	pfd, release, err := w.dir(dir, false)
	if err == nil {
		if onDisk, err := state.ReadDirNames(pfd); err == nil {
			for _, g := range group {
				if slices.Contains(onDisk, w.disk(dir, g)) && w.disk(dir, g) == g {
					owner = g
					break
				}
			}
		}
		release()
	} else if !errors.Is(err, unix.ENOENT) {
		return err
	}
	if owner == name {
		return nil
	}
	alias := index.ConflictName(name, w.opts.Now(), w.opts.Device)
	w.nm.mu.Lock()
	m := w.diskMapLocked(dir)
	if m == nil {
		m = map[string]string{}
		w.nm.dirs[dir] = m
	}
	m[name] = alias
	w.nm.mapped.Store(true)
	w.res.Aliases = append(w.res.Aliases, Alias{Path: p, Disk: index.JoinPath(dir, alias)})
	w.nm.mu.Unlock()
	w.warn("%q and %q are one name on this folder's filesystem, which folds case: %q is kept here as %q (the versions keep its own name)",
		index.JoinPath(dir, owner), p, p, index.JoinPath(dir, alias))
	if w.upd == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.upd.PutName(dir, alias, name)
}

// sharesDisk reports whether removing the version's entry name from dir
// would remove another entry the version keeps: on a folder that folds
// case, after a case-only rename the old and new names are one file.
func (w *writer) sharesDisk(ctx context.Context, dir, name, disk string) bool {
	if !w.opts.CaseFold {
		return false
	}
	k := index.FoldName(disk)
	for _, other := range w.toSiblings(ctx, dir)[index.FoldName(name)] {
		if other != name && index.FoldName(w.disk(dir, other)) == k {
			return true
		}
	}
	return false
}

// forgetName drops the mapping of a removed entry.
func (w *writer) forgetName(dir, name, disk string) {
	if disk == name {
		return
	}
	w.nm.mu.Lock()
	delete(w.nm.dirs[dir], name)
	w.nm.mu.Unlock()
	if w.upd != nil {
		w.mu.Lock()
		_ = w.upd.DeleteName(dir, disk)
		w.mu.Unlock()
	}
}
