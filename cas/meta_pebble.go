package cas

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleMeta is the default Meta: a Pebble database in the store's
// directory, written by this process only.
type pebbleMeta struct {
	pdb *pebble.DB
	log *slog.Logger
	// mu makes a conditional commit's check and apply one step, and a
	// counter's read and write, and a filter build's start and end.
	mu sync.Mutex

	// filter, once built, answers most lookups of absent keys (see
	// keyFilter); building is the filter being built, which every commit
	// adds to as well (under mu).
	filter   atomic.Pointer[keyFilter]
	building *keyFilter
	misses   atomic.Int64 // lookups of absent keys, until a build starts
	stop     chan struct{}
	builds   sync.WaitGroup
}

var _ Meta = (*pebbleMeta)(nil)

// filterAfterMisses is how many lookups of absent keys start the
// filter's first build: a short command never pays for one, a server or
// a first push soon does.
const filterAfterMisses = 4096

func (m *pebbleMeta) Get(_ context.Context, key []byte) ([]byte, error) {
	f := m.filter.Load()
	if f != nil && !f.mayContain(key) {
		return nil, ErrNotFound
	}
	v, closer, err := m.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		if f == nil && m.misses.Add(1) == filterAfterMisses {
			// Not inline: a commit's condition checks look up under mu.
			m.builds.Add(1)
			go func() {
				defer m.builds.Done()
				m.mu.Lock()
				m.startBuildLocked()
				m.mu.Unlock()
			}()
		}
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, pebbleErr(err)
	}
	out := bytes.Clone(v)
	closer.Close()
	return out, nil
}

// absent reports whether key is certainly not there, by the filter.
func (m *pebbleMeta) absent(key []byte) bool {
	f := m.filter.Load()
	return f != nil && !f.mayContain(key)
}

func (m *pebbleMeta) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := m.Get(ctx, k)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (m *pebbleMeta) Iter(_ context.Context, lower, upper []byte) (MetaIter, error) {
	if len(lower) == 0 {
		// From the first key. Pebble wants nil for that: its invariant
		// checks (on under -race) read a bound's first byte.
		lower = nil
	}
	it, err := m.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, pebbleErr(err)
	}
	return pebbleIter{it}, nil
}

// pebbleIter maps Pebble's corruption errors to ErrCorrupt.
type pebbleIter struct{ *pebble.Iterator }

func (it pebbleIter) Error() error { return pebbleErr(it.Iterator.Error()) }
func (it pebbleIter) Close() error { return pebbleErr(it.Iterator.Close()) }

func (m *pebbleMeta) Counter(_ context.Context, key []byte) (int64, error) {
	v, closer, err := m.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, pebbleErr(err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: counter %q", ErrCorrupt, key)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// Commit applies w in one Pebble batch. Pebble answers a failed WAL
// write or fsync with Fatalf (its commit pipeline cannot go on); that
// panic becomes the error, which fails the store.
func (m *pebbleMeta) Commit(ctx context.Context, w *MetaWrites, sync bool) (err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, want := range w.Conds {
		got, err := m.Get(ctx, []byte(k))
		switch {
		case errors.Is(err, ErrNotFound):
			if want != nil {
				return fmt.Errorf("%w: %q is gone", ErrConflict, k)
			}
		case err != nil:
			return err
		case want == nil || !bytes.Equal(got, want):
			return fmt.Errorf("%w: %q changed", ErrConflict, k)
		}
	}
	b := m.pdb.NewBatch()
	defer b.Close()
	for _, r := range w.Ranges {
		if err := b.DeleteRange(r[0], r[1], nil); err != nil {
			return err
		}
	}
	f := m.filter.Load()
	// In key order: the memtable's inserter reuses the skiplist path of
	// the key before, where a map's order makes each insert a full
	// descent through a 64 MiB arena (most of a small-file put's cost).
	for _, k := range w.SortedKeys() {
		v := w.Keys[k]
		if v == nil {
			err = b.Delete([]byte(k), nil)
		} else {
			m.addKeyLocked(f, []byte(k))
			err = b.Set([]byte(k), v, nil)
		}
		if err != nil {
			return err
		}
	}
	for k, d := range w.Adds {
		m.addKeyLocked(f, []byte(k))
		cur, err := m.Counter(ctx, []byte(k))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := b.Set([]byte(k), binary.BigEndian.AppendUint64(nil, uint64(cur+d)), nil); err != nil {
			return err
		}
	}
	defer func() {
		if r := recover(); r != nil {
			msg, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("pebble: %s", string(msg))
		}
	}()
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := b.Commit(opt); err != nil {
		return err
	}
	if f != nil && f.full() {
		// After the apply: a build's iterator must see this batch.
		m.startBuildLocked()
	}
	return nil
}

func (m *pebbleMeta) Compact(ctx context.Context, lower, upper []byte) error {
	return m.pdb.Compact(ctx, lower, upper, false)
}

func (m *pebbleMeta) Shared() bool { return false }

func (m *pebbleMeta) Close() error {
	close(m.stop)
	m.builds.Wait()
	return m.pdb.Close()
}

// openPebble opens the store's own Pebble database in dir. A Pebble write
// that meets a full disk gives up the ballast of the DB in opened.
func openPebble(dir string, st storage, opts Options, opened *atomic.Pointer[DB]) (Meta, error) {
	pfs := st.pebbleFS()
	if st.fs == nil && opts.Ballast > 0 {
		pfs = vfs.OnDiskFull(pfs, func() {
			if db := opened.Load(); db != nil {
				db.dropBallast()
			}
		})
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref()
	popts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       opts.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{opts.Logger},
		FS:                 pfs,
		EventListener: &pebble.EventListener{
			// Pebble's default ends the process on corruption. The store
			// answers ErrCorrupt for what the damaged block held instead,
			// marks it, and has it sent again (see damage.go).
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				opts.Logger.Error("pebble: damaged table", "path", info.Path, "err", info.Details)
			},
		},
	}
	// Most lookups are for refs that are not there (is this chunk new?):
	// bloom filters answer those without reading blocks.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	pdb, err := pebble.Open(filepath.Join(dir, "pebble"), popts)
	if err != nil {
		return nil, fmt.Errorf("cas: open %s: %w", dir, err)
	}
	// The store's directories are durable before anything in them is
	// acknowledged: Pebble syncs the entries it makes inside its own
	// directory, not that directory's entry, nor the store's.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := st.syncDir(d); err != nil {
			pdb.Close()
			return nil, err
		}
	}
	return &pebbleMeta{pdb: pdb, log: opts.Logger, stop: make(chan struct{})}, nil
}

// pebbleErr maps Pebble's corruption (a block whose checksum fails) and a
// read the disk refused (EIO) to ErrCorrupt: to callers either is damage
// like any other, whose bytes cannot be had.
func pebbleErr(err error) error {
	if pebble.IsCorruptionError(err) || errors.Is(err, syscall.EIO) {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
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
// the process must not keep acknowledging writes. On the commit path the
// panic is recovered and fails the store (see commitPending); anywhere
// else it ends the process, whose restart recovers from what is durable.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble")
	panic(pebbleFatal(msg))
}

// pebbleFatal is the panic value of Fatalf.
type pebbleFatal string
