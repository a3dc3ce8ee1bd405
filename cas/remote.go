package cas

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// PackStore keeps packs somewhere other than the store's disk: an object
// store (s3store), where each pack is an immutable object. With one, a
// pack is sealed at the flush that makes it durable and uploaded whole
// before any record that points into it commits; the local copy is then a
// cache, bounded by Options.CacheBytes, and a read the cache cannot serve
// is a ranged read of the object.
//
// A missing object is an error for which errors.Is(err, fs.ErrNotExist)
// holds; a create of a name that exists, fs.ErrExist.
type PackStore interface {
	Create(ctx context.Context, name string, r io.ReadSeeker, size int64) error
	ReadAt(ctx context.Context, name string, p []byte, off int64) error
	Size(ctx context.Context, name string) (int64, error)
	Delete(ctx context.Context, name string) error
}

// remoteTimeout bounds one request to the pack store from a path that has
// no context of its own (reads through packFiles).
const remoteTimeout = 2 * time.Minute

// transferTimeout bounds moving a whole pack of size bytes: remoteTimeout,
// and a second more for each MiB (a floor of 1 MiB/s).
func transferTimeout(size int64) time.Duration {
	return remoteTimeout + time.Duration(size)*time.Second/(1<<20)
}

func packObject(id uint64) string { return fmt.Sprintf("%016x.pack", id) }

// newPackID picks a pack id for a store with a PackStore: random, so that
// servers sharing a bucket never pick the same name, and never 0 (or one
// the store knows).
func (db *DB) newPackID() uint64 {
	for {
		var b [8]byte
		rand.Read(b[:])
		id := binary.BigEndian.Uint64(b[:]) >> 1 // positive as an int64 too
		if _, err := db.packLen(id); id != 0 && errors.Is(err, ErrNotFound) {
			return id
		}
	}
}

// uploadLocked writes a sealed pack to the pack store, whole.
func (db *DB) uploadLocked(w *packWriter) error {
	if err := db.upload(w); err != nil {
		return err
	}
	w.uploaded = true
	return nil
}

// startUpload uploads a sealed pack in the background; the flush that
// makes it durable waits for the answer (w.upload), and uploads it itself
// if that failed. A pack fills at packTarget, so a large push uploads as
// it writes instead of all at its end.
func (db *DB) startUpload(w *packWriter) {
	w.upload = make(chan error, 1)
	go func() { w.upload <- db.upload(w) }()
}

// upload writes a sealed pack to the pack store, whole; it touches
// nothing the DB's lock guards. A create that finds the name taken by an
// object of the same size is a retry of one that had won; another size is
// a collision, and an error.
func (db *DB) upload(w *packWriter) error {
	f, err := db.st.open(w.path)
	if err != nil {
		return fmt.Errorf("cas: upload pack %d: %w", w.id, err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), transferTimeout(w.size))
	defer cancel()
	name := packObject(w.id)
	err = db.opts.Packs.Create(ctx, name, io.NewSectionReader(f, 0, w.size), w.size)
	if errors.Is(err, fs.ErrExist) {
		n, serr := db.opts.Packs.Size(ctx, name)
		if serr == nil && n == w.size {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("cas: upload pack %d: %w", w.id, err)
	}
	return nil
}

// remoteFile reads a pack from the pack store.
type remoteFile struct {
	ps   PackStore
	name string
}

func (r remoteFile) ReadAt(p []byte, off int64) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), remoteTimeout)
	defer cancel()
	if err := r.ps.ReadAt(ctx, r.name, p, off); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("%w: %w", os.ErrNotExist, err)
		}
		return 0, err
	}
	return len(p), nil
}

func (remoteFile) WriteAt([]byte, int64) (int, error) {
	return 0, errors.New("cas: a remote pack is read-only")
}
func (remoteFile) Sync() error  { return nil }
func (remoteFile) Close() error { return nil }

// evictLocked deletes local copies of uploaded packs, least recently read
// first, until the local packs fit in Options.CacheBytes. The current
// pack and sealed packs not yet uploaded stay: they are the only copy.
func (db *DB) evictLocked() {
	if db.opts.Packs == nil || db.opts.CacheBytes <= 0 {
		return
	}
	busy := map[uint64]bool{}
	if db.cur != nil {
		busy[db.cur.id] = true
	}
	for _, w := range db.sealed {
		busy[w.id] = true
	}
	for _, id := range db.packs.evictable(db.opts.CacheBytes, busy) {
		db.packs.forget(id)
		if err := db.st.remove(packPath(db.dir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.opts.Logger.Warn("could not drop a cached pack", "pack", id, "err", err)
			continue
		}
		db.packs.dropLocal(id)
	}
}

// fillChunk is how much of a pack one request of a cache fill reads.
const fillChunk = 8 << 20

// fillPack copies pack id from the pack store into the local cache, so
// that the reads after the first are local: fetched in pieces, synced,
// then renamed into place (a crash leaves a whole copy or none). A pack
// larger than a quarter of the cache is not copied, and a copy that
// cannot be written (a full disk) is given up: the read goes to the pack
// store, and the server goes on serving.
func (db *DB) fillPack(id uint64) (file, error) {
	size, err := db.packLen(id)
	if err != nil {
		return nil, err
	}
	if db.opts.CacheBytes > 0 && size > db.opts.CacheBytes/4 {
		return nil, fmt.Errorf("pack %d (%d bytes) is too large for the cache", id, size)
	}
	db.fillMu.Lock()
	defer db.fillMu.Unlock()
	path := packPath(db.dir, id)
	if f, err := db.st.open(path); err == nil {
		return f, nil // another read filled it meanwhile
	}
	tmp := path + fillSuffix
	w, err := db.st.createFile(tmp)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			w.Close()
			db.st.remove(tmp)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), transferTimeout(size))
	defer cancel()
	buf := make([]byte, min(size, fillChunk))
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if err := db.opts.Packs.ReadAt(ctx, packObject(id), buf[:n], off); err != nil {
			return nil, err
		}
		if _, err := w.WriteAt(buf[:n], off); err != nil {
			return nil, err
		}
	}
	if err := w.Sync(); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := db.st.rename(tmp, path); err != nil {
		return nil, err
	}
	ok = true
	db.packs.addLocal(id, size)
	if db.mu.TryLock() {
		// Room for it; a read that finds the store busy leaves this to
		// the next flush.
		db.evictLocked()
		db.mu.Unlock()
	}
	return db.st.open(path)
}

// fillSuffix names a pack being copied into the cache; Open removes
// leftovers of a crash.
const fillSuffix = ".fill"

// packLister is a PackStore that can list its objects (s3store does):
// what a collection needs to find orphans.
type packLister interface {
	List(ctx context.Context, fn func(name string, size int64, modified time.Time) error) error
}

// sweepOrphans deletes pack objects that no pack record names and that
// are older than before: uploads whose flush never committed (a crash, a
// failed commit) and deletes that failed. A pack being written or flushed
// now is spared by name, and any young object by age (another server's
// upload may be about to commit).
func (db *DB) sweepOrphans(ctx context.Context, before time.Time, dry bool, st *SweepStats) error {
	l, ok := db.opts.Packs.(packLister)
	if !ok {
		return nil
	}
	db.mu.Lock()
	busy := map[uint64]bool{}
	if db.cur != nil {
		busy[db.cur.id] = true
	}
	for _, w := range db.sealed {
		busy[w.id] = true
	}
	db.mu.Unlock()
	var orphans []string
	err := l.List(ctx, func(name string, size int64, modified time.Time) error {
		id, ok := parsePackName(name)
		if !ok || busy[id] || !modified.Before(before) {
			return nil
		}
		if _, err := db.packLen(id); errors.Is(err, ErrNotFound) {
			orphans = append(orphans, name)
			st.OrphanPacks++
			st.OrphanBytes += size
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cas: list pack objects: %w", err)
	}
	if dry {
		return nil
	}
	for _, name := range orphans {
		if err := db.opts.Packs.Delete(ctx, name); err != nil {
			return fmt.Errorf("cas: delete orphan pack object %s: %w", name, err)
		}
	}
	return nil
}
