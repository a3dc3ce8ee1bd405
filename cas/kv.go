package cas

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
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
	v, closer, err := kv.db.pdb.Get(kv.key(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cas: kv get: %w", err)
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// Scan calls fn for each key starting with prefix, in order, with the
// space's own prefix removed. k and v are valid only during the call.
func (kv *KV) Scan(prefix []byte, fn func(k, v []byte) error) error {
	p := kv.key(prefix)
	return kv.db.iterate(p, func(k, v []byte) error { return fn(k[len(kv.prefix):], v) })
}

// Batch collects writes to apply atomically.
func (kv *KV) Batch() *KVBatch { return &KVBatch{kv: kv, b: kv.db.pdb.NewBatch()} }

// KVBatch is a set of writes to one KV space.
type KVBatch struct {
	kv *KV
	b  *pebble.Batch
}

// Set puts k = v.
func (b *KVBatch) Set(k, v []byte) error { return b.b.Set(b.kv.key(k), v, nil) }

// Delete removes k.
func (b *KVBatch) Delete(k []byte) error { return b.b.Delete(b.kv.key(k), nil) }

// DeletePrefix removes every key starting with prefix.
func (b *KVBatch) DeletePrefix(prefix []byte) error {
	p := b.kv.key(prefix)
	return b.b.DeleteRange(p, prefixEnd(p), nil)
}

// Size is the batch's encoded size, to bound memory.
func (b *KVBatch) Size() int { return b.b.Len() }

// Commit applies the batch; with sync it is durable when Commit returns.
func (b *KVBatch) Commit(sync bool) error {
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	err := b.b.Commit(opt)
	b.b.Close()
	if err != nil {
		return fmt.Errorf("cas: kv commit: %w", err)
	}
	return nil
}

// Close discards an uncommitted batch.
func (b *KVBatch) Close() { b.b.Close() }
