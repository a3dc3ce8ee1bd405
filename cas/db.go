package cas

import (
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
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options tune a DB. The zero value opens an existing store with defaults.
type Options struct {
	// Create makes the store when DIR holds none.
	Create bool
	// CacheSize is Pebble's block cache (default 128 MiB, taken as used).
	CacheSize int64
	// MemTableSize is Pebble's memtable size. Zero sizes it by what the
	// store holds (see memTableFor): Pebble preallocates each WAL file at
	// 110% of it, so a fixed 16 MiB would cost a tiny store 18 MB on disk.
	MemTableSize uint64
	// Now is the clock for history entries (default time.Now).
	Now func() time.Time
	// Logger receives Pebble's messages (default: discarded).
	Logger *slog.Logger
	// FS, if set, holds every file of the store (Pebble's and the packs)
	// instead of the real filesystem: tests inject crashes and faults.
	FS vfs.FS
	// MinFree refuses new blobs (ErrFull) while the filesystem has less
	// free space than this, so that Pebble and the packs never meet
	// ENOSPC half way through a write; 0 never refuses. Reads, commits of
	// what is stored already, and collection go on.
	MinFree int64
	// Ballast is the size of the file of reserved space that a collection
	// on a full disk deletes for its own writes (0: none).
	Ballast int64
	// Packs, if set, keeps the packs (an S3 bucket): see PackStore. The
	// store's directory then holds Pebble and a cache of packs.
	Packs PackStore
	// MetadataOnly opens a store whose packs are elsewhere without them,
	// for what touches records only (tokens): reading a blob in a pack
	// then fails.
	MetadataOnly bool
	// PacksName names Packs (s3://bucket/prefix): a store remembers where
	// its packs are, and refuses to open with another place.
	PacksName string
	// CacheBytes bounds the local copies of packs that are in Packs
	// (0: no bound; they are all kept).
	CacheBytes int64
	// Meta, if set, keeps the records instead of a Pebble database in
	// the store's directory (a PostgreSQL database that a cluster of
	// servers shares; see package pgmeta). The DB closes it.
	Meta Meta
	// allowMoved opens a directory whose records were moved out (to
	// migrate them back).
	allowMoved bool
	// keepPacks leaves the pack files as they are at open: a store whose
	// records are being copied in (MigrateMetaIn) would otherwise take
	// its packs for leftovers with no record, and remove them.
	keepPacks bool
}

func (o *Options) applyDefaults() {
	if o.CacheSize == 0 {
		o.CacheSize = 128 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// packsName is where this DB was told its packs are.
func (db *DB) packsName() string {
	if db.opts.Packs == nil {
		return ""
	}
	if db.opts.PacksName == "" {
		return "a pack store"
	}
	return db.opts.PacksName
}

// storeConfig is the JSON under keyConfig.
type storeConfig struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// Packs names where the packs are kept (Options.PacksName); empty:
	// the store's directory.
	Packs string `json:"packs,omitempty"`
	// Moved is set in a store directory whose records were moved into a
	// database (MigrateMetaOut).
	Moved bool `json:"moved,omitempty"`
}

// ErrPacksElsewhere: a store opened with another place for its packs than
// the one it was made with.
var ErrPacksElsewhere = errors.New("the store keeps its packs elsewhere")

// DB is a blob store in one directory: Pebble for records and small blobs,
// pack files for the rest. It is safe for concurrent use. Namespace returns
// the per-tenant view that implements Store and Heads.
type DB struct {
	dir  string
	opts Options
	st   storage
	meta Meta
	lock io.Closer

	// removals counts the changes after which a blob a namespace owned
	// may no longer be there for it (see Removals).
	removals atomic.Uint64

	// mu guards pending, cur and nextPack. Writers hold it exclusively;
	// readers of pending hold it shared.
	mu      sync.RWMutex
	pending *pendingBatch // records not yet committed
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
	gcEpoch   uint64 // collections begun
	protected RefSet
	closed    bool
	// usage caches each namespace's charged bytes (see quota.go).
	usage    map[string]int64
	quotas   map[string]int64 // each namespace's quota, 0 for none
	nextPack uint64
	// fillMu makes one cache fill at a time (see fillPack).
	fillMu sync.Mutex
	failed error // a failed fsync: the store takes no more writes
	// damaged holds the blobs that failed verification (mirrored by the
	// "d" records): Has calls them missing, and a put of their bytes
	// replaces them.
	damaged RefSet
	space   spaceGuard
	// cluster is this server's part in a cluster (a shared Meta).
	cluster clusterState
	moved   bool // the records were moved out (see MigrateMetaOut)

	packs packFiles
}

// ErrFailed wraps the fsync or write error that made a DB stop writing.
var ErrFailed = errors.New("the store failed and takes no more writes")

// Open opens (or with Options.Create makes) the store in dir.
func Open(dir string, opts Options) (*DB, error) {
	opts.applyDefaults()
	st := storage{fs: opts.FS}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = st.memTableFor(dir)
	}
	if opts.Create {
		if err := st.mkdirAll(filepath.Join(dir, "packs")); err != nil {
			return nil, fmt.Errorf("cas: create %s: %w", dir, err)
		}
	} else if opts.Meta == nil && !st.exists(filepath.Join(dir, "pebble")) {
		return nil, Errorf(ErrNotFound, "open %s: %w", dir, ErrNoStore)
	}
	lock, err := st.lock(dir)
	if err != nil {
		return nil, err
	}
	var opened atomic.Pointer[DB]
	meta := opts.Meta
	if meta == nil {
		if meta, err = openPebble(dir, st, opts, &opened); err != nil {
			lock.Close()
			return nil, err
		}
	} else if opts.Create {
		if err := st.mkdirAll(dir); err != nil {
			lock.Close()
			return nil, fmt.Errorf("cas: create %s: %w", dir, err)
		}
	}
	db := &DB{dir: dir, opts: opts, st: st, meta: meta, lock: lock, damaged: RefSet{}}
	opened.Store(db)
	db.cluster.id = newServerID()
	db.packs.dir, db.packs.st, db.packs.remote, db.packs.fill = dir, st, db.opts.Packs, db.fillPack
	db.space = spaceGuard{st: st, dir: dir, min: opts.MinFree}
	db.pending = newPending(meta)
	if err := db.init(); err != nil {
		meta.Close()
		lock.Close()
		return nil, fmt.Errorf("cas: open %s: %w", dir, err)
	}
	if err := db.ensureBallast(); err != nil {
		opts.Logger.Warn("no ballast", "err", err)
	}
	return db, nil
}

// init reads or writes the config, and reconciles pack files with their
// records: a pack with no record holds nothing referenced (its batch never
// committed) and is removed; a recorded pack is cut back to its recorded
// length.
func (db *DB) init() error {
	v, err := db.meta.Get(context.Background(), keyConfig)
	switch {
	case errors.Is(err, ErrNotFound):
		if !db.opts.Create && db.opts.Meta != nil {
			return Errorf(ErrNotFound, "%w", ErrNoStore)
		}
		cfg, _ := json.Marshal(storeConfig{Format: FormatVersion, Created: db.opts.Now().UTC(), Packs: db.packsName()})
		w := &MetaWrites{Keys: map[string][]byte{string(keyConfig): cfg}, Conds: map[string][]byte{string(keyConfig): nil}}
		if err := db.meta.Commit(context.Background(), w, true); errors.Is(err, ErrConflict) {
			return db.init() // another server made it first
		} else if err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		var cfg storeConfig
		err := json.Unmarshal(v, &cfg)
		if err != nil {
			return fmt.Errorf("%w: store config: %v", ErrCorrupt, err)
		}
		if cfg.Moved && db.opts.Meta == nil {
			db.moved = true
			if !db.opts.allowMoved {
				return Errorf(ErrRecordsElsewhere, "%w: serve it with --meta, or bring them back with admin migrate --to-local", ErrRecordsElsewhere)
			}
		}
		if cfg.Format != FormatVersion {
			return fmt.Errorf("store format %d, this ferry reads %d", cfg.Format, FormatVersion)
		}
		if cfg.Packs != db.packsName() && !db.opts.MetadataOnly {
			where := func(n string) string {
				if n == "" {
					return "its directory"
				}
				return n
			}
			return Errorf(ErrPacksElsewhere, "the store keeps its packs in %s, not %s", where(cfg.Packs), where(db.packsName()))
		}
	}
	if err := db.st.mkdirAll(filepath.Join(db.dir, "packs")); err != nil {
		return err
	}
	if db.opts.Packs != nil && db.st.fs == nil {
		// Cache fills a crash cut short.
		leftovers, _ := filepath.Glob(filepath.Join(db.dir, "packs", "*"+fillSuffix))
		for _, p := range leftovers {
			os.Remove(p)
		}
	}
	if db.opts.keepPacks {
		return db.loadDamaged()
	}
	sizes, err := db.st.packSizes(filepath.Join(db.dir, "packs"))
	if err != nil {
		return err
	}
	for id, size := range sizes {
		db.nextPack = max(db.nextPack, id+1)
		committed, err := db.packLen(id)
		path := packPath(db.dir, id)
		switch {
		case errors.Is(err, ErrNotFound):
			db.opts.Logger.Info("removing unrecorded pack", "pack", path)
			if err := db.st.remove(path); err != nil {
				return err
			}
		case err != nil:
			return err
		case size < committed && db.opts.Packs != nil:
			// A cached copy cut short (by hand, or a disk that lost it):
			// the object is whole, and reads go there.
			db.opts.Logger.Info("removing a short cached pack", "pack", path)
			if err := db.st.remove(path); err != nil {
				return err
			}
		case size > committed:
			if err := db.st.truncate(path, committed); err != nil {
				return err
			}
			fallthrough
		default:
			db.packs.addLocal(id, committed)
		}
	}
	return db.loadDamaged()
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
	v, err := db.meta.Get(context.Background(), packKey(id))
	if err != nil {
		return 0, err
	}
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
	db.mu.Unlock()
	db.packs.closeAll()
	err = errors.Join(err, db.meta.Close(), db.lock.Close())
	if err != nil {
		return fmt.Errorf("cas: close %s: %w", db.dir, err)
	}
	return nil
}

// getLocked returns the value of key: pending records first, then the
// committed ones (an indexed batch reads through to the DB). The caller
// holds mu (shared is enough).
func (db *DB) getLocked(key []byte) ([]byte, error) {
	return db.pending.Get(key)
}

func (db *DB) get(key []byte) ([]byte, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.getLocked(key)
}

// iterate calls fn for each key with prefix p, in order. Pending records
// are not seen; callers flush first when they matter.
func (db *DB) iterate(p []byte, fn func(k, v []byte) error) error {
	return iterMeta(db.meta, p, fn)
}

var _ io.Closer = (*DB)(nil)
