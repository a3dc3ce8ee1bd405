package cas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

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
	if got := verifyHash(data); got != ref {
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
	_, err := db.writeRecord(ref, payload, flags, len(data), owner)
	return err
}

var encBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// putEncoded stores a blob given in its stored form (as a peer sends it):
// it is decoded and verified, then kept as sent, so it is compressed once.
// It reports whether the blob was new to owner.
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
	return db.writeRecord(ref, payload, flags, rawLen, owner)
}

var decBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// writeRecord stores the blob unless a sound record of it exists, and
// records that owner owns it, and reports whether the blob was new to
// owner. A record that failed verification (damaged) or cannot be read is
// replaced by these bytes, which the caller verified: the new copy goes to
// a new pack entry, and the old one is garbage for the next collection. A
// new ownership is charged to the owner's usage (the size of the stored
// form the owner sent), and refused with ErrQuota when that would pass the
// owner's quota; nothing is written then. Bytes new to the owner are
// refused with ErrFull while the filesystem is below its free-space mark.
//
// Nothing the owner can observe depends on other namespaces (RELIABILITY
// C6): not the answer, not the charge, not the error, and not the work up
// to the durable acknowledgement, since bytes another namespace stored
// are written to the pack again, as a dead entry the next collection
// reclaims, so that the put costs what a new blob costs.
func (db *DB) writeRecord(ref Ref, payload []byte, flags Flags, rawLen int, owner string) (bool, error) {
	ok := ownKey(owner, ref)
	var prefetched [][]byte
	if db.meta.Shared() {
		// A database: the record and the ownership in one round trip,
		// before the write lock, so that puts on other connections do not
		// wait on it. Under the lock, what the pending batch says since
		// wins over what was read.
		vals, err := db.getMany([][]byte{blobKey(ref), ok})
		if err != nil {
			return false, err
		}
		prefetched = vals
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failed != nil {
		return false, db.failed
	}
	if err := db.clusterFreshLocked(); err != nil {
		return false, err
	}
	stored := int64(len(payload))
	exists := false
	lookup := db.getLocked
	if prefetched != nil {
		lookup = func(k []byte) ([]byte, error) {
			if v, ok := db.pending.w.Keys[string(k)]; ok || db.pending.inRange(k) {
				if v == nil {
					return nil, ErrNotFound
				}
				return v, nil
			}
			v := prefetched[0]
			if string(k) == string(ok) {
				v = prefetched[1]
			}
			if v == nil {
				return nil, ErrNotFound
			}
			return v, nil
		}
	}
	switch rec, err := lookup(blobKey(ref)); {
	case err == nil && !db.damaged.Has(ref):
		if loc, err := parseLocation(rec); err == nil {
			if loc.rawLen != rawLen {
				// Both were verified against ref: a hash collision, or a
				// bug. Neither is taken for the other (RELIABILITY C11).
				db.opts.Logger.Error("one ref, two lengths", "ref", ref.String(), "stored", loc.rawLen, "put", rawLen)
				return false, fmt.Errorf("%w: %s is stored with %d bytes and was put with %d: one ref for different bytes (a hash collision, or a bug)", ErrCorrupt, ref.Short(), loc.rawLen, rawLen)
			}
			exists = true
		}
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
	default:
		return false, err
	}
	// Ownership records carry the time of the last put (garbage
	// collection spares what was put within its grace) and the bytes the
	// owner was charged for the blob (given back when it is collected).
	charged, newOwner := stored, true
	if old, err := lookup(ok); err == nil {
		newOwner = false
		if len(old) >= 16 {
			charged = int64(binary.BigEndian.Uint64(old[8:]))
		}
	} else if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
		// An unreadable ownership is written anew (and charged again).
		return false, err
	}
	if epoch := db.cluster.joined; epoch != 0 {
		// During a cluster's collection a put writes its bytes anew,
		// unless this server did in this batch already, and protects
		// them in the same commit: the collector's deletion of the old
		// record either fails on the protection or is overwritten by
		// this one. Its pack entries are the collection's to reclaim.
		if _, fresh := db.pending.w.Keys[string(blobKey(ref))]; !fresh {
			exists = false
		}
		if err := db.pending.Set(protKey(epoch, ref), []byte{}); err != nil {
			return false, err
		}
	}
	if !exists || newOwner {
		if err := db.space.check(stored); err != nil {
			return false, err
		}
	}
	if newOwner {
		if err := db.chargeLocked(owner, charged); err != nil {
			return false, err
		}
	}
	if exists && newOwner && len(payload) > InlineMax {
		// Stored for another namespace: the same pack write as a new
		// blob's, to a dead entry (see above).
		shadow := location{flags: flags, rawLen: rawLen}
		if err := db.appendPackLocked(ref, &shadow, payload); err != nil {
			return false, db.failOn(err)
		}
	}
	if !exists {
		loc := location{flags: flags, rawLen: rawLen}
		if len(payload) <= InlineMax {
			loc.inline = payload
		} else if err := db.appendPackLocked(ref, &loc, payload); err != nil {
			return false, db.failOn(err)
		}
		if err := db.pending.Set(blobKey(ref), loc.append(nil)); err != nil {
			return false, err
		}
		if err := db.healedLocked(ref); err != nil {
			return false, err
		}
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(db.opts.Now().UnixNano()))
	v = binary.BigEndian.AppendUint64(v, uint64(charged))
	if err := db.pending.Set(ok, v); err != nil {
		return false, err
	}
	db.protectLocked(ref)
	db.writeSeq++
	// A full pack is sealed: its writeback starts now, its fsync waits
	// for the next flush, so writing goes on meanwhile. Too many sealed
	// packs, or a large batch, force a flush to bound what waits.
	if db.cur != nil && db.cur.size >= packTarget {
		if err := db.cur.seal(); err != nil {
			return false, db.failOn(err)
		}
		if db.opts.Packs != nil {
			db.startUpload(db.cur) // while writing goes on; the flush waits for it
		}
		db.sealed = append(db.sealed, db.cur)
		db.cur = nil
	}
	if len(db.sealed) >= maxSealed || db.pending.Len() >= 4<<20 {
		return newOwner, db.flushLocked()
	}
	return newOwner, nil
}

// appendPackLocked appends an entry to the current pack. A disk that is
// full (ENOSPC, past the free-space mark's guard: another process filled
// it) gives up the ballast and the append is tried once more.
func (db *DB) appendPackLocked(ref Ref, loc *location, payload []byte) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if db.cur == nil {
			id := db.nextPack
			if db.opts.Packs != nil || db.meta.Shared() {
				id = db.newPackID() // no two servers pick one id
			}
			w, cerr := createPack(db.st, db.dir, id)
			if cerr != nil {
				err = cerr
			} else {
				db.nextPack = max(db.nextPack, id+1)
				db.cur = w
			}
		}
		if db.cur != nil {
			var off int64
			if off, err = db.cur.append(ref, loc.flags, loc.rawLen, payload); err == nil {
				loc.pack, loc.off, loc.storedLen = db.cur.id, off, len(payload)
				return nil
			}
			if db.cur.broken {
				if serr := db.cur.seal(); serr != nil {
					return serr
				}
				db.sealed = append(db.sealed, db.cur)
				db.cur = nil
			}
		}
		if !errors.Is(err, unix.ENOSPC) || !db.dropBallast() {
			break
		}
	}
	return err
}

// failure returns the error that failed the store, or nil. A failed
// store answers no head or history: after a failed WAL fsync Pebble may
// show writes that a restart will not have, and a client must never be
// told of a head that was not made durable.
func (db *DB) failure() error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.failed
}

// failOn fails the store for an error after which nothing may be
// written (a failed fsync), and returns the others as they are: a write
// that the disk refused left the packs as they were.
func (db *DB) failOn(err error) error {
	var se *syncError
	if errors.As(err, &se) {
		return db.fail(err)
	}
	return err
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
	remote := db.opts.Packs != nil
	if remote && db.cur != nil && db.cur.dirty {
		// An object never grows: the pack this flush makes durable is
		// sealed, and the next write starts another.
		if err := db.cur.seal(); err != nil {
			return db.failOn(err)
		}
		db.sealed = append(db.sealed, db.cur)
		db.cur = nil
	}
	packs := db.sealed
	if db.cur != nil {
		packs = append(packs, db.cur)
	}
	for _, w := range packs {
		if !w.dirty && (!remote || w.uploaded) {
			continue
		}
		if w.dirty {
			err := w.sync()
			if errors.Is(err, unix.ENOSPC) && db.dropBallast() {
				err = w.sync()
			}
			if err != nil {
				return db.failOn(err)
			}
		}
		if w.upload != nil {
			if err := <-w.upload; err == nil {
				w.uploaded = true
			} else {
				db.opts.Logger.Warn("pack upload failed; retrying at the flush", "pack", w.id, "err", err)
			}
			w.upload = nil
		}
		if remote && !w.uploaded {
			// Before any record points into it. A failure here is not
			// the store's: the pack stays sealed, and the next flush
			// tries again.
			if err := db.uploadLocked(w); err != nil {
				return err
			}
		}
		if err := db.pending.Set(packKey(w.id), binary.AppendUvarint(nil, uint64(w.size))); err != nil {
			return err
		}
	}
	if !db.pending.Empty() {
		if err := db.pending.Commit(); err != nil {
			if db.meta.Shared() {
				// A database that is down or restarting: nothing was
				// acknowledged, the writers are told, and their clients
				// send again. The store goes on.
				return fmt.Errorf("cas: commit: %w", err)
			}
			return db.fail(err)
		}
		db.forgetShared()
	}
	for _, w := range db.sealed {
		if err := w.f.Close(); err != nil {
			return db.fail(err)
		}
		db.packs.addLocal(w.id, w.size)
	}
	db.sealed = nil
	db.durableSeq = db.writeSeq
	db.evictLocked()
	return nil
}

// maxSealed bounds the sealed packs awaiting a flush (512 MiB of data).
const maxSealed = 8

// forgetShared drops what was cached from a Meta that other servers write
// too: their charges and quotas are read again at the next put.
func (db *DB) forgetShared() {
	if db.meta.Shared() {
		db.usage, db.quotas = nil, nil
	}
}
