package cas

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrFull: the store's filesystem is below its free-space mark, and new
// blobs are refused until space returns (forget and gc, or more disk).
var ErrFull = errors.New("storage is full")

// spaceGuard refuses new blobs while free space is below min. It asks
// the filesystem again every restatBytes written or restatPuts puts, on
// every put within 2*restatBytes of the mark, and before every refusal;
// statfs costs a syscall, which on every put of 100,000 small files
// would be a tenth of a second.
type spaceGuard struct {
	st  storage
	dir string
	min int64

	mu      sync.Mutex
	known   bool
	free    int64 // at the last statfs, less what was written since
	written int64 // bytes since the last statfs
	puts    int
}

const (
	restatBytes = 16 << 20
	restatPuts  = 4096
)

// check accounts for a write of n bytes, refusing it with ErrFull when
// the filesystem would be left with less than min free.
func (g *spaceGuard) check(n int64) error {
	if g.min <= 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.puts++
	// Near the mark every put asks: the estimate counts payloads, not
	// what Pebble's log and the packs' block padding take beside them.
	if !g.known || g.written >= restatBytes || g.puts >= restatPuts || g.free-n < g.min+2*restatBytes {
		g.restat()
	}
	if g.free >= 0 && g.free-n < g.min {
		return fmt.Errorf("%w: %d bytes free, and the store keeps %d free", ErrFull, max(g.free, 0), g.min)
	}
	g.written += n
	if g.free >= 0 {
		g.free -= n
	}
	return nil
}

func (g *spaceGuard) restat() {
	g.free = g.st.freeBytes(g.dir)
	g.known, g.written, g.puts = true, 0, 0
}

// Free reports the bytes free on the store's filesystem (-1: unknown).
func (db *DB) Free() int64 { return db.st.freeBytes(db.dir) }

// The ballast is a file of reserved space in the store's directory: a
// collection on a full disk deletes it first, so that its own writes
// (rewritten packs, Pebble's compactions) have room, and makes it again
// when the collection freed enough.
const ballastName = "ballast"

// ensureBallast makes the ballast (real filesystem only) when it is
// missing and the space above the free-space mark allows.
func (db *DB) ensureBallast() error {
	size := db.opts.Ballast
	if size <= 0 || db.st.fs != nil {
		return nil
	}
	path := filepath.Join(db.dir, ballastName)
	if fi, err := os.Stat(path); err == nil && fi.Size() >= size {
		return nil
	}
	if free := db.st.freeBytes(db.dir); free >= 0 && free-size < db.opts.MinFree {
		return nil // not now: the next collection tries again
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("cas: ballast: %w", err)
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = f.Truncate(size) // sparse: reserves nothing, but harmless
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("cas: ballast: %w", err)
	}
	return db.st.syncDir(db.dir)
}

// releaseBallast deletes the ballast when the filesystem is below its
// free-space mark, and reports whether it did.
func (db *DB) releaseBallast() bool {
	if free := db.st.freeBytes(db.dir); free < 0 || free >= db.opts.MinFree {
		return false
	}
	return db.dropBallast()
}

// dropBallast deletes the ballast, if there is one, and reports whether
// it did. It takes no lock of the DB's: Pebble calls it from inside a
// write that met ENOSPC (see vfs.OnDiskFull), with its own locks held.
func (db *DB) dropBallast() bool {
	if db.opts.Ballast <= 0 || db.st.fs != nil {
		return false
	}
	if err := os.Remove(filepath.Join(db.dir, ballastName)); err != nil {
		return false
	}
	db.opts.Logger.Warn("storage is full: released the ballast", "dir", db.dir, "bytes", db.opts.Ballast)
	db.space.mu.Lock()
	db.space.known = false
	db.space.mu.Unlock()
	return true
}
