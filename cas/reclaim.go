package cas

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// reclaimPacks deletes packs with nothing live, then rewrites those less
// than repack live: their live entries are appended to the current pack,
// their records moved, and the old pack deleted after the move is
// durable. A rewrite needs room for what it moves; when the disk lacks it
// (a full disk is when space matters most), the pack's dead ranges are
// punched out of the file instead, which returns their blocks without
// writing anything.
func (db *DB) reclaimPacks(ctx context.Context, repack float64, st *SweepStats) error {
	entries := map[uint64][]packEntry{}
	err := db.iterate([]byte{'b'}, func(k, v []byte) error {
		loc, err := parseLocation(v)
		if err != nil || loc.inline != nil {
			return nil
		}
		entries[loc.pack] = append(entries[loc.pack], packEntry{ref: Ref(k[1:]), off: loc.off, end: loc.off + packEntryHead + int64(loc.storedLen)})
		return nil
	})
	if err != nil {
		return err
	}
	type pack struct {
		id           uint64
		length, live int64
	}
	var packs, partly []pack
	err = db.iterate([]byte{'p'}, func(k, v []byte) error {
		n, _ := uvarint(v)
		p := pack{id: binary.BigEndian.Uint64(k[1:]), length: int64(n)}
		for _, e := range entries[p.id] {
			p.live += e.end - e.off
		}
		packs = append(packs, p)
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range packs {
		switch {
		case db.packInUse(p.id):
		case p.live == 0:
			// Deleted first: the space they return makes room for rewrites.
			if err := db.deletePack(p.id); err != nil {
				return err
			}
			st.PacksDeleted++
			st.DiskFreed += p.length
		case float64(p.live) < repack*float64(p.length):
			partly = append(partly, p)
		}
	}
	// The most dead first: each rewrite returns the most it can.
	slices.SortFunc(partly, func(a, b pack) int { return cmp.Compare(b.length-b.live, a.length-a.live) })
	for _, p := range partly {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !db.roomFor(p.live) {
			freed, err := db.punchDead(p.id, entries[p.id], p.length)
			if err != nil {
				return err
			}
			st.PacksPunched++
			st.DiskFreed += freed
			continue
		}
		refs := make([]Ref, len(entries[p.id]))
		for i, e := range entries[p.id] {
			refs[i] = e.ref
		}
		moved, err := db.rewritePack(ctx, p.id, refs)
		if err != nil {
			return err
		}
		st.PacksRewritten++
		st.BytesRewritten += moved
		st.DiskFreed += p.length - moved
	}
	return nil
}

// packEntry is where a live blob lies in its pack: [off, end).
type packEntry struct {
	ref      Ref
	off, end int64
}

// roomFor reports whether the disk can take n more bytes and keep half
// its free-space mark (at least 16 MiB) for Pebble.
func (db *DB) roomFor(n int64) bool {
	free := db.st.freeBytes(db.dir)
	return free < 0 || free >= n+max(db.opts.MinFree/2, 16<<20)
}

// punchDead returns the blocks of a pack's dead ranges to the filesystem
// (fallocate PUNCH_HOLE; the file keeps its size and its live entries).
// It reports the bytes freed. Where the filesystem cannot punch holes, it
// frees nothing, and the pack waits for a collection with room to rewrite
// it.
func (db *DB) punchDead(id uint64, live []packEntry, length int64) (int64, error) {
	if db.st.fs != nil || db.opts.Packs != nil {
		return 0, nil // an object has no holes: it waits for a rewrite
	}
	f, err := os.OpenFile(packPath(db.dir, id), os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("cas: punch pack %d: %w", id, err)
	}
	defer f.Close()
	var before, after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &before); err != nil {
		return 0, err
	}
	slices.SortFunc(live, func(a, b packEntry) int { return cmp.Compare(a.off, b.off) })
	punch := func(from, to int64) error {
		from = (from + packAlign - 1) &^ (packAlign - 1)
		to &^= packAlign - 1
		if to <= from {
			return nil
		}
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, from, to-from)
		if errors.Is(err, unix.EOPNOTSUPP) {
			return errNoHoles
		}
		return err
	}
	cursor := int64(len(packMagic))
	for _, e := range live {
		if err := punch(cursor, e.off); err != nil {
			return 0, ignoreNoHoles(err)
		}
		cursor = max(cursor, e.end)
	}
	if err := punch(cursor, length); err != nil {
		return 0, ignoreNoHoles(err)
	}
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		return 0, err
	}
	freed := (before.Blocks - after.Blocks) * 512
	db.opts.Logger.Info("no room to rewrite a pack: punched out its dead ranges", "pack", id, "freed", freed)
	return freed, nil
}

var errNoHoles = errors.New("cas: the filesystem cannot punch holes")

func ignoreNoHoles(err error) error {
	if errors.Is(err, errNoHoles) {
		return nil
	}
	return err
}

// sealCurrent seals the open pack and makes everything durable.
func (db *DB) sealCurrent() error {
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.cur != nil {
		if err := db.cur.seal(); err != nil {
			return db.failOn(err)
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
	if err := db.pending.Delete(packKey(id)); err != nil {
		db.mu.Unlock()
		return err
	}
	err := db.flushLocked()
	db.mu.Unlock()
	if err != nil {
		return err
	}
	db.packs.forget(id)
	db.packs.dropLocal(id)
	if err := db.st.remove(packPath(db.dir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if db.opts.Packs != nil {
		// No record points into it any more; one left behind by a failure
		// here is an orphan, which costs space and nothing else.
		ctx, cancel := context.WithTimeout(context.Background(), remoteTimeout)
		defer cancel()
		if err := db.opts.Packs.Delete(ctx, packObject(id)); err != nil {
			db.opts.Logger.Warn("could not delete a pack object", "pack", id, "err", err)
		}
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
		if errors.Is(err, ErrCorrupt) {
			// Damaged: marked, and left for a put of its bytes to replace.
			// Its record keeps pointing at the deleted pack, which reads as
			// damage too.
			db.damage(ref, err)
			continue
		}
		if err != nil {
			return moved, fmt.Errorf("cas: repack %d: %w", id, err)
		}
		db.mu.Lock()
		nl := location{flags: loc.flags, rawLen: loc.rawLen}
		if err := db.appendPackLocked(ref, &nl, payload); err != nil {
			db.mu.Unlock()
			return moved, db.failOn(err)
		}
		err = db.pending.Set(blobKey(ref), nl.append(nil))
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
