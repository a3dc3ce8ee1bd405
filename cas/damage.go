package cas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Damage bookkeeping: a blob whose stored bytes fail verification on any
// read, check or scrub is recorded as damaged ("d" records, mirrored in
// DB.damaged). Every namespace that owns it is then told it is missing
// (Has), so that the next push of any device that still holds the bytes
// sends them again; the put that brings them replaces the record (see
// writeRecord), and the damage record goes in the same batch.

// maxDamageReason bounds the reason kept with a damage record.
const maxDamageReason = 256

func damageKey(r Ref) []byte { return append([]byte{'d'}, r[:]...) }

// DamageRecord is one blob recorded as damaged.
type DamageRecord struct {
	Ref    Ref       `json:"ref"`
	Found  time.Time `json:"found"`
	Reason string    `json:"reason"`
}

func parseDamage(k, v []byte) (DamageRecord, error) {
	if len(k) != 1+len(Ref{}) || len(v) < 8 {
		return DamageRecord{}, fmt.Errorf("%w: damage record", ErrCorrupt)
	}
	return DamageRecord{
		Ref:    Ref(k[1:]),
		Found:  time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(),
		Reason: string(v[8:]),
	}, nil
}

// loadDamaged reads the damage records at open.
func (db *DB) loadDamaged() error {
	return db.iterate([]byte{'d'}, func(k, v []byte) error {
		d, err := parseDamage(k, v)
		if err != nil {
			return err
		}
		db.damaged.Add(d.Ref)
		return nil
	})
}

// damage marks ref damaged when err says its bytes are bad (ErrCorrupt),
// and returns err. The record is written with the next flush; a crash
// before it loses only the mark, and the next read finds the damage
// again.
func (db *DB) damage(ref Ref, err error) error {
	if !errors.Is(err, ErrCorrupt) {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.damaged.Has(ref) || db.closed {
		return err
	}
	db.damaged.Add(ref)
	db.removals.Add(1)
	db.opts.Logger.Warn("blob damaged", "ref", ref.String(), "err", err)
	reason := err.Error()
	if len(reason) > maxDamageReason {
		reason = reason[:maxDamageReason]
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(db.opts.Now().UnixNano()))
	if perr := db.pending.Set(damageKey(ref), append(v, reason...)); perr == nil {
		db.writeSeq++
	}
	return err
}

// sound clears the damage mark of a blob that was just read and verified.
func (db *DB) sound(ref Ref) {
	if !db.isDamaged(ref) {
		return
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.healedLocked(ref); err == nil {
		db.writeSeq++
	}
}

// healedLocked drops ref's damage mark, in the batch that replaces it.
func (db *DB) healedLocked(ref Ref) error {
	if !db.damaged.Has(ref) {
		return nil
	}
	if err := db.pending.Delete(damageKey(ref)); err != nil {
		return err
	}
	delete(db.damaged, ref)
	db.opts.Logger.Info("blob healed", "ref", ref.String())
	return nil
}

func (db *DB) isDamaged(ref Ref) bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.damaged.Has(ref)
}

// Damaged returns every blob recorded as damaged, in ref order.
func (db *DB) Damaged(ctx context.Context) ([]DamageRecord, error) {
	if err := db.Flush(ctx); err != nil && !errors.Is(err, ErrFailed) {
		return nil, err
	}
	var out []DamageRecord
	err := db.iterate([]byte{'d'}, func(k, v []byte) error {
		d, err := parseDamage(k, v)
		if err == nil {
			out = append(out, d)
		}
		return err
	})
	return out, err
}

// Damaged returns up to limit damaged blobs the namespace owns, in ref
// order: what a device of the namespace may be able to send again.
func (n *Namespace) Damaged(ctx context.Context, limit int) ([]Ref, error) {
	n.db.mu.RLock()
	refs := make([]Ref, 0, len(n.db.damaged))
	for r := range n.db.damaged {
		refs = append(refs, r)
	}
	n.db.mu.RUnlock()
	slices.SortFunc(refs, Ref.Compare)
	out := refs[:0]
	for _, r := range refs {
		if len(out) == limit {
			break
		}
		n.db.mu.RLock()
		owned, err := n.owns(r)
		n.db.mu.RUnlock()
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		// An ownership that cannot be read may be this namespace's.
		if owned || err != nil {
			out = append(out, r)
		}
	}
	return out, ctx.Err()
}

// Verify reads and re-hashes the refs the namespace owns, marking damage
// (or clearing the mark of a blob that now verifies), and reports which
// are damaged. A ref the namespace does not own is reported sound: it is
// not this namespace's to judge.
func (n *Namespace) Verify(ctx context.Context, refs []Ref) ([]bool, error) {
	out := make([]bool, len(refs))
	for i, r := range refs {
		n.db.mu.RLock()
		owned, err := n.owns(r)
		n.db.mu.RUnlock()
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		if !owned {
			continue
		}
		if _, err := n.db.getBlob(ctx, r); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return nil, err
			}
			out[i] = true
		}
	}
	return out, nil
}
