package cas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// packWriter appends entries to one pack file.
type packWriter struct {
	id        uint64
	f         *os.File
	size      int64
	dirty     bool // bytes written since the last fsync
	dirSynced bool // the file's directory entry is durable
	head      [packEntryHead]byte
}

func createPack(dir string, id uint64) (*packWriter, error) {
	path := packPath(dir, id)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cas: create pack: %w", err)
	}
	if _, err := f.Write([]byte(packMagic)); err != nil {
		f.Close()
		return nil, fmt.Errorf("cas: write pack %s: %w", path, err)
	}
	return &packWriter{id: id, f: f, size: int64(len(packMagic)), dirty: true}, nil
}

// append writes one entry and returns its offset.
func (w *packWriter) append(ref Ref, flags Flags, rawLen int, payload []byte) (int64, error) {
	h := w.head[:]
	copy(h, ref[:])
	h[32] = byte(flags)
	binary.LittleEndian.PutUint32(h[33:], uint32(rawLen))
	binary.LittleEndian.PutUint32(h[37:], uint32(len(payload)))
	off := w.size
	if _, err := w.f.WriteAt(h, off); err != nil {
		return 0, fmt.Errorf("cas: write pack %d: %w", w.id, err)
	}
	if _, err := w.f.WriteAt(payload, off+packEntryHead); err != nil {
		return 0, fmt.Errorf("cas: write pack %d: %w", w.id, err)
	}
	w.size += packEntryHead + int64(len(payload))
	w.dirty = true
	return off, nil
}

func (w *packWriter) sync() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("cas: fsync pack %d: %w", w.id, err)
	}
	if !w.dirSynced {
		if err := syncDir(filepath.Dir(w.f.Name())); err != nil {
			return err
		}
		w.dirSynced = true
	}
	w.dirty = false
	return nil
}

// startWriteback asks the kernel to begin writing the pack out, so the
// fsync at the next flush finds little left to do.
func (w *packWriter) startWriteback() {
	_ = unix.SyncFileRange(int(w.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
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

// packFiles caches read handles. Handles are never closed while the DB is
// open (a closed handle could race a reader); past maxOpen, a read opens a
// handle of its own.
type packFiles struct {
	dir  string
	mu   sync.Mutex
	open map[uint64]*os.File
}

const maxOpenPacks = 256

func (p *packFiles) handle(id uint64) (f *os.File, owned bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.open[id]; f != nil {
		return f, false, nil
	}
	f, err = os.Open(packPath(p.dir, id))
	if err != nil {
		return nil, false, err
	}
	if p.open == nil {
		p.open = map[uint64]*os.File{}
	}
	if len(p.open) >= maxOpenPacks {
		return f, true, nil
	}
	p.open[id] = f
	return f, false, nil
}

// forget drops the cached handle of a pack about to be deleted.
func (p *packFiles) forget(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.open[id]; f != nil {
		f.Close()
		delete(p.open, id)
	}
}

func (p *packFiles) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, f := range p.open {
		f.Close()
		delete(p.open, id)
	}
}

// read returns the payload of the entry at loc, after checking that the
// entry's header names ref and agrees with the record.
func (p *packFiles) read(ref Ref, loc location) ([]byte, error) {
	f, owned, err := p.handle(loc.pack)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: blob %s: pack %d is missing", ErrCorrupt, ref.Short(), loc.pack)
		}
		return nil, fmt.Errorf("cas: read pack %d: %w", loc.pack, err)
	}
	if owned {
		defer f.Close()
	}
	buf := make([]byte, packEntryHead+loc.storedLen)
	if _, err := f.ReadAt(buf, loc.off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: blob %s: pack %d is short", ErrCorrupt, ref.Short(), loc.pack)
		}
		return nil, fmt.Errorf("cas: read pack %d: %w", loc.pack, err)
	}
	if Ref(buf[:32]) != ref || Flags(buf[32]) != loc.flags ||
		int(binary.LittleEndian.Uint32(buf[33:])) != loc.rawLen ||
		int(binary.LittleEndian.Uint32(buf[37:])) != loc.storedLen {
		return nil, fmt.Errorf("%w: blob %s: pack %d entry at %d does not match its record", ErrCorrupt, ref.Short(), loc.pack, loc.off)
	}
	return buf[packEntryHead:], nil
}
