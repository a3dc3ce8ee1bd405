package cas

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// file is what the store needs of an open pack: *os.File and vfs.File
// (opened read-write) both are one.
type file interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// storage is the filesystem a DB keeps its files in: the real one, where
// packs are written with O_DIRECT, or an injected vfs.FS (a crashable
// in-memory filesystem, or one that injects faults) that Pebble and the
// packs share, so that a test sees every byte the store writes.
type storage struct {
	fs vfs.FS // nil: the real filesystem
}

func (s storage) pebbleFS() vfs.FS {
	if s.fs == nil {
		return vfs.Default
	}
	return s.fs
}

// createPack makes a new pack file; direct says its writes must be
// aligned blocks (O_DIRECT).
func (s storage) createPack(path string) (f file, direct bool, err error) {
	if s.fs == nil {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_DIRECT, 0o600)
		if errors.Is(err, unix.EINVAL) {
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			return f, false, err
		}
		return f, err == nil, err
	}
	if _, err := s.fs.Stat(path); err == nil {
		return nil, false, &os.PathError{Op: "create", Path: path, Err: os.ErrExist}
	}
	vf, err := s.fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	return vf, false, err
}

// reopenBuffered opens a pack for writing through the page cache, for a
// filesystem that took O_DIRECT at open and refused it at the first write.
func (s storage) reopenBuffered(path string) (file, error) {
	if s.fs == nil {
		return os.OpenFile(path, os.O_RDWR, 0)
	}
	return s.fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
}

func (s storage) open(path string) (file, error) {
	if s.fs == nil {
		return os.Open(path)
	}
	f, err := s.fs.Open(path)
	if err != nil {
		return nil, err
	}
	return readOnly{f}, nil
}

// readOnly adapts a vfs.File opened for reading.
type readOnly struct{ vfs.File }

func (r readOnly) WriteAt([]byte, int64) (int, error) {
	return 0, errors.New("cas: pack opened for reading")
}

func (s storage) remove(path string) error {
	if s.fs == nil {
		return os.Remove(path)
	}
	return s.fs.Remove(path)
}

func (s storage) mkdirAll(dir string) error {
	if s.fs == nil {
		return os.MkdirAll(dir, 0o700)
	}
	return s.fs.MkdirAll(dir, 0o700)
}

// exists reports whether path exists.
func (s storage) exists(path string) bool {
	if s.fs == nil {
		_, err := os.Stat(path)
		return err == nil
	}
	_, err := s.fs.Stat(path)
	return err == nil
}

// packSizes lists the pack files in dir with their sizes.
func (s storage) packSizes(dir string) (map[uint64]int64, error) {
	out := map[uint64]int64{}
	var names []string
	if s.fs == nil {
		es, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			names = append(names, e.Name())
		}
	} else {
		var err error
		if names, err = s.fs.List(dir); err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		id, ok := parsePackName(name)
		if !ok {
			continue
		}
		var size int64
		if s.fs == nil {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				return nil, err
			}
			size = fi.Size()
		} else {
			fi, err := s.fs.Stat(s.fs.PathJoin(dir, name))
			if err != nil {
				return nil, err
			}
			size = fi.Size()
		}
		out[id] = size
	}
	return out, nil
}

// truncate cuts a file back to size. An injected filesystem cannot cut
// files; what lies past a pack's recorded length is never read, so it is
// left there.
func (s storage) truncate(path string, size int64) error {
	if s.fs == nil {
		return os.Truncate(path, size)
	}
	return nil
}

// truncateFile is truncate for an open pack.
func truncateFile(f file, size int64) error {
	if t, ok := f.(interface{ Truncate(int64) error }); ok {
		return t.Truncate(size)
	}
	return nil
}

// syncDir makes a directory's entries durable.
func (s storage) syncDir(dir string) error {
	var d interface {
		Sync() error
		Close() error
	}
	var err error
	if s.fs == nil {
		d, err = os.Open(dir)
	} else {
		d, err = s.fs.OpenDir(dir)
	}
	if err != nil {
		return fmt.Errorf("cas: fsync %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cas: fsync %s: %w", dir, err)
	}
	return nil
}

// lock takes the store's lock file: flock(2) on the real filesystem (so a
// second process, or a second Open in this one, is refused), the
// filesystem's own lock otherwise.
func (s storage) lock(dir string) (io.Closer, error) {
	path := filepath.Join(dir, "LOCK")
	if s.fs != nil {
		l, err := s.fs.Lock(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrLocked, dir, err)
		}
		return l, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cas: lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("cas: lock %s: %w", dir, err)
	}
	return f, nil
}

// freeBytes is the space left for the store's writes, or -1 when the
// filesystem cannot say.
func (s storage) freeBytes(dir string) int64 {
	if s.fs == nil {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return -1
		}
		return int64(st.Bavail) * int64(st.Bsize)
	}
	u, err := s.fs.GetDiskUsage(dir)
	if err != nil {
		return -1
	}
	return int64(u.AvailBytes)
}

// InUse reports whether a process holds the store at dir open (its lock
// is taken), so that a caller can tell a running server from files one
// left behind.
func InUse(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "LOCK"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// Memtable sizes a store may get by what it holds: a sixteenth of its
// bytes on disk, rounded up to a power of two, within these bounds.
const (
	minMemTable = 1 << 20
	maxMemTable = 16 << 20
)

// memTableFor sizes the memtable of the store at dir by the bytes it holds
// (Pebble's tables and the packs), so its fixed footprint grows with its
// data: 1 MiB for a new store, 16 MiB from 256 MiB of data.
func (s storage) memTableFor(dir string) uint64 {
	if s.fs != nil {
		return maxMemTable
	}
	var total int64
	for _, sub := range []string{"pebble", "packs"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && !strings.HasSuffix(e.Name(), ".log") {
				total += fi.Size()
			}
		}
	}
	size := uint64(minMemTable)
	for size < maxMemTable && int64(size)*16 < total {
		size *= 2
	}
	return size
}

// createFile makes (or empties) a plain file for writing through the
// page cache: a pack copied into the cache.
func (s storage) createFile(path string) (file, error) {
	if s.fs == nil {
		return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	}
	return s.fs.Create(path, vfs.WriteCategoryUnspecified)
}

// rename moves a file into place.
func (s storage) rename(from, to string) error {
	if s.fs == nil {
		return os.Rename(from, to)
	}
	return s.fs.Rename(from, to)
}
