package cas

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// packWriter appends entries to one pack file. Entries collect in an
// aligned buffer that is written with O_DIRECT in large aligned blocks:
// on the machines measured, copying into the page cache cost 3 to 6 times
// the disk's own write time (docs/ARCHITECTURE.md). Where the filesystem
// refuses O_DIRECT, the same writes go through the page cache.
//
// The buffer holds the file's bytes from base (aligned) to size; bytes
// below base are on disk. A sync writes the partial last block padded with
// zeros (the next write rewrites it) and fsyncs; the padding lies past the
// recorded length, which is all any record points into, and Open cuts it.
type packWriter struct {
	id        uint64
	path      string
	st        storage
	f         file
	direct    bool
	size      int64      // logical length: every byte appended
	base      int64      // file offset of buf[0], aligned
	buf       []byte     // file bytes [base, size); cap is packBuf
	dirty     bool       // bytes appended since the last sync
	dirSynced bool       // the file's directory entry is durable
	broken    bool       // a failed append cut it short: seal it, start another
	uploaded  bool       // in the PackStore (Options.Packs)
	upload    chan error // a background upload's answer, when one runs
	head      [packEntryHead]byte
}

const (
	packAlign = 4096
	packBuf   = 4 << 20
)

// alignedBuf returns an empty slice of capacity n whose first byte is
// packAlign-aligned, as O_DIRECT needs.
func alignedBuf(n int) []byte {
	b := make([]byte, n+packAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (packAlign - 1))
	if off != 0 {
		off = packAlign - off
	}
	return b[off : off : off+n]
}

func createPack(st storage, dir string, id uint64) (*packWriter, error) {
	path := packPath(dir, id)
	f, direct, err := st.createPack(path)
	if err != nil {
		return nil, fmt.Errorf("cas: create pack: %w", err)
	}
	w := &packWriter{id: id, path: path, st: st, f: f, direct: direct, buf: alignedBuf(packBuf), dirty: true}
	if err := w.write([]byte(packMagic)); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// append adds one entry and returns its offset. A write that fails (a
// full disk) leaves the pack as it was before the entry: when none of the
// entry reached the file, the buffer forgets it; when part of it did,
// everything before it is on the file too, and the pack is cut there and
// broken, for the store to seal and replace.
func (w *packWriter) append(ref Ref, flags Flags, rawLen int, payload []byte) (int64, error) {
	h := w.head[:]
	copy(h, ref[:])
	h[32] = byte(flags)
	binary.LittleEndian.PutUint32(h[33:], uint32(rawLen))
	binary.LittleEndian.PutUint32(h[37:], uint32(len(payload)))
	off, base, buffered := w.size, w.base, len(w.buf)
	err := w.write(h)
	if err == nil {
		err = w.write(payload)
	}
	if err != nil {
		if w.base == base {
			w.buf, w.size = w.buf[:buffered], off
		} else {
			w.size, w.base, w.buf, w.broken = off, off, nil, true
		}
		return 0, err
	}
	w.dirty = true
	return off, nil
}

// write appends p to the buffer, writing out each full buffer.
func (w *packWriter) write(p []byte) error {
	for len(p) > 0 {
		n := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+n]
		w.size += int64(n)
		p = p[n:]
		if len(w.buf) == cap(w.buf) {
			if err := w.writeAt(w.buf, w.base); err != nil {
				return err
			}
			w.base += int64(len(w.buf))
			w.buf = w.buf[:0]
		}
	}
	return nil
}

// writeAt writes an aligned block; if the filesystem turns O_DIRECT down
// at the first write, the file is reopened without it.
func (w *packWriter) writeAt(b []byte, off int64) error {
	_, err := w.f.WriteAt(b, off)
	if err != nil && w.direct && errors.Is(err, unix.EINVAL) {
		f, oerr := w.st.reopenBuffered(w.path)
		if oerr == nil {
			w.f.Close()
			w.f, w.direct = f, false
			_, err = w.f.WriteAt(b, off)
		}
	}
	if err != nil {
		return fmt.Errorf("cas: write pack %d: %w", w.id, err)
	}
	return nil
}

// flushTail writes the buffered partial block, padded to the alignment
// when O_DIRECT needs it.
func (w *packWriter) flushTail() error {
	if len(w.buf) == 0 {
		return nil
	}
	n := len(w.buf)
	if w.direct {
		n = (n + packAlign - 1) &^ (packAlign - 1)
		clear(w.buf[len(w.buf):n])
	}
	return w.writeAt(w.buf[:n], w.base)
}

// sync makes the pack durable. A failed write of the tail leaves the
// buffer as it was, to be written by a later sync; a failed fsync is a
// *syncError: what the kernel held may be lost, and the store must stop.
func (w *packWriter) sync() error {
	if err := w.flushTail(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return &syncError{fmt.Errorf("cas: fsync pack %d: %w", w.id, err)}
	}
	if !w.dirSynced {
		if err := w.st.syncDir(filepath.Dir(w.path)); err != nil {
			return &syncError{err}
		}
		w.dirSynced = true
	}
	w.dirty = false
	return nil
}

// syncError is an fsync that failed: never retried, it fails the store
// (see fsyncgate, RELIABILITY.md rule 10).
type syncError struct{ err error }

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// seal writes everything out and cuts the padding: the pack is complete
// on disk (not yet durable: the next flush fsyncs it) and its buffer is
// released. Without O_DIRECT, writeback starts now so that fsync finds
// little left to do.
func (w *packWriter) seal() error {
	if err := w.flushTail(); err != nil {
		return err
	}
	if err := truncateFile(w.f, w.size); err != nil {
		return fmt.Errorf("cas: truncate pack %d: %w", w.id, err)
	}
	w.base, w.buf = w.size, nil
	if f, ok := w.f.(*os.File); ok && !w.direct {
		_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
	return nil
}

// readBuffered copies the part of [off, off+len(dst)) that lies in the
// buffer into dst, and returns how many leading bytes lie before it (on
// disk, for the caller to read). ok is false when none of it is buffered.
// The caller holds the DB's lock.
func (w *packWriter) readBuffered(dst []byte, off int64) (head int, ok bool) {
	end := off + int64(len(dst))
	if end <= w.base || off >= w.size || end > w.size {
		return 0, false
	}
	head = int(max(0, w.base-off))
	copy(dst[head:], w.buf[off+int64(head)-w.base:end-w.base])
	return head, true
}

// packFiles caches read handles. Handles are never closed while the DB is
// open (a closed handle could race a reader); past maxOpen, a read opens a
// handle of its own.
type packFiles struct {
	dir    string
	st     storage
	remote PackStore // nil: every pack is local
	// fill, with a remote, copies a pack into the local cache.
	fill func(id uint64) (file, error)
	mu   sync.Mutex
	open map[uint64]*openPack
	// With a remote: the local copies (id to length) and when each was
	// last read (a counter), for eviction.
	local map[uint64]int64
	used  map[uint64]uint64
	clock uint64
}

const maxOpenPacks = 256

// openPack is a cached read handle; a forgotten one is closed by its
// last reader, so that evicting a cached pack never closes a file under a
// read (which would read as damage).
type openPack struct {
	f    file
	refs int
	gone bool
}

// handle returns a read handle of pack id and the function that releases
// it.
func (p *packFiles) handle(id uint64) (file, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.remote != nil {
		p.clock++
		if _, ok := p.local[id]; ok {
			p.used[id] = p.clock
		}
	}
	if h := p.open[id]; h != nil {
		return h.f, p.releaser(h), nil
	}
	f, err := p.st.open(packPath(p.dir, id))
	if errors.Is(err, os.ErrNotExist) && p.remote != nil {
		// Copy it in (without the lock: a fill may take a while), or read
		// it where it is.
		p.mu.Unlock()
		cached, ferr := p.fill(id)
		p.mu.Lock()
		if ferr == nil {
			f, err = cached, nil
		} else {
			f, err = remoteFile{ps: p.remote, name: packObject(id)}, nil
		}
		if h := p.open[id]; h != nil {
			f.Close()
			return h.f, p.releaser(h), nil
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if p.open == nil {
		p.open = map[uint64]*openPack{}
	}
	if len(p.open) >= maxOpenPacks {
		return f, func() { f.Close() }, nil
	}
	h := &openPack{f: f}
	p.open[id] = h
	return f, p.releaser(h), nil
}

// releaser counts a reader of h and returns its release.
func (p *packFiles) releaser(h *openPack) func() {
	h.refs++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		h.refs--
		if h.gone && h.refs == 0 {
			h.f.Close()
		}
	}
}

// forget drops the cached handle of a pack about to be deleted (or its
// local copy evicted); a reader still using it closes it.
func (p *packFiles) forget(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.open[id]; h != nil {
		delete(p.open, id)
		h.gone = true
		if h.refs == 0 {
			h.f.Close()
		}
	}
}

// addLocal counts a local copy of an uploaded pack.
func (p *packFiles) addLocal(id uint64, size int64) {
	if p.remote == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.local == nil {
		p.local, p.used = map[uint64]int64{}, map[uint64]uint64{}
	}
	p.clock++
	p.local[id], p.used[id] = size, p.clock
}

// dropLocal forgets a local copy that was removed.
func (p *packFiles) dropLocal(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.local, id)
	delete(p.used, id)
}

// evictable returns the local copies to remove, least recently read
// first, for the rest to fit in limit bytes; busy ones stay.
func (p *packFiles) evictable(limit int64, busy map[uint64]bool) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var total int64
	ids := make([]uint64, 0, len(p.local))
	for id, n := range p.local {
		total += n
		if !busy[id] {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b uint64) int { return cmp.Compare(p.used[a], p.used[b]) })
	var out []uint64
	for _, id := range ids {
		if total <= limit {
			break
		}
		out = append(out, id)
		total -= p.local[id]
	}
	return out
}

func (p *packFiles) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, h := range p.open {
		h.f.Close()
		delete(p.open, id)
	}
}

// readAt reads len(b) bytes of pack id at off.
func (p *packFiles) readAt(id uint64, b []byte, off int64) error {
	f, release, err := p.handle(id)
	if err != nil {
		return err
	}
	defer release()
	if _, err = f.ReadAt(b, off); err != nil {
		return fmt.Errorf("%w: read pack %d: %w", ErrCorrupt, id, err)
	}
	return nil
}

// read returns the payload of the entry at loc, after checking that the
// entry's header names ref and agrees with the record.
func (p *packFiles) read(ref Ref, loc location) ([]byte, error) {
	f, release, err := p.handle(loc.pack)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: blob %s: pack %d is missing", ErrCorrupt, ref.Short(), loc.pack)
		}
		return nil, fmt.Errorf("cas: read pack %d: %w", loc.pack, err)
	}
	defer release()
	buf := make([]byte, packEntryHead+loc.storedLen)
	if _, err := f.ReadAt(buf, loc.off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: blob %s: pack %d is short", ErrCorrupt, ref.Short(), loc.pack)
		}
		// A read error (EIO) is damage too: the bytes cannot be had.
		return nil, fmt.Errorf("%w: blob %s: read pack %d: %w", ErrCorrupt, ref.Short(), loc.pack, err)
	}
	return checkEntry(ref, loc, buf)
}

// checkEntry checks that an entry's header names ref and agrees with its
// record, and returns the payload.
func checkEntry(ref Ref, loc location, buf []byte) ([]byte, error) {
	if Ref(buf[:32]) != ref || Flags(buf[32]) != loc.flags ||
		int(binary.LittleEndian.Uint32(buf[33:])) != loc.rawLen ||
		int(binary.LittleEndian.Uint32(buf[37:])) != loc.storedLen {
		return nil, fmt.Errorf("%w: blob %s: pack %d entry at %d does not match its record", ErrCorrupt, ref.Short(), loc.pack, loc.off)
	}
	return buf[packEntryHead:], nil
}
