package cas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// CheckOptions choose how deep Check looks.
type CheckOptions struct {
	// ReadData re-reads and re-hashes every blob, not only its record.
	ReadData bool
	// Subset, when M > 0, limits ReadData to the blobs whose ref falls in
	// slice N of M (1 <= N <= M), so M runs cover the store once.
	SubsetN, SubsetM int
	// Progress, if set, is told the bytes ReadData will read (once, before
	// the first) and then each blob's bytes as it is read: counts to add.
	Progress func(totalBytes, bytesRead int64)
}

// selected reports whether ReadData reads ref under opts.
func (opts CheckOptions) selected(ref Ref) bool {
	return opts.ReadData && (opts.SubsetM == 0 || int(binary.BigEndian.Uint64(ref[:8])%uint64(opts.SubsetM)) == opts.SubsetN-1)
}

// Damage is one problem Check found.
type Damage struct {
	Ref Ref    `json:"ref"`
	Err string `json:"error"`
}

// CheckStats counts what Check looked at.
type CheckStats struct {
	Blobs     int   `json:"blobs"`
	BlobsRead int   `json:"blobs_read"`
	BytesRead int64 `json:"bytes_read"`
	Damaged   int   `json:"damaged"`
}

// Check verifies every blob record (and, with ReadData, every blob's bytes)
// and calls report for each damaged blob. It reads a consistent view of
// committed records while writers go on. What it finds damaged is marked
// so (see damage.go); a marked blob that it reads and finds sound is
// unmarked; a marked blob it does not read is reported from its mark.
// Records that Pebble cannot read (a block whose checksum fails) end the
// walk with one report under the zero Ref.
func (db *DB) Check(ctx context.Context, opts CheckOptions, report func(Damage)) (CheckStats, error) {
	var st CheckStats
	if err := db.Flush(ctx); err != nil {
		return st, err
	}
	if opts.Progress != nil && opts.ReadData {
		// A first pass over the records (no blob is read) sizes the work.
		var total int64
		err := db.iterate([]byte{'b'}, func(k, v []byte) error {
			if loc, err := parseLocation(v); err == nil && opts.selected(Ref(k[1:])) {
				total += int64(loc.storedLen)
			}
			return ctx.Err()
		})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return st, err
		}
		opts.Progress(total, 0)
	}
	packLens := map[uint64]int64{}
	err := db.iterate([]byte{'b'}, func(k, v []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		st.Blobs++
		ref := Ref(k[1:])
		damage := func(err error) {
			st.Damaged++
			report(Damage{Ref: ref, Err: db.damage(ref, err).Error()})
		}
		loc, err := parseLocation(v)
		if err != nil {
			damage(err)
			return nil
		}
		if loc.inline == nil {
			n, ok := packLens[loc.pack]
			if !ok {
				if n, err = db.packLen(loc.pack); err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				packLens[loc.pack] = n
			}
			if end := loc.off + packEntryHead + int64(loc.storedLen); end > n {
				damage(fmt.Errorf("%w: record points past the committed end of pack %d", ErrCorrupt, loc.pack))
				return nil
			}
		}
		if !opts.selected(ref) {
			if db.isDamaged(ref) {
				damage(fmt.Errorf("%w: recorded damaged (not read again)", ErrCorrupt))
			}
			return nil
		}
		st.BlobsRead++
		st.BytesRead += int64(loc.storedLen)
		if opts.Progress != nil {
			opts.Progress(0, int64(loc.storedLen))
		}
		payload := loc.inline
		if payload == nil {
			if payload, err = db.packs.read(ref, loc); err != nil {
				damage(err)
				return nil
			}
		}
		if _, err := Decode(nil, ref, loc.flags, payload, loc.rawLen); err != nil {
			damage(err)
			return nil
		}
		db.sound(ref)
		return nil
	})
	if errors.Is(err, ErrCorrupt) {
		st.Damaged++
		report(Damage{Err: fmt.Sprintf("blob records after the %d read are unreadable: %v", st.Blobs, err)})
		err = nil
	}
	if err == nil {
		err = db.Flush(ctx) // the marks
	}
	return st, err
}
