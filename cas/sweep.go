package cas

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// BeginGC starts protecting blobs for a collection: from now until EndGC,
// every blob put, found by Has or read is spared by Sweep, whatever the
// mark said. A writer that learns a blob exists (or stores it) after the
// mark began can therefore count on it. The caller must make sure no
// commit is half way (checked, head not yet moved) when BeginGC runs.
func (db *DB) BeginGC() {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.gcActive, db.protected = true, RefSet{}
	db.gcEpoch++
}

// GCEpoch counts the collections begun: a writer that checked something
// exists, and finds the count unchanged under the lock the collector takes
// to begin (see transport's commit), knows no collection began since.
func (db *DB) GCEpoch() uint64 {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.gcEpoch
}

// EndGC stops protecting.
func (db *DB) EndGC() {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.gcActive, db.protected = false, nil
}

func (db *DB) protect(r Ref) {
	db.mu.RLock()
	gc := db.gcActive
	db.mu.RUnlock()
	if gc {
		db.mu.Lock()
		db.protectLocked(r)
		db.mu.Unlock()
	}
}

func (db *DB) protectLocked(r Ref) {
	if db.gcActive {
		db.protected.Add(r)
	}
}

// SweepOptions say what Sweep may remove.
type SweepOptions struct {
	// Live reports whether a namespace's blob is reachable from what it
	// keeps (the mark).
	Live func(ns string, ref Ref) bool
	// Before spares ownerships put at or after this time (the grace).
	Before time.Time
	DryRun bool
	// Repack rewrites packs less than this fraction live (default 0.9:
	// at most a tenth of the disk stays dead, as restic's prune keeps
	// unused space under a bound).
	Repack float64
}

// SweepStats is what a sweep removed and returned.
type SweepStats struct {
	Ownerships     int   `json:"ownerships_dropped"`
	Blobs          int   `json:"blobs_deleted"`
	BlobBytes      int64 `json:"blob_bytes_deleted"`
	PacksDeleted   int   `json:"packs_deleted"`
	PacksRewritten int   `json:"packs_rewritten"`
	PacksPunched   int   `json:"packs_punched,omitempty"` // dead ranges freed in place

	BytesRewritten int64 `json:"bytes_rewritten"`
	DiskFreed      int64 `json:"disk_bytes_freed"`
	// OrphanPacks are pack objects in the pack store that no record
	// named, deleted (or, dry, that would be).
	OrphanPacks int   `json:"orphan_packs,omitempty"`
	OrphanBytes int64 `json:"orphan_bytes,omitempty"`
}

// Sweep drops every ownership that is neither live, young nor protected,
// deletes blobs no namespace owns any more, deletes packs with nothing
// live and rewrites packs that are mostly dead, then compacts Pebble so the
// space really returns to the filesystem.
//
// It streams: memory holds a batch of keys and the refs whose ownership it
// dropped (32 bytes each), never a set of every blob. A blob can only lose
// its last owner through a dropped ownership (every put records one in the
// same batch), so those refs are the only candidates for deletion.
func (db *DB) Sweep(ctx context.Context, o SweepOptions) (SweepStats, error) {
	var st SweepStats
	if o.Repack == 0 {
		o.Repack = 0.9
	}
	if err := db.Flush(ctx); err != nil {
		return st, err
	}
	if !o.DryRun && db.releaseBallast() {
		// The ballast made room for this collection's own writes; it is
		// made again when the collection leaves enough space.
		defer func() {
			if err := db.ensureBallast(); err != nil {
				db.opts.Logger.Warn("no ballast", "err", err)
			}
		}()
	}
	cutoff := uint64(o.Before.UnixNano())
	var batch []keyRef
	var dropped []Ref
	drop := func() error {
		refs, err := db.dropOwnerships(batch, o.DryRun, &st)
		dropped = append(dropped, refs...)
		batch = batch[:0]
		return err
	}
	err := db.iterate([]byte{'o'}, func(k, v []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := bytes.IndexByte(k, 0)
		if i < 0 || len(k)-i-1 != len(Ref{}) {
			return fmt.Errorf("%w: ownership key", ErrCorrupt)
		}
		ns, ref := string(k[1:i]), Ref(k[i+1:])
		young := len(v) >= 8 && binary.BigEndian.Uint64(v) >= cutoff
		if young || o.Live(ns, ref) {
			return nil
		}
		var charge int64
		if len(v) >= 16 {
			charge = int64(binary.BigEndian.Uint64(v[8:]))
		}
		batch = append(batch, keyRef{key: bytes.Clone(k), val: bytes.Clone(v), ref: ref, ns: ns, charge: charge})
		if len(batch) == sweepBatch {
			return drop()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = drop()
	}
	if err != nil {
		return st, err
	}
	// The blobs that lost an owner: delete those that have none left.
	slices.SortFunc(dropped, Ref.Compare)
	dropped = slices.Compact(dropped)
	spaces, err := db.Namespaces(ctx)
	if err != nil {
		return st, err
	}
	for len(dropped) > 0 {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		n := min(len(dropped), sweepBatch)
		if err := db.deleteUnowned(dropped[:n], spaces, o, cutoff, &st); err != nil {
			return st, err
		}
		dropped = dropped[n:]
	}
	if db.opts.Packs != nil {
		if err := db.sweepOrphans(ctx, o.Before, o.DryRun, &st); err != nil {
			return st, err
		}
	}
	if o.DryRun {
		return st, nil
	}
	// The pack being written is closed, so that its dead entries can be
	// reclaimed too; writers start a new one.
	if err := db.sealCurrent(); err != nil {
		return st, err
	}
	if err := db.reclaimPacks(ctx, o.Repack, &st); err != nil {
		return st, err
	}
	for _, p := range [][]byte{{'o'}, {'b'}, {'p'}} {
		if err := db.meta.Compact(ctx, p, prefixEnd(p)); err != nil {
			return st, fmt.Errorf("cas: compact: %w", err)
		}
	}
	return st, nil
}

const sweepBatch = 4096

type keyRef struct {
	key    []byte
	val    []byte // the ownership as the scan read it
	ref    Ref
	ns     string
	charge int64 // bytes the ownership charged its namespace
}

// dropOwnerships deletes ownership records, sparing protected refs, and
// returns the refs whose ownership it dropped (or, dry, would drop).
func (db *DB) dropOwnerships(items []keyRef, dry bool, st *SweepStats) ([]Ref, error) {
	if db.meta.Shared() && !dry {
		return db.dropOwnershipsShared(items, st)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	var out []Ref
	for _, it := range items {
		if db.protected.Has(it.ref) {
			continue
		}
		st.Ownerships++
		out = append(out, it.ref)
		if !dry {
			db.removals.Add(1)
			if err := db.pending.Delete(it.key); err != nil {
				return out, err
			}
			used, err := db.usageLocked(it.ns)
			if err != nil {
				return out, err
			}
			if err := db.addUsageLocked(it.ns, used, -it.charge); err != nil {
				return out, err
			}
		}
	}
	if dry {
		return out, nil
	}
	return out, db.flushLocked()
}

// deleteUnowned deletes the blob records of refs that no namespace owns
// and nobody touched during the collection. Their bytes are reclaimed with
// their packs. A dry run, which dropped nothing, counts as owned only the
// ownerships the sweep would keep.
func (db *DB) deleteUnowned(refs []Ref, spaces []string, o SweepOptions, cutoff uint64, st *SweepStats) error {
	// refs are sorted: walk the ownership and blob keys with forward
	// seeks, which reuse the block they are in, instead of point gets.
	var iters []MetaIter
	defer func() {
		for _, it := range iters {
			it.Close()
		}
	}()
	newIter := func(p []byte) (MetaIter, error) {
		it, err := db.meta.Iter(context.Background(), p, prefixEnd(p))
		if err == nil {
			iters = append(iters, it)
		}
		return it, err
	}
	owners := make([]MetaIter, len(spaces))
	for i, ns := range spaces {
		it, err := newIter(ownPrefix(ns))
		if err != nil {
			return err
		}
		owners[i] = it
	}
	blobs, err := newIter([]byte{'b'})
	if err != nil {
		return err
	}
	shared := db.meta.Shared() && !o.DryRun
	var doomed []keyRef
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, ref := range refs {
		if db.protected.Has(ref) {
			continue // touched since: kept, owned or not
		}
		owned := false
		for i, ns := range spaces {
			k := ownKey(ns, ref)
			if !owners[i].SeekGE(k) || !bytes.Equal(owners[i].Key(), k) {
				continue
			}
			v := owners[i].Value()
			if !o.DryRun || (len(v) >= 8 && binary.BigEndian.Uint64(v) >= cutoff) || o.Live(ns, ref) {
				owned = true
				break
			}
		}
		if owned {
			continue
		}
		k := blobKey(ref)
		if !blobs.SeekGE(k) || !bytes.Equal(blobs.Key(), k) {
			continue
		}
		if loc, err := parseLocation(blobs.Value()); err == nil {
			st.BlobBytes += int64(loc.storedLen)
		}
		st.Blobs++
		switch {
		case shared:
			doomed = append(doomed, keyRef{key: bytes.Clone(k), val: bytes.Clone(blobs.Value()), ref: ref})
		case !o.DryRun:
			db.removals.Add(1)
			if err := db.pending.Delete(k); err != nil {
				return err
			}
		}
	}
	if shared {
		n, err := db.deleteShared(doomed, nil)
		st.Blobs -= len(doomed) - n
		return err
	}
	for _, it := range iters {
		if err := it.Error(); err != nil {
			return err
		}
	}
	if o.DryRun {
		return nil
	}
	return db.flushLocked()
}
