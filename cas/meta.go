package cas

import (
	"bytes"
	"context"
	"errors"
	"slices"
)

// Meta is where a DB keeps its records: the blob index, ownerships,
// usage, heads, history, tags, damage, pack lengths, and every KV space
// (tokens, shares, policies, settings). The default is a Pebble database
// in the store's directory; a cluster of servers shares one Meta (see
// package pgmeta), each with its own directory for the pack cache.
//
// Keys are compared as bytes. A Meta is safe for concurrent use.
type Meta interface {
	// Get returns a copy of key's value, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key []byte) ([]byte, error)
	// GetMany returns the values of keys, nil for each key not there:
	// one round trip for a database, where Get is one per key.
	GetMany(ctx context.Context, keys [][]byte) ([][]byte, error)
	// Iter iterates the keys in [lower, upper) in order. It need not be a
	// snapshot: a key written meanwhile may or may not be seen.
	Iter(ctx context.Context, lower, upper []byte) (MetaIter, error)
	// Commit applies w atomically, durably when sync is set. When one of
	// w's conditions does not hold, nothing is applied and the error
	// wraps ErrConflict.
	Commit(ctx context.Context, w *MetaWrites, sync bool) error
	// Counter returns the counter's value, or an error wrapping
	// ErrNotFound when it was never added to.
	Counter(ctx context.Context, key []byte) (int64, error)
	// Compact is a hint that [lower, upper) lost many keys.
	Compact(ctx context.Context, lower, upper []byte) error
	// Shared reports whether other processes write this Meta too: then
	// nothing read from it may be cached past the next commit.
	Shared() bool
	Close() error
}

// MetaIter is an iterator over a Meta's keys. Key and Value are valid
// until the next move.
type MetaIter interface {
	First() bool
	Last() bool
	SeekGE(key []byte) bool
	Next() bool
	Valid() bool
	Key() []byte
	Value() []byte
	Error() error
	Close() error
}

// ErrMetaUnavailable: the Meta (a database server) could not be reached
// or failed the statement; nothing of a failed commit was applied, and the
// operation may be tried again.
var ErrMetaUnavailable = errors.New("the metadata database is unavailable")

// ErrConflict: a Meta commit whose condition failed (another writer got
// there first). Nothing of the commit was applied.
var ErrConflict = errors.New("conflicting write")

// MetaWrites is one atomic set of writes: range deletions apply first,
// then each key's last Set or Delete, then counter additions. Conditions
// name a key's value at commit (nil: absent).
type MetaWrites struct {
	Ranges [][2][]byte
	// Keys holds each key's final write; a nil value deletes it.
	Keys  map[string][]byte
	Adds  map[string]int64
	Conds map[string][]byte
	size  int
}

// Len is the writes' approximate encoded size, to bound memory.
func (w *MetaWrites) Len() int { return w.size }

// Empty reports whether w writes nothing.
func (w *MetaWrites) Empty() bool { return len(w.Ranges) == 0 && len(w.Keys) == 0 && len(w.Adds) == 0 }

// SortedKeys returns w's written keys in order.
func (w *MetaWrites) SortedKeys() []string {
	out := make([]string, 0, len(w.Keys))
	for k := range w.Keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// pendingBatch collects a DB's writes until the next flush commits them,
// and answers reads with them first, then the Meta: an indexed batch that
// works over any Meta.
type pendingBatch struct {
	meta Meta
	w    MetaWrites
}

func newPending(m Meta) *pendingBatch {
	return &pendingBatch{meta: m, w: MetaWrites{Keys: map[string][]byte{}}}
}

// Get returns key's value as the batch would leave it.
func (b *pendingBatch) Get(key []byte) ([]byte, error) {
	if v, ok := b.w.Keys[string(key)]; ok {
		if v == nil {
			return nil, ErrNotFound
		}
		return bytes.Clone(v), nil
	}
	if b.inRange(key) {
		return nil, ErrNotFound
	}
	return b.meta.Get(context.Background(), key)
}

func (b *pendingBatch) inRange(key []byte) bool {
	for _, r := range b.w.Ranges {
		if bytes.Compare(key, r[0]) >= 0 && bytes.Compare(key, r[1]) < 0 {
			return true
		}
	}
	return false
}

// Set puts key = v.
func (b *pendingBatch) Set(key, v []byte) error {
	b.w.Keys[string(key)] = append(make([]byte, 0, len(v)), v...)
	b.w.size += len(key) + len(v)
	return nil
}

// Delete removes key.
func (b *pendingBatch) Delete(key []byte) error {
	b.w.Keys[string(key)] = nil
	b.w.size += len(key)
	return nil
}

// DeleteRange removes every key in [lo, hi), those this batch set too.
func (b *pendingBatch) DeleteRange(lo, hi []byte) error {
	for k, v := range b.w.Keys {
		if k >= string(lo) && k < string(hi) && v != nil {
			b.w.Keys[k] = nil
		}
	}
	b.w.Ranges = append(b.w.Ranges, [2][]byte{bytes.Clone(lo), bytes.Clone(hi)})
	b.w.size += len(lo) + len(hi)
	return nil
}

// Add adds delta to a counter.
func (b *pendingBatch) Add(key []byte, delta int64) {
	if b.w.Adds == nil {
		b.w.Adds = map[string]int64{}
	}
	b.w.Adds[string(key)] += delta
	b.w.size += len(key) + 8
}

// Counter returns the counter's value as the batch would leave it, or
// ErrNotFound when neither the batch nor the Meta has it.
func (b *pendingBatch) Counter(key []byte) (int64, error) {
	d, pending := b.w.Adds[string(key)]
	v, err := b.meta.Counter(context.Background(), key)
	if errors.Is(err, ErrNotFound) && pending {
		err = nil
	}
	return v + d, err
}

// Expect makes the commit conditional on key's value (nil: absent).
func (b *pendingBatch) Expect(key, v []byte) {
	if b.w.Conds == nil {
		b.w.Conds = map[string][]byte{}
	}
	b.w.Conds[string(key)] = bytes.Clone(v)
}

// Len is the batch's approximate size.
func (b *pendingBatch) Len() int { return b.w.size }

// Empty reports whether the batch writes nothing.
func (b *pendingBatch) Empty() bool { return b.w.Empty() }

// Commit applies the batch durably. A batch that failed keeps its writes
// for the next commit, unless it had conditions: a conditional write
// (a head's move) must not apply later, after its caller was told it
// failed, so its callers commit it alone.
func (b *pendingBatch) Commit() error {
	err := b.meta.Commit(context.Background(), &b.w, true)
	if err == nil || len(b.w.Conds) > 0 {
		b.Reset()
	}
	return err
}

// Reset drops the batch's writes.
func (b *pendingBatch) Reset() { b.w = MetaWrites{Keys: map[string][]byte{}} }

// iterate calls fn for each key with prefix p, in order.
func iterMeta(m Meta, p []byte, fn func(k, v []byte) error) error {
	it, err := m.Iter(context.Background(), p, prefixEnd(p))
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// Shared reports whether other servers write the store's records too (a
// cluster over one database).
func (db *DB) Shared() bool { return db.meta.Shared() }

// getMany returns the values of keys as the pending batch and the Meta
// give them (nil: absent), without holding db.mu over the Meta's round
// trip: writers wait for a read lock, and a database answers in
// milliseconds. What the batch decides wins, as it was before the round
// trip or after it (a flush between commits what the batch held, which
// the round trip then reads).
func (db *DB) getMany(keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	var ask [][]byte
	var at []int
	db.mu.RLock()
	for i, k := range keys {
		if v, ok := db.pending.w.Keys[string(k)]; ok {
			out[i] = bytes.Clone(v)
		} else if !db.pending.inRange(k) {
			ask, at = append(ask, k), append(at, i)
		}
	}
	db.mu.RUnlock()
	if len(ask) == 0 {
		return out, nil
	}
	vals, err := db.meta.GetMany(context.Background(), ask)
	if err != nil {
		return nil, err
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	for j, i := range at {
		k := ask[j]
		if v, ok := db.pending.w.Keys[string(k)]; ok {
			out[i] = bytes.Clone(v)
		} else if !db.pending.inRange(k) {
			out[i] = vals[j]
		}
	}
	return out, nil
}
