package cas

import (
	"bytes"
	"context"
	"errors"
)

// A collection over a shared Meta deletes with conditions rather than
// under db.mu alone, since other servers write meanwhile: each batch of
// deletions commits only while this server holds the collection lease
// with its epoch (the fencing token), while no server protected the refs
// in this epoch, and while each deleted record is as the sweep read it.
// A batch whose conditions fail is tried again without the refs that
// changed or were protected.

// dropOwnershipsShared drops items' ownerships (not protected, unchanged
// since the scan) and returns the refs it dropped.
func (db *DB) dropOwnershipsShared(items []keyRef, st *SweepStats) ([]Ref, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var keep []keyRef
	for _, it := range items {
		if !db.protected.Has(it.ref) {
			keep = append(keep, it)
		}
	}
	charge := func(w *MetaWrites, it keyRef) {
		if w.Adds == nil {
			w.Adds = map[string]int64{}
		}
		w.Adds[string(usageKey(it.ns))] -= it.charge
	}
	n, err := db.deleteShared(keep, charge)
	if err != nil {
		return nil, err
	}
	var out []Ref
	for _, it := range keep[:n] {
		out = append(out, it.ref)
	}
	st.Ownerships += n
	db.usage = nil // charges changed under it
	return out, nil
}

// deleteShared deletes the items' keys, each only if it still holds the
// value read and its ref is not protected in this server's epoch, and
// reorders items so that those deleted come first; it returns how many.
// add, if set, adds an item's other writes. The caller holds db.mu.
func (db *DB) deleteShared(items []keyRef, add func(*MetaWrites, keyRef)) (int, error) {
	ctx := context.Background()
	epoch, lease := db.cluster.joined, db.cluster.lease
	if lease == nil {
		return 0, errors.New("cas: a collection over a shared store needs the cluster's lease (BeginClusterGC)")
	}
	for attempt := 0; len(items) > 0; attempt++ {
		w := &MetaWrites{Keys: map[string][]byte{}, Conds: map[string][]byte{string(leaseKey): lease}}
		for _, it := range items {
			w.Keys[string(it.key)] = nil
			w.Conds[string(it.key)] = it.val
			w.Conds[string(protKey(epoch, it.ref))] = nil
			if add != nil {
				add(w, it)
			}
		}
		err := db.meta.Commit(ctx, w, true)
		if err == nil {
			return len(items), nil
		}
		if !errors.Is(err, ErrConflict) || attempt == 3 {
			return 0, err
		}
		// Which changed? Keep the items that did not; the others stay.
		if _, cur, err := db.readLease(ctx); err != nil {
			return 0, err
		} else if !bytes.Equal(cur, lease) {
			return 0, Errorf(ErrGCBusy, "%w: the collection lease was lost", ErrGCBusy)
		}
		var ok []keyRef
		for _, it := range items {
			v, err := db.meta.Get(ctx, it.key)
			if err != nil || !bytes.Equal(v, it.val) {
				continue
			}
			if _, err := db.meta.Get(ctx, protKey(epoch, it.ref)); !errors.Is(err, ErrNotFound) {
				continue
			}
			ok = append(ok, it)
		}
		// Deleted items come first: move the survivors to the front.
		copy(items, ok)
		items = items[:len(ok)]
	}
	return 0, nil
}
