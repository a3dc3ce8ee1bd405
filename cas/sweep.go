package cas

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
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
	BytesRewritten int64 `json:"bytes_rewritten"`
	DiskFreed      int64 `json:"disk_bytes_freed"`
}

// Sweep drops every ownership that is neither live, young nor protected,
// deletes blobs no namespace owns any more, deletes packs with nothing
// live and rewrites packs that are mostly dead, then compacts Pebble so the
// space really returns to the filesystem.
func (db *DB) Sweep(ctx context.Context, o SweepOptions) (SweepStats, error) {
	var st SweepStats
	if o.Repack == 0 {
		o.Repack = 0.9
	}
	if err := db.Flush(ctx); err != nil {
		return st, err
	}
	cutoff := uint64(o.Before.UnixNano())
	owned := RefSet{}
	var drop []keyRef
	err := db.iterate([]byte{'o'}, func(k, v []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := bytes.IndexByte(k, 0)
		if i < 0 || len(k)-i-1 != len(Ref{}) {
			return fmt.Errorf("%w: ownership key", ErrCorrupt)
		}
		ns, ref := string(k[1:i]), Ref(k[i+1:])
		young := len(v) == 8 && binary.BigEndian.Uint64(v) >= cutoff
		if young || o.Live(ns, ref) {
			owned.Add(ref)
			return nil
		}
		drop = append(drop, keyRef{key: bytes.Clone(k), ref: ref})
		return nil
	})
	if err != nil {
		return st, err
	}
	// Drop in batches, each checked against the protected set under the
	// lock that puts and Has take: what a writer touched since is kept.
	for len(drop) > 0 {
		n := min(len(drop), 4096)
		if err := db.dropOwnerships(drop[:n], owned, o.DryRun, &st); err != nil {
			return st, err
		}
		drop = drop[n:]
	}
	// Blobs no namespace owns any more.
	var dead []keyRef
	err = db.iterate([]byte{'b'}, func(k, v []byte) error {
		ref := Ref(k[1:])
		if !owned.Has(ref) {
			dead = append(dead, keyRef{key: bytes.Clone(k), ref: ref})
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	for len(dead) > 0 {
		n := min(len(dead), 4096)
		if err := db.deleteBlobs(dead[:n], o.DryRun, &st); err != nil {
			return st, err
		}
		dead = dead[n:]
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
		if err := db.pdb.Compact(ctx, p, prefixEnd(p), true); err != nil {
			return st, fmt.Errorf("cas: compact: %w", err)
		}
	}
	return st, nil
}

type keyRef struct {
	key []byte
	ref Ref
}

// dropOwnerships deletes ownership records, sparing protected refs (which
// then stay owned).
func (db *DB) dropOwnerships(items []keyRef, owned RefSet, dry bool, st *SweepStats) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, it := range items {
		if db.protected.Has(it.ref) {
			owned.Add(it.ref)
			continue
		}
		st.Ownerships++
		if !dry {
			if err := db.pending.Delete(it.key, nil); err != nil {
				return err
			}
		}
	}
	if dry {
		return nil
	}
	return db.flushLocked()
}

// deleteBlobs deletes blob records nobody owns, sparing protected refs.
// Their bytes are reclaimed with their packs.
func (db *DB) deleteBlobs(items []keyRef, dry bool, st *SweepStats) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, it := range items {
		if db.protected.Has(it.ref) {
			continue
		}
		rec, err := db.getLocked(it.key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if loc, err := parseLocation(rec); err == nil {
			st.BlobBytes += int64(loc.storedLen)
		}
		st.Blobs++
		if !dry {
			if err := db.pending.Delete(it.key, nil); err != nil {
				return err
			}
		}
	}
	if dry {
		return nil
	}
	return db.flushLocked()
}

// reclaimPacks deletes packs with nothing live and rewrites those less
// than repack live: their live entries are appended to the current pack,
// their records moved, and the old pack deleted after the move is durable.
func (db *DB) reclaimPacks(ctx context.Context, repack float64, st *SweepStats) error {
	live := map[uint64]int64{}
	members := map[uint64][]Ref{}
	err := db.iterate([]byte{'b'}, func(k, v []byte) error {
		loc, err := parseLocation(v)
		if err != nil || loc.inline != nil {
			return nil
		}
		live[loc.pack] += packEntryHead + int64(loc.storedLen)
		members[loc.pack] = append(members[loc.pack], Ref(k[1:]))
		return nil
	})
	if err != nil {
		return err
	}
	type pack struct {
		id     uint64
		length int64
	}
	var packs []pack
	err = db.iterate([]byte{'p'}, func(k, v []byte) error {
		n, _ := uvarint(v)
		packs = append(packs, pack{binary.BigEndian.Uint64(k[1:]), int64(n)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range packs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if db.packInUse(p.id) {
			continue
		}
		used := live[p.id]
		switch {
		case used == 0:
			if err := db.deletePack(p.id); err != nil {
				return err
			}
			st.PacksDeleted++
			st.DiskFreed += p.length
		case float64(used) < repack*float64(p.length):
			moved, err := db.rewritePack(ctx, p.id, members[p.id])
			if err != nil {
				return err
			}
			st.PacksRewritten++
			st.BytesRewritten += moved
			st.DiskFreed += p.length - moved
		}
	}
	return nil
}

// sealCurrent seals the open pack and makes everything durable.
func (db *DB) sealCurrent() error {
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.cur != nil {
		if err := db.cur.seal(); err != nil {
			return db.fail(err)
		}
		db.sealed = append(db.sealed, db.cur)
		db.cur = nil
	}
	return db.flushLocked()
}

// packInUse reports whether a pack is still being written.
func (db *DB) packInUse(id uint64) bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.cur != nil && db.cur.id == id {
		return true
	}
	for _, w := range db.sealed {
		if w.id == id {
			return true
		}
	}
	return false
}

func (db *DB) deletePack(id uint64) error {
	db.mu.Lock()
	if err := db.pending.Delete(packKey(id), nil); err != nil {
		db.mu.Unlock()
		return err
	}
	err := db.flushLocked()
	db.mu.Unlock()
	if err != nil {
		return err
	}
	db.packs.forget(id)
	if err := os.Remove(packPath(db.dir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// rewritePack moves the live entries of pack id into the current pack.
func (db *DB) rewritePack(ctx context.Context, id uint64, refs []Ref) (int64, error) {
	var moved int64
	for _, ref := range refs {
		rec, err := db.get(blobKey(ref))
		if err != nil {
			continue // deleted since
		}
		loc, err := parseLocation(rec)
		if err != nil || loc.inline != nil || loc.pack != id {
			continue
		}
		payload, err := db.packs.read(ref, loc)
		if err != nil {
			return moved, fmt.Errorf("cas: repack %d: %w", id, err)
		}
		db.mu.Lock()
		nl := location{flags: loc.flags, rawLen: loc.rawLen}
		if err := db.appendPackLocked(ref, &nl, payload); err != nil {
			db.mu.Unlock()
			return moved, db.fail(err)
		}
		err = db.pending.Set(blobKey(ref), nl.append(nil), nil)
		db.writeSeq++
		db.mu.Unlock()
		if err != nil {
			return moved, err
		}
		moved += packEntryHead + int64(len(payload))
	}
	// The new copies are durable before the old pack goes.
	if err := db.Flush(ctx); err != nil {
		return moved, err
	}
	return moved, db.deletePack(id)
}
