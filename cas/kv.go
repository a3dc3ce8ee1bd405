package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// KV is an ordered key/value space inside a DB for state that is not
// content addressed: a synced folder keeps its stat cache and base here.
// Keys are arbitrary bytes.
type KV struct {
	db     *DB
	prefix []byte
}

// KV returns the space named space.
func (db *DB) KV(space string) (*KV, error) {
	if err := ValidName(space); err != nil {
		return nil, err
	}
	return &KV{db: db, prefix: kvPrefix(space)}, nil
}

func (kv *KV) key(k []byte) []byte { return append(bytes.Clone(kv.prefix), k...) }

// Get returns the value of k, or ErrNotFound.
func (kv *KV) Get(k []byte) ([]byte, error) {
	v, err := kv.db.meta.Get(context.Background(), kv.key(k))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("cas: kv get: %w", err)
	}
	return v, err
}

// Scan calls fn for each key starting with prefix, in order, with the
// space's own prefix removed. k and v are valid only during the call.
func (kv *KV) Scan(prefix []byte, fn func(k, v []byte) error) error {
	p := kv.key(prefix)
	return kv.db.iterate(p, func(k, v []byte) error { return fn(k[len(kv.prefix):], v) })
}

// Batch collects writes to apply atomically.
func (kv *KV) Batch() *KVBatch { return &KVBatch{kv: kv, b: newPending(kv.db.meta)} }

// KVBatch is a set of writes to one KV space.
type KVBatch struct {
	kv *KV
	b  *pendingBatch
}

// Set puts k = v.
func (b *KVBatch) Set(k, v []byte) error { return b.b.Set(b.kv.key(k), v) }

// Delete removes k.
func (b *KVBatch) Delete(k []byte) error { return b.b.Delete(b.kv.key(k)) }

// DeletePrefix removes every key starting with prefix.
func (b *KVBatch) DeletePrefix(prefix []byte) error {
	p := b.kv.key(prefix)
	return b.b.DeleteRange(p, prefixEnd(p))
}

// Expect makes the commit conditional: it fails with ErrConflict unless k
// holds v (nil: k is absent) when it applies. Servers sharing one Meta
// use it where one process would hold a mutex.
func (b *KVBatch) Expect(k, v []byte) { b.b.Expect(b.kv.key(k), v) }

// Size is the batch's encoded size, to bound memory.
func (b *KVBatch) Size() int { return b.b.Len() }

// Commit applies the batch; with sync it is durable when Commit returns.
func (b *KVBatch) Commit(sync bool) error {
	err := b.kv.db.meta.Commit(context.Background(), &b.b.w, sync)
	b.b.Reset()
	if err != nil {
		return fmt.Errorf("cas: kv commit: %w", err)
	}
	return nil
}

// Close discards an uncommitted batch.
func (b *KVBatch) Close() { b.b.Reset() }
