package restore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-sync/ferry/index"
	"golang.org/x/sys/unix"
)

// dirFD is an open directory; refs counts users, so that a descriptor is
// never closed (and its number reused) while a writer holds it.
type dirFD struct {
	fd   int
	refs int
	gone bool // dropped from the cache: close at the last release
}

// dir returns a descriptor of the directory at rel, opening each component
// with O_NOFOLLOW from the root, and a release function to call when done
// with it. With create, missing components are made; a component that is a
// symlink or file is an error, never followed.
func (w *writer) dir(rel string, create bool) (int, func(), error) {
	if rel == "" {
		return w.root, func() {}, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.openLocked(rel, create)
	if err != nil {
		return -1, nil, err
	}
	d.refs++
	return d.fd, func() { w.release(d) }, nil
}

func (w *writer) release(d *dirFD) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d.refs--
	if d.refs == 0 && d.gone {
		unix.Close(d.fd)
	}
}

// openLocked finds or opens rel; the caller holds mu.
func (w *writer) openLocked(rel string, create bool) (*dirFD, error) {
	if d, ok := w.dirs[rel]; ok {
		return d, nil
	}
	parent := w.root
	if pd, name := split(rel); pd != "" {
		p, err := w.openLocked(pd, create)
		if err != nil {
			return nil, err
		}
		parent = p.fd
		rel = index.JoinPath(pd, name)
	}
	pd, name := split(rel)
	disk := w.disk(pd, name)
	fd, err := unix.Openat(parent, disk, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err = unix.Mkdirat(parent, disk, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("restore: mkdir %q: %w", rel, err)
		}
		fd, err = unix.Openat(parent, disk, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("restore: %q is not a directory (a symlink or file is in the way): %w", rel, index.ErrInvalidPath)
	}
	if err != nil {
		return nil, fmt.Errorf("restore: open %q: %w", rel, err)
	}
	if len(w.dirs) >= maxDirFDs {
		for p, d := range w.dirs {
			if !strings.HasPrefix(rel, p+"/") {
				w.dropLocked(p, d)
			}
		}
	}
	d := &dirFD{fd: fd}
	w.dirs[rel] = d
	return d, nil
}

const maxDirFDs = 128

func (w *writer) dropLocked(p string, d *dirFD) {
	delete(w.dirs, p)
	d.gone = true
	if d.refs == 0 {
		unix.Close(d.fd)
	}
}

func (w *writer) forgetDir(p string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, d := range w.dirs {
		if k == p || strings.HasPrefix(k, p+"/") {
			w.dropLocked(k, d)
		}
	}
	// A removed directory needs no fsync; its parent gets one.
	for k := range w.dirty {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(w.dirty, k)
		}
	}
}

func (w *writer) syncDirs() error {
	w.mu.Lock()
	dirty := w.dirty
	w.dirty = map[string]bool{}
	w.mu.Unlock()
	for d := range dirty {
		fd, release, err := w.dir(d, false)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return err
		}
		err = unix.Fsync(fd)
		release()
		if err != nil {
			return fmt.Errorf("restore: fsync %q: %w", d, err)
		}
	}
	return nil
}
