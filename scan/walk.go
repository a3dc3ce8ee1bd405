package scan

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"golang.org/x/sys/unix"
)

// Every read of the folder goes through a directory descriptor held for
// it: a directory is opened relative to its parent's descriptor with
// O_NOFOLLOW|O_DIRECTORY, and its files, links and .ferryignore relative
// to its own. No path is resolved again after the walk saw it, so a
// directory swapped for a symlink while a scan runs is never followed:
// what is read is what was under the folder when it was opened.

// dirNode is a directory whose tree is being built. Entries fill in as
// children finish; when the last does, the tree is encoded and stored and
// the node reports to its parent.
type dirNode struct {
	path    string
	name    string // the last component of path, as it is on disk
	parent  *dirNode
	slot    int // index in parent's entries
	mu      sync.Mutex
	entries []index.Entry
	skip    []bool // entries dropped after all (a file that vanished)
	pending int
	size    atomic.Int64
	ref     cas.Ref
	done    chan struct{} // closed when ref is set (root only)
	// tree is what the stat cache remembers of this directory's tree.
	tree    state.TreeStat
	hasTree bool
	// fd is the directory's descriptor while anything still reads
	// through it: the listing, queued file jobs, and subdirectories not
	// yet opened. fdRefs counts them; the last closes fd.
	fd     int
	fdRefs int
}

// release drops a hold; the last closes the descriptor.
func (d *dirNode) release() {
	d.mu.Lock()
	d.fdRefs--
	last := d.fdRefs == 0
	d.mu.Unlock()
	if last {
		unix.Close(d.fd)
	}
}

// fileJob is one file to read. It holds its directory's descriptor.
type fileJob struct {
	dir  *dirNode
	slot int
	path string // relative, slash-separated, in version names
	name string // in the version
	disk string // in the directory on disk
	st   state.Stat
	old  state.Stat
	had  bool // old is valid
}

// chunkJob is one chunk to hash and upload; buf returns to the pool after.
// The uploader writes the chunk's ref into ref, which the reader reads
// after the file's wait group is done.
type chunkJob struct {
	ref  *cas.Ref
	data []byte
	buf  []byte
	wg   *sync.WaitGroup
	errp *atomic.Pointer[error]
}

func (s *scanner) walkRoot() (*dirNode, error) {
	// The folder itself may be reached through a link; nothing below it is.
	fd, err := unix.Open(s.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("scan: open %s: %w", s.dir, err)
	}
	root := &dirNode{done: make(chan struct{}), fd: fd, fdRefs: 1}
	// No walker may still queue files once this returns: the files
	// channel closes after.
	defer s.walking.Wait()
	if err := s.walkDir(root, nil); err != nil {
		return nil, err
	}
	select {
	case <-root.done:
		return root, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

// openChild opens subdirectory d relative to its parent's descriptor, and
// releases the parent's hold for it. It reports false when d is no longer
// a directory there (it vanished, or became a link since the listing).
func (s *scanner) openChild(d *dirNode) (bool, error) {
	defer d.parent.release()
	for {
		fd, err := unix.Openat(d.parent.fd, d.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOENT, err == unix.ELOOP, err == unix.ENOTDIR:
			return false, nil
		case err != nil:
			return false, fmt.Errorf("scan: open %s: %w", filepath.Join(s.dir, filepath.FromSlash(d.path)), err)
		}
		d.fd, d.fdRefs = fd, 1
		return true, nil
	}
}

// walkDir lists one directory, queues its files, walks its subdirectories
// (on another goroutine while a walker is free: a no-op scan is bound by
// lstat, and lstats of different directories overlap) and finishes the
// node once nothing is pending.
func (s *scanner) walkDir(d *dirNode, ign *ignorer) error {
	if depth := strings.Count(d.path, "/"); d.path != "" && depth+1 >= index.MaxDepth {
		return fmt.Errorf("scan: %s is deeper than %d levels", d.path, index.MaxDepth)
	}
	if d.parent != nil {
		ok, err := s.openChild(d)
		if err != nil {
			return err
		}
		if !ok {
			// Gone or swapped for a link since its parent was listed: left
			// out of this version, as a file that vanishes is.
			d.parent.mu.Lock()
			d.parent.skip[d.slot] = true
			d.parent.mu.Unlock()
			return s.childDone(d.parent)
		}
	}
	subdirs, err := s.list(d, ign)
	d.release() // the listing's hold
	if err != nil {
		return err
	}
	for i, child := range subdirs {
		if err := s.ctx.Err(); err != nil {
			for range subdirs[i:] {
				d.release() // never opened
			}
			return err
		}
		select {
		case s.walkers <- struct{}{}:
			s.walking.Add(1)
			go func() {
				defer s.walking.Done()
				defer func() { <-s.walkers }()
				if err := s.walkDir(child.node, child.ign); err != nil {
					s.abort(err)
				}
			}()
		default:
			if err := s.walkDir(child.node, child.ign); err != nil {
				for range subdirs[i+1:] {
					d.release() // never opened
				}
				return err
			}
		}
	}
	return s.childDone(d)
}

// subdir is a directory to walk, with the ignore rules in force there.
type subdir struct {
	node *dirNode
	ign  *ignorer
}

// list reads the directory open as d.fd: entries the stat cache vouches
// for take their cached ref, other files are queued for reading, and
// subdirectories are returned, each holding d's descriptor until it opens
// its own.
func (s *scanner) list(d *dirNode, ign *ignorer) (subdirs []subdir, err error) {
	defer func() {
		if err != nil {
			for range subdirs {
				d.release() // never to be opened
			}
			subdirs = nil
		}
	}()
	names, err := state.ReadDirNames(d.fd)
	if err != nil {
		return nil, fmt.Errorf("scan: list %s: %w", filepath.Join(s.dir, filepath.FromSlash(d.path)), err)
	}
	if slices.Contains(names, IgnoreFile) {
		if ign, err = ign.enter(d.fd, d.path); err != nil {
			s.warn("%s: %v", index.JoinPath(d.path, IgnoreFile), err)
		}
	}
	ents, err := s.versionNames(d.path, names)
	if err != nil {
		return nil, err
	}
	cached, err := s.cache.Dir(d.path, len(ents))
	if err != nil {
		return nil, err
	}
	d.tree, d.hasTree = s.cache.Tree(d.path)
	d.mu.Lock()
	d.pending = 1 // the listing itself
	d.entries = make([]index.Entry, 0, len(ents))
	d.skip = make([]bool, 0, len(ents))
	d.mu.Unlock()
	// cached and names are both sorted: the cursor c walks cached beside
	// the listing; keep marks the entries still present.
	keep := make([]bool, len(cached))
	c := 0
	lookup := func(name string) (state.Stat, bool) {
		for c < len(cached) && cached[c].Name < name {
			c++
		}
		if c < len(cached) && cached[c].Name == name {
			keep[c] = true
			return cached[c].Stat, true
		}
		return state.Stat{}, false
	}
	for _, de := range ents {
		if err := s.ctx.Err(); err != nil {
			return subdirs, err
		}
		name, disk := de.name, de.disk
		p := index.JoinPath(d.path, name)
		if d.path == "" && disk == index.StateDir {
			continue
		}
		if strings.HasPrefix(disk, index.TempPrefix) {
			if s.opts.RemoveTemps {
				if mode, st, err := lstatAt(d.fd, disk); err == nil && mode.IsRegular() && s.start.Sub(time.Unix(0, st.MTime)) > TempMaxAge {
					if unix.Unlinkat(d.fd, disk, 0) == nil {
						s.opts.Logger.Info("removed a leftover temporary file", "path", p)
					}
				}
			}
			continue
		}
		if de.twin != "" {
			s.warn("%q: skipped: it and %q are one name in Unicode NFC, which versions use; rename one", index.JoinPath(d.path, disk), index.JoinPath(d.path, de.twin))
			continue
		}
		if err := index.ValidName(name); err != nil {
			s.warn("%q: skipped: %v", p, err)
			continue
		}
		mode, st, err := lstatAt(d.fd, disk)
		if errors.Is(err, fs.ErrNotExist) {
			continue // vanished since the listing
		}
		if err != nil {
			return subdirs, fmt.Errorf("scan: lstat %s: %w", filepath.Join(s.dir, filepath.FromSlash(p)), err)
		}
		isDir := mode.IsDir()
		if ign.match(p, isDir) {
			continue
		}
		entry := index.Entry{Name: name, Mode: mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)}
		switch {
		case mode.IsRegular():
			s.nFiles.Add(1)
			entry.Kind, entry.Size, entry.MTime = index.KindFile, st.Size, st.MTime
			slot := d.add(entry)
			old, had := lookup(name)
			had = had && old.Mode&uint32(fs.ModeDir) == 0
			if !had {
				s.notPortable(p, name)
			}
			s.progress(Event{Files: 1, CurrentPath: p})
			if s.opts.Hold != nil && s.opts.Hold(p) {
				atomic.AddInt64(&s.res.Held, 1)
				if !had {
					d.mu.Lock()
					d.skip[slot] = true
					d.mu.Unlock()
					continue
				}
				d.mu.Lock()
				e := &d.entries[slot]
				e.Size, e.MTime, e.Ref = old.Size, old.MTime, old.Ref
				d.mu.Unlock()
				d.size.Add(old.Size)
				continue
			}
			if had && old.Unchanged(st) {
				d.setRef(slot, old.Ref)
				d.size.Add(st.Size)
				continue
			}
			s.progress(Event{ToReadFiles: 1, ToReadBytes: st.Size})
			job := &fileJob{dir: d, slot: slot, path: p, name: name, disk: disk, st: st, old: old, had: had}
			d.mu.Lock()
			d.pending++
			d.fdRefs++ // released when the job is done
			d.mu.Unlock()
			select {
			case s.files <- job:
			case <-s.ctx.Done():
				d.release()
				return subdirs, s.ctx.Err()
			}
		case mode&fs.ModeSymlink != 0:
			target, err := readlinkAt(d.fd, disk)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) || err == unix.EINVAL {
					continue // gone, or no longer a link, since the lstat
				}
				return subdirs, fmt.Errorf("scan: readlink %s: %w", filepath.Join(s.dir, filepath.FromSlash(p)), err)
			}
			if target == "" || len(target) > index.MaxTargetLen {
				s.warn("%q: skipped: symlink target of %d bytes or more", p, len(target))
				continue
			}
			s.nLinks.Add(1)
			entry.Kind, entry.Target, entry.Size, entry.MTime = index.KindSymlink, target, int64(len(target)), st.MTime
			d.add(entry)
		case isDir:
			s.nDirs.Add(1)
			if _, ok := lookup(name); !ok {
				s.notPortable(p, name)
				// A marker, so that the directory's entries are forgotten
				// when it goes.
				if err := s.cachePut(d.path, name, state.Stat{Mode: uint32(fs.ModeDir)}); err != nil {
					return subdirs, err
				}
			}
			// Directory mtimes change with every create and delete inside,
			// so they are not kept: they would make versions of noise.
			entry.Kind = index.KindDir
			slot := d.add(entry)
			d.mu.Lock()
			d.pending++
			d.fdRefs++ // released when the subdirectory has opened its own
			d.mu.Unlock()
			subdirs = append(subdirs, subdir{node: &dirNode{path: p, name: disk, parent: d, slot: slot}, ign: ign})
		default:
			s.warn("%q: skipped: not a regular file, directory or symlink (%s)", p, mode.Type())
		}
	}
	return subdirs, s.forgetGone(d.path, cached, keep)
}

// forgetGone drops the cache entries of names that are gone from dir, and
// everything below directories that are gone.
func (s *scanner) forgetGone(dir string, cached []state.Named, keep []bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, old := range cached {
		if keep[i] {
			continue
		}
		err := s.update.Delete(dir, old.Name)
		if err == nil && old.Mode&uint32(fs.ModeDir) != 0 {
			err = s.update.DeleteTree(index.JoinPath(dir, old.Name))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// lstatAt lstats name in the directory open as dirfd.
func lstatAt(dirfd int, name string) (fs.FileMode, state.Stat, error) {
	var sys unix.Stat_t
	for {
		err := unix.Fstatat(dirfd, name, &sys, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, state.Stat{}, err
		}
		mode, st := state.FromSys(&sys)
		return mode, st, nil
	}
}

// readlinkAt reads the target of the link name in dirfd. A target longer
// than index.MaxTargetLen comes back cut at MaxTargetLen+1 bytes, for the
// caller to refuse.
func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, index.MaxTargetLen+1)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TempMaxAge is how long a leftover temporary file is kept.
const TempMaxAge = 24 * time.Hour
