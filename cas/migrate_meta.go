package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ErrRecordsElsewhere: a store directory whose records were moved into a
// database (MigrateMetaOut); serve it with that database.
var ErrRecordsElsewhere = errors.New("the store's records were moved into a database")

// migrateBatch is how many records one commit of a migration carries.
const migrateBatch = 2000

// transient reports keys a migration does not carry: a cluster's liveness
// and events, which mean nothing to another store.
func transient(k []byte) bool { return len(k) > 0 && k[0] == 'C' }

// isUsage reports a usage counter's key.
func isUsage(k []byte) bool { return len(k) > 0 && k[0] == 'u' }

// MigrateMetaOut copies every record of the stopped store in dir (its
// Pebble) into dst, which must hold no store, then reads both back and
// compares them record by record, and only then marks the local records
// as moved: opened without dst, the directory is refused
// (ErrRecordsElsewhere) rather than served stale. The packs stay where
// they are (move them to a bucket first, with MigratePacksOut, for a
// cluster).
func MigrateMetaOut(ctx context.Context, dir string, dst Meta) (MigrateStats, error) {
	var st MigrateStats
	db, err := Open(dir, Options{MetadataOnly: true})
	if err != nil {
		return st, err
	}
	defer db.Close()
	if _, err := dst.Get(ctx, keyConfig); err == nil {
		return st, fmt.Errorf("migrate: the database holds a store already")
	} else if !errors.Is(err, ErrNotFound) {
		return st, err
	}
	if st, err = copyRecords(ctx, db.meta, dst); err != nil {
		return st, err
	}
	if err := compareRecords(ctx, db.meta, dst); err != nil {
		return st, err
	}
	return st, db.markMoved()
}

// MigrateMetaIn copies every record of the store in src into a new Pebble
// in dir (a cluster member's data directory, or a directory whose records
// had been moved out, whose stale Pebble is set aside first), compares
// them, and leaves the store served from dir. The packs stay where they
// are: serve with the same --packs, or bring them in with MigratePacksIn.
func MigrateMetaIn(ctx context.Context, dir string, src Meta) (MigrateStats, error) {
	var st MigrateStats
	if _, err := src.Get(ctx, keyConfig); err != nil {
		return st, fmt.Errorf("migrate: the database holds no store: %w", err)
	}
	pebbleDir := filepath.Join(dir, "pebble")
	if _, err := os.Stat(pebbleDir); err == nil {
		old, err := Open(dir, Options{MetadataOnly: true, allowMoved: true})
		if err != nil {
			return st, err
		}
		moved := old.moved
		old.Close()
		if !moved {
			return st, fmt.Errorf("migrate: %s holds a store of its own; it would be overwritten", dir)
		}
		if err := os.Rename(pebbleDir, pebbleDir+".moved-"+time.Now().UTC().Format("20060102T150405")); err != nil {
			return st, err
		}
	}
	db, err := Open(dir, Options{Create: true, MetadataOnly: true, keepPacks: true})
	if err != nil {
		return st, err
	}
	defer db.Close()
	if st, err = copyRecords(ctx, src, db.meta); err != nil {
		return st, err
	}
	return st, compareRecords(ctx, src, db.meta)
}

// copyRecords copies src's records into dst in batches; usage counters go
// as counter additions (dst starts with none).
func copyRecords(ctx context.Context, src, dst Meta) (MigrateStats, error) {
	var st MigrateStats
	w := &MetaWrites{Keys: map[string][]byte{}}
	commit := func() error {
		if w.Empty() {
			return nil
		}
		err := dst.Commit(ctx, w, true)
		w = &MetaWrites{Keys: map[string][]byte{}}
		return err
	}
	it, err := src.Iter(ctx, []byte{}, nil)
	if err != nil {
		return st, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if transient(k) || isUsage(k) {
			continue
		}
		w.Keys[string(k)] = bytes.Clone(v)
		st.Records++
		st.Bytes += int64(len(k) + len(v))
		if len(w.Keys) == migrateBatch {
			if err := commit(); err != nil {
				it.Close()
				return st, fmt.Errorf("migrate: %w", err)
			}
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return st, err
	}
	if err := commit(); err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}
	spaces, err := namespacesOf(ctx, dst)
	if err != nil {
		return st, err
	}
	w.Adds = map[string]int64{}
	for _, ns := range spaces {
		n, err := src.Counter(ctx, usageKey(ns))
		if errors.Is(err, ErrNotFound) {
			continue // counted from its ownerships at first use
		}
		if err != nil {
			return st, err
		}
		w.Adds[string(usageKey(ns))] = n
		st.Records++
	}
	return st, commit()
}

// namespacesOf lists the namespaces that have ownerships in m.
func namespacesOf(ctx context.Context, m Meta) ([]string, error) {
	return namespacesUnder(ctx, m, 'o')
}

// namespacesUnder lists, in order, the namespaces of m's keys under
// prefix p, which are keyed p ns \x00 ...: it skips from one namespace to
// the next instead of reading every key.
func namespacesUnder(ctx context.Context, m Meta, p byte) ([]string, error) {
	var out []string
	it, err := m.Iter(ctx, []byte{p}, []byte{p + 1})
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok; {
		k := it.Key()
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			ok = it.Next()
			continue
		}
		out = append(out, string(k[1:i]))
		ok = it.SeekGE(append(append([]byte{p}, k[1:i]...), 1))
	}
	return out, errors.Join(it.Error(), it.Close())
}

// compareRecords reads a and b in order and requires the same records
// (transient keys aside) and the same usage counters.
func compareRecords(ctx context.Context, a, b Meta) error {
	ia, err := a.Iter(ctx, []byte{}, nil)
	if err != nil {
		return err
	}
	defer ia.Close()
	ib, err := b.Iter(ctx, []byte{}, nil)
	if err != nil {
		return err
	}
	defer ib.Close()
	skip := func(it MetaIter, ok bool) bool {
		for ok && (transient(it.Key()) || isUsage(it.Key())) {
			ok = it.Next()
		}
		return ok
	}
	oka, okb := skip(ia, ia.First()), skip(ib, ib.First())
	n := 0
	for oka && okb {
		if !bytes.Equal(ia.Key(), ib.Key()) || !bytes.Equal(ia.Value(), ib.Value()) {
			return fmt.Errorf("%w: migrate: record %q differs after the copy", ErrCorrupt, ia.Key())
		}
		n++
		oka, okb = skip(ia, ia.Next()), skip(ib, ib.Next())
	}
	if err := errors.Join(ia.Error(), ib.Error()); err != nil {
		return err
	}
	if oka != okb {
		return fmt.Errorf("%w: migrate: the copy has a different number of records (%d matched)", ErrCorrupt, n)
	}
	spaces, err := namespacesOf(ctx, a)
	if err != nil {
		return err
	}
	for _, ns := range spaces {
		x, errA := a.Counter(ctx, usageKey(ns))
		y, errB := b.Counter(ctx, usageKey(ns))
		if x != y || errors.Is(errA, ErrNotFound) != errors.Is(errB, ErrNotFound) {
			return fmt.Errorf("%w: migrate: usage of %q is %d, the copy's %d", ErrCorrupt, ns, x, y)
		}
	}
	return nil
}

// markMoved records in the local store's config that its records are in
// a database now.
func (db *DB) markMoved() error {
	return db.updateConfig(func(cfg *storeConfig) { cfg.Moved = true })
}
