package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// getEncoded returns a blob's stored form without decoding it: for
// serving to a peer, which verifies what it receives. A blob marked
// damaged is verified here first (reading it again may find it sound: the
// error was passing, or a put replaced it).
func (db *DB) getEncoded(ctx context.Context, ref Ref) (Flags, []byte, int, error) {
	loc, payload, err := db.readStored(ctx, ref)
	if err != nil {
		return 0, nil, 0, err
	}
	if db.isDamaged(ref) {
		if _, err := db.verified(ref, loc, payload); err != nil {
			return 0, nil, 0, err
		}
	}
	return loc.flags, payload, loc.rawLen, nil
}

// getBlob reads and verifies the blob under ref.
func (db *DB) getBlob(ctx context.Context, ref Ref) ([]byte, error) {
	loc, payload, err := db.readStored(ctx, ref)
	if err != nil {
		return nil, err
	}
	return db.verified(ref, loc, payload)
}

// readStored reads a blob's record and stored bytes. Damage found on the
// way (a record that does not parse, a pack entry that is missing, short,
// unreadable or not what the record says) marks the blob damaged.
func (db *DB) readStored(ctx context.Context, ref Ref) (location, []byte, error) {
	return db.readStoredWith(ctx, ref, nil)
}

// readStoredWith is readStored looking the record up with recs (nil: a
// point lookup).
func (db *DB) readStoredWith(ctx context.Context, ref Ref, recs *seeker) (location, []byte, error) {
	if err := ctx.Err(); err != nil {
		return location{}, nil, err
	}
	var rec []byte
	var err error
	if recs == nil {
		rec, err = db.get(blobKey(ref))
	} else {
		db.mu.RLock()
		rec, err = recs.getLocked(blobKey(ref))
		db.mu.RUnlock()
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return location{}, nil, fmt.Errorf("get %s: %w", ref.Short(), ErrNotFound)
		}
		return location{}, nil, db.damage(ref, fmt.Errorf("get %s: %w", ref.Short(), err))
	}
	loc, err := parseLocation(rec)
	if err != nil {
		return location{}, nil, db.damage(ref, fmt.Errorf("get %s: %w", ref.Short(), err))
	}
	payload := loc.inline
	if payload == nil {
		if payload, err = db.readPackedRetry(ref, loc, rec); err != nil {
			return location{}, nil, db.damage(ref, err)
		}
	}
	return loc, payload, nil
}

// verified decodes a stored blob and checks its hash; a blob that fails
// is marked damaged, one that passes is no longer.
func (db *DB) verified(ref Ref, loc location, payload []byte) ([]byte, error) {
	b, err := Decode(nil, ref, loc.flags, payload, loc.rawLen)
	if err != nil {
		return nil, db.damage(ref, fmt.Errorf("get %s: %w", ref.Short(), err))
	}
	db.sound(ref)
	return b, nil
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
