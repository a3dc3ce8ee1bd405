package cas

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"golang.org/x/sys/unix"
)

// Options tune a DB. The zero value opens an existing store with defaults.
type Options struct {
	// Create makes the store when DIR holds none.
	Create bool
	// CacheSize is Pebble's block cache (default 128 MiB, taken as used).
	CacheSize int64
	// MemTableSize is Pebble's memtable size (default 16 MiB).
	MemTableSize uint64
	// Now is the clock for history entries (default time.Now).
	Now func() time.Time
	// Logger receives Pebble's messages (default: discarded).
	Logger *slog.Logger
}

func (o *Options) applyDefaults() {
	if o.CacheSize == 0 {
		o.CacheSize = 128 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 16 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// storeConfig is the JSON under keyConfig.
type storeConfig struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
}

// DB is a blob store in one directory: Pebble for records and small blobs,
// pack files for the rest. It is safe for concurrent use. Namespace returns
// the per-tenant view that implements Store and Heads.
type DB struct {
	dir  string
	opts Options
	pdb  *pebble.DB
	lock *os.File

	// mu guards pending, cur and nextPack. Writers hold it exclusively;
	// readers of pending hold it shared.
	mu      sync.RWMutex
	pending *pebble.Batch // records not yet committed; an indexed batch
	cur     *packWriter   // the pack being appended to, or nil
	sealed  []*packWriter // full packs whose records wait for the next flush
	// writeSeq counts writes; durableSeq is the count the last flush made
	// durable. Flushes that find their writes already durable return at
	// once: concurrent flushes share one fsync (group commit).
	writeSeq, durableSeq uint64
	flushMu              sync.Mutex // one flush at a time
	// While a garbage collection runs, every blob put, found by Has or
	// read is protected from its sweep (see BeginGC).
	gcActive  bool
	protected RefSet
	closed    bool
	// usage caches each namespace's charged bytes (see quota.go).
	usage    map[string]int64
	quotas   map[string]int64 // each namespace's quota, 0 for none
	nextPack uint64
	failed   error // a failed fsync: the store takes no more writes

	packs packFiles
}

// ErrFailed wraps the fsync or write error that made a DB stop writing.
var ErrFailed = errors.New("cas: store failed and takes no more writes")

// Open opens (or with Options.Create makes) the store in dir.
func Open(dir string, opts Options) (*DB, error) {
	opts.applyDefaults()
	if opts.Create {
		if err := os.MkdirAll(filepath.Join(dir, "packs"), 0o700); err != nil {
			return nil, fmt.Errorf("cas: create %s: %w", dir, err)
		}
	} else if _, err := os.Stat(filepath.Join(dir, "pebble")); err != nil {
		return nil, fmt.Errorf("cas: open %s: no store here: %w", dir, ErrNotFound)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref()
	popts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       opts.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{opts.Logger},
	}
	// Most lookups are for refs that are not there (is this chunk new?):
	// bloom filters answer those without reading blocks.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	pdb, err := pebble.Open(filepath.Join(dir, "pebble"), popts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("cas: open %s: %w", dir, err)
	}
	db := &DB{dir: dir, opts: opts, pdb: pdb, lock: lock}
	db.packs.dir = dir
	db.pending = pdb.NewIndexedBatch()
	if err := db.init(); err != nil {
		db.pending.Close()
		pdb.Close()
		lock.Close()
		return nil, fmt.Errorf("cas: open %s: %w", dir, err)
	}
	return db, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
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

// init reads or writes the config, and reconciles pack files with their
// records: a pack with no record holds nothing referenced (its batch never
// committed) and is removed; a recorded pack is cut back to its recorded
// length.
func (db *DB) init() error {
	v, closer, err := db.pdb.Get(keyConfig)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		cfg, _ := json.Marshal(storeConfig{Format: FormatVersion, Created: db.opts.Now().UTC()})
		if err := db.pdb.Set(keyConfig, cfg, pebble.Sync); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		var cfg storeConfig
		err := json.Unmarshal(v, &cfg)
		closer.Close()
		if err != nil {
			return fmt.Errorf("%w: store config: %v", ErrCorrupt, err)
		}
		if cfg.Format != FormatVersion {
			return fmt.Errorf("store format %d, this ferry reads %d", cfg.Format, FormatVersion)
		}
	}
	if err := os.MkdirAll(filepath.Join(db.dir, "packs"), 0o700); err != nil {
		return err
	}
	names, err := os.ReadDir(filepath.Join(db.dir, "packs"))
	if err != nil {
		return err
	}
	for _, e := range names {
		id, ok := parsePackName(e.Name())
		if !ok {
			continue
		}
		db.nextPack = max(db.nextPack, id+1)
		committed, err := db.packLen(id)
		path := packPath(db.dir, id)
		switch {
		case errors.Is(err, ErrNotFound):
			db.opts.Logger.Info("removing unrecorded pack", "pack", path)
			if err := os.Remove(path); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if info, err := e.Info(); err == nil && info.Size() > committed {
				if err := os.Truncate(path, committed); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func parsePackName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, ".pack")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil
}

func (db *DB) packLen(id uint64) (int64, error) {
	v, closer, err := db.pdb.Get(packKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	n, k := binary.Uvarint(v)
	if k <= 0 {
		return 0, fmt.Errorf("%w: pack record %d", ErrCorrupt, id)
	}
	return int64(n), nil
}

// Dir returns the store's directory.
func (db *DB) Dir() string { return db.dir }

// Close makes pending writes durable and releases the store. Closing a
// closed store does nothing.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	err := db.flushLocked()
	if db.cur != nil {
		err = errors.Join(err, db.cur.f.Close())
		db.cur = nil
	}
	db.pending.Close()
	db.mu.Unlock()
	db.packs.closeAll()
	err = errors.Join(err, db.pdb.Close(), db.lock.Close())
	if err != nil {
		return fmt.Errorf("cas: close %s: %w", db.dir, err)
	}
	return nil
}

// get returns the value of key, looking at pending records first. The
// caller holds mu (shared is enough).
func (db *DB) getLocked(key []byte) ([]byte, error) {
	if v, closer, err := db.pending.Get(key); err == nil {
		out := append([]byte(nil), v...)
		closer.Close()
		return out, nil
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, err
	}
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

func (db *DB) get(key []byte) ([]byte, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.getLocked(key)
}

// hasBlobLocked reports whether a record for r exists, pending or not.
func (db *DB) hasBlobLocked(r Ref) (bool, error) {
	_, err := db.getLocked(blobKey(r))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// putBlob stores data under ref unless a record exists, and records that
// owner owns it (charging its usage; see writeRecord). Hashing and
// compression happen outside the lock.
func (db *DB) putBlob(ctx context.Context, ref Ref, data []byte, owner string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(data) > MaxBlobSize {
		return fmt.Errorf("%w: %d bytes", ErrTooBig, len(data))
	}
	if got := Sum(data); got != ref {
		return fmt.Errorf("%w: put %s: bytes hash to %s", ErrCorrupt, ref.Short(), got.Short())
	}
	// Compress before taking the lock. When the blob turns out to be
	// stored already, the work is wasted, but callers ask Has first, so
	// that is rare, and it saves a lookup on every new blob.
	bp := encBufs.Get().(*[]byte)
	defer encBufs.Put(bp)
	payload, flags := Encode(*bp, data)
	if flags&FlagZstd != 0 {
		*bp = payload[:0]
	}
	_, err := db.writeRecord(ref, false, payload, flags, len(data), owner)
	return err
}

var encBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// putEncoded stores a blob given in its stored form (as a peer sends it):
// it is decoded and verified, then kept as sent, so it is compressed once.
// It reports whether the blob was new to the store.
func (db *DB) putEncoded(ctx context.Context, ref Ref, flags Flags, payload []byte, rawLen int, owner string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if len(payload) > MaxBlobSize {
		return false, fmt.Errorf("%w: %d bytes", ErrTooBig, len(payload))
	}
	bp := decBufs.Get().(*[]byte)
	_, err := Decode(*bp, ref, flags, payload, rawLen)
	decBufs.Put(bp)
	if err != nil {
		return false, err
	}
	return db.writeRecord(ref, false, payload, flags, rawLen, owner)
}

var decBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// getEncoded returns a blob's stored form without decoding it: for
// serving to a peer, which verifies what it receives.
func (db *DB) getEncoded(ctx context.Context, ref Ref) (Flags, []byte, int, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, 0, err
	}
	rec, err := db.get(blobKey(ref))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return 0, nil, 0, fmt.Errorf("get %s: %w", ref.Short(), ErrNotFound)
		}
		return 0, nil, 0, err
	}
	loc, err := parseLocation(rec)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("get %s: %w", ref.Short(), err)
	}
	payload := loc.inline
	if payload == nil {
		if payload, err = db.readPackedRetry(ref, loc, rec); err != nil {
			return 0, nil, 0, err
		}
	}
	return loc.flags, payload, loc.rawLen, nil
}

// writeRecord stores the blob unless a record exists, and records that
// owner owns it, and reports whether the blob was new. A new ownership is
// charged to the owner's usage (the blob's stored size), and refused with
// ErrQuota when that would pass the owner's quota; nothing is written then.
func (db *DB) writeRecord(ref Ref, exists bool, payload []byte, flags Flags, rawLen int, owner string) (bool, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failed != nil {
		return false, db.failed
	}
	var stored int64 = int64(len(payload))
	if !exists {
		// Another writer may have stored it since we looked.
		var err error
		if exists, err = db.hasBlobLocked(ref); err != nil {
			return false, err
		}
	}
	if exists {
		if rec, err := db.getLocked(blobKey(ref)); err == nil {
			if loc, err := parseLocation(rec); err == nil {
				stored = int64(loc.storedLen)
				if loc.inline != nil {
					stored = int64(len(loc.inline))
				}
			}
		}
	}
	// Ownership records carry the time of the last put (garbage
	// collection spares what was put within its grace) and the bytes the
	// owner was charged for the blob (given back when it is collected).
	ok := ownKey(owner, ref)
	charged, newOwner := stored, true
	if old, err := db.getLocked(ok); err == nil {
		newOwner = false
		if len(old) >= 16 {
			charged = int64(binary.BigEndian.Uint64(old[8:]))
		}
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if newOwner {
		if err := db.chargeLocked(owner, charged); err != nil {
			return false, err
		}
	}
	if !exists {
		loc := location{flags: flags, rawLen: rawLen}
		if len(payload) <= InlineMax {
			loc.inline = payload
		} else if err := db.appendPackLocked(ref, &loc, payload); err != nil {
			return false, db.fail(err)
		}
		if err := db.pending.Set(blobKey(ref), loc.append(nil), nil); err != nil {
			return false, err
		}
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(db.opts.Now().UnixNano()))
	v = binary.BigEndian.AppendUint64(v, uint64(charged))
	if err := db.pending.Set(ok, v, nil); err != nil {
		return false, err
	}
	db.protectLocked(ref)
	db.writeSeq++
	// A full pack is sealed: its writeback starts now, its fsync waits
	// for the next flush, so writing goes on meanwhile. Too many sealed
	// packs, or a large batch, force a flush to bound what waits.
	if db.cur != nil && db.cur.size >= packTarget {
		if err := db.cur.seal(); err != nil {
			return false, db.fail(err)
		}
		db.sealed = append(db.sealed, db.cur)
		db.cur = nil
	}
	if len(db.sealed) >= maxSealed || db.pending.Len() >= 4<<20 {
		return !exists, db.flushLocked()
	}
	return !exists, nil
}

func (db *DB) appendPackLocked(ref Ref, loc *location, payload []byte) error {
	if db.cur == nil {
		w, err := createPack(db.dir, db.nextPack)
		if err != nil {
			return err
		}
		db.nextPack++
		db.cur = w
	}
	off, err := db.cur.append(ref, loc.flags, loc.rawLen, payload)
	if err != nil {
		return err
	}
	loc.pack, loc.off, loc.storedLen = db.cur.id, off, len(payload)
	return nil
}

// fail records a write or fsync error: after one, nothing more is written
// or acknowledged (an fsync error is never retried; see fsyncgate).
func (db *DB) fail(err error) error {
	if db.failed == nil {
		db.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		db.opts.Logger.Error("store failed", "dir", db.dir, "err", err)
	}
	return db.failed
}

// Flush makes every blob and record written so far durable.
func (db *DB) Flush(ctx context.Context) error {
	db.mu.Lock()
	target := db.writeSeq
	done := db.durableSeq >= target && db.failed == nil
	db.mu.Unlock()
	if done {
		return nil
	}
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.durableSeq >= target && db.failed == nil {
		return nil // a flush that ran while we waited covered our writes
	}
	return db.flushLocked()
}

// flushLocked: pack bytes first (fsync file, then its directory once),
// then the batch that records them, with Sync. This order is the
// crash-consistency contract: no record ever points at bytes that a crash
// could lose.
func (db *DB) flushLocked() error {
	if db.failed != nil {
		return db.failed
	}
	packs := db.sealed
	if db.cur != nil {
		packs = append(packs, db.cur)
	}
	for _, w := range packs {
		if !w.dirty {
			continue
		}
		if err := w.sync(); err != nil {
			return db.fail(err)
		}
		if err := db.pending.Set(packKey(w.id), binary.AppendUvarint(nil, uint64(w.size)), nil); err != nil {
			return err
		}
	}
	if !db.pending.Empty() {
		if err := db.pending.Commit(pebble.Sync); err != nil {
			return db.fail(err)
		}
		db.pending.Close()
		db.pending = db.pdb.NewIndexedBatch()
	}
	for _, w := range db.sealed {
		if err := w.f.Close(); err != nil {
			return db.fail(err)
		}
	}
	db.sealed = nil
	db.durableSeq = db.writeSeq
	return nil
}

// maxSealed bounds the sealed packs awaiting a flush (512 MiB of data).
const maxSealed = 8

// getBlob reads and verifies the blob under ref.
func (db *DB) getBlob(ctx context.Context, ref Ref) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rec, err := db.get(blobKey(ref))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("get %s: %w", ref.Short(), ErrNotFound)
		}
		return nil, err
	}
	loc, err := parseLocation(rec)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", ref.Short(), err)
	}
	payload := loc.inline
	if payload == nil {
		if payload, err = db.readPackedRetry(ref, loc, rec); err != nil {
			return nil, err
		}
	}
	return Decode(nil, ref, loc.flags, payload, loc.rawLen)
}

// readPackedRetry reads a packed entry; when that fails because a
// collection moved the entry meanwhile (its record changed), it reads the
// new place.
func (db *DB) readPackedRetry(ref Ref, loc location, rec []byte) ([]byte, error) {
	payload, err := db.readPacked(ref, loc)
	if err == nil {
		return payload, nil
	}
	again, gerr := db.get(blobKey(ref))
	if gerr != nil || bytes.Equal(again, rec) {
		return nil, err
	}
	nl, perr := parseLocation(again)
	if perr != nil {
		return nil, perr
	}
	if nl.inline != nil {
		return nl.inline, nil
	}
	return db.readPacked(ref, nl)
}

// readPacked reads a packed entry: from the open pack's buffer when it has
// not reached the file yet, else from the file.
func (db *DB) readPacked(ref Ref, loc location) ([]byte, error) {
	db.mu.RLock()
	w := db.cur
	if w == nil || w.id != loc.pack {
		db.mu.RUnlock()
		return db.packs.read(ref, loc)
	}
	buf := make([]byte, packEntryHead+loc.storedLen)
	head, ok := w.readBuffered(buf, loc.off)
	db.mu.RUnlock()
	if !ok {
		return db.packs.read(ref, loc)
	}
	if head > 0 {
		// The entry began before the buffer: those bytes are on disk,
		// final, and read like any other.
		if err := db.packs.readAt(loc.pack, buf[:head], loc.off); err != nil {
			return nil, fmt.Errorf("get %s: %w", ref.Short(), err)
		}
	}
	return checkEntry(ref, loc, buf)
}

// iterate calls fn for each key with prefix p, in order. Pending records
// are not seen; callers flush first when they matter.
func (db *DB) iterate(p []byte, fn func(k, v []byte) error) error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// pebbleLogger routes Pebble's messages to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble when it cannot go on (a failed WAL fsync):
// the process must not keep acknowledging writes.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble")
	panic("pebble: " + msg)
}

var _ io.Closer = (*DB)(nil)
