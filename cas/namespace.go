package cas

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// ValidName reports whether s may name a namespace, root or tag: 1 to 64
// bytes of [A-Za-z0-9._-], not starting with '.' or '-'. Names become
// parts of keys and file names, so the rule is strict.
func ValidName(s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("%w: %q must be 1 to 64 bytes", ErrInvalidName, s)
	}
	if s[0] == '.' || s[0] == '-' {
		return fmt.Errorf("%w: %q starts with %q", ErrInvalidName, s, s[0])
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidName, s, c)
		}
	}
	return nil
}

// Namespace is one tenant's view of a DB: it sees only the blobs it put
// itself (a blob stored once for two tenants is owned by both), and its own
// heads, history and tags. "Absent" and "owned by another namespace" look
// the same. A Namespace is safe for concurrent use.
type Namespace struct {
	db   *DB
	name string
}

var (
	_ Store = (*Namespace)(nil)
	_ Heads = (*Namespace)(nil)
)

// Namespace returns the view of namespace name.
func (db *DB) Namespace(name string) (*Namespace, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	return &Namespace{db: db, name: name}, nil
}

// Name returns the namespace's name.
func (n *Namespace) Name() string { return n.name }

// Config returns the namespace's config record (for ferry, its chunk
// params), or ErrNotFound.
func (n *Namespace) Config(ctx context.Context) ([]byte, error) {
	return n.db.get(nsConfigKey(n.name))
}

// SetConfig writes the namespace's config record durably.
func (n *Namespace) SetConfig(ctx context.Context, v []byte) error {
	return n.db.setDurable(nsConfigKey(n.name), v)
}

// Namespaces lists every namespace that has a config record, a head or
// a blob, sorted.
func (db *DB) Namespaces(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	err := db.iterate([]byte{'N'}, func(k, _ []byte) error {
		seen[string(k[1:])] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range []byte{'h', 'o'} {
		names, err := namespacesUnder(ctx, db.meta, p)
		if err != nil {
			return nil, err
		}
		for _, ns := range names {
			seen[ns] = true
		}
	}
	out := make([]string, 0, len(seen))
	for ns := range seen {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out, ctx.Err()
}

func (db *DB) setDurable(key, v []byte) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.pending.Set(key, v); err != nil {
		return err
	}
	return db.flushLocked()
}

func (n *Namespace) owns(r Ref) (bool, error) {
	_, err := n.db.getLocked(ownKey(n.name, r))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Has reports which refs the namespace owns. A damaged blob is missing:
// whoever has its bytes should send them.
func (n *Namespace) Has(ctx context.Context, refs []Ref) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]bool, len(refs))
	var vals [][]byte
	if n.db.meta.Shared() {
		// A database: the whole batch in one round trip.
		keys := make([][]byte, len(refs))
		for i, r := range refs {
			keys[i] = ownKey(n.name, r)
		}
		var err error
		if vals, err = n.db.getMany(keys); err != nil {
			return nil, err
		}
	}
	n.db.mu.RLock()
	if vals != nil {
		for i, r := range refs {
			out[i] = vals[i] != nil && !n.db.damaged.Has(r)
		}
	} else {
		own := n.db.newSeeker(ownPrefix(n.name), prefixEnd(ownPrefix(n.name)), len(refs))
		defer own.close()
		for _, i := range sortedOrder(refs) {
			_, err := own.getLocked(ownKey(n.name, refs[i]))
			if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
				n.db.mu.RUnlock()
				return nil, err
			}
			out[i] = err == nil && !n.db.damaged.Has(refs[i])
		}
	}
	gc, epoch := n.db.gcActive, n.db.cluster.joined
	fresh := n.db.clusterFreshLocked()
	n.db.mu.RUnlock()
	if fresh != nil {
		return nil, fresh
	}
	if epoch != 0 {
		if err := n.protectPresent(epoch, refs, out); err != nil {
			return nil, err
		}
	}
	if gc {
		n.db.mu.Lock()
		for i, r := range refs {
			if out[i] {
				n.db.protectLocked(r) // a writer may now count on it
			}
		}
		n.db.mu.Unlock()
	}
	return out, nil
}

// protectPresent records in the cluster's Meta that the refs Has found
// are present during collection epoch, then looks again: a collector's
// deletion that committed before the protection shows now (the ref is
// missing after all); one after it fails on the protection.
func (n *Namespace) protectPresent(epoch uint64, refs []Ref, out []bool) error {
	var yes []Ref
	for i, r := range refs {
		if out[i] {
			yes = append(yes, r)
		}
	}
	if err := n.db.protectShared(epoch, yes); err != nil {
		return err
	}
	var keys [][]byte
	for _, r := range yes {
		keys = append(keys, ownKey(n.name, r), blobKey(r))
	}
	vals, err := n.db.getMany(keys)
	if err != nil {
		return err
	}
	j := 0
	for i := range refs {
		if out[i] {
			out[i] = vals[2*j] != nil && vals[2*j+1] != nil
			j++
		}
	}
	return nil
}

// Sizes reports, for each ref the namespace has (as Has answers), the
// blob's raw length, and -1 for the others: a commit checks that every
// chunk length a file object declares is the stored chunk's.
func (n *Namespace) Sizes(ctx context.Context, refs []Ref) ([]int64, error) {
	has, err := n.Has(ctx, refs)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(refs))
	recs := n.db.newSeeker([]byte{'b'}, []byte{'c'}, len(refs))
	defer recs.close()
	n.db.mu.RLock()
	defer n.db.mu.RUnlock()
	for _, i := range sortedOrder(refs) {
		r := refs[i]
		out[i] = -1
		if !has[i] {
			continue
		}
		rec, err := recs.getLocked(blobKey(r))
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if loc, err := parseLocation(rec); err == nil {
			out[i] = int64(loc.rawLen)
		}
	}
	return out, nil
}

// Put stores data under ref for this namespace. Putting a blob the store
// holds for any namespace writes only the ownership record (setting it
// again is harmless), but the bytes are verified all the same: a put proves
// the caller has them.
func (n *Namespace) Put(ctx context.Context, ref Ref, data []byte) error {
	return n.db.putBlob(ctx, ref, data, n.name)
}

// PutEncoded stores a blob sent in its stored form (see Encode); it is
// verified by decoding, and kept as sent. It reports whether the blob was
// new to the namespace (false: the namespace had it already), never
// whether another namespace had it.
func (n *Namespace) PutEncoded(ctx context.Context, ref Ref, flags Flags, payload []byte, rawLen int) (bool, error) {
	return n.db.putEncoded(ctx, ref, flags, payload, rawLen, n.name)
}

// GetEncoded returns an owned blob in its stored form, unverified: for a
// server handing it to a client, which verifies it.
func (n *Namespace) GetEncoded(ctx context.Context, ref Ref) (Flags, []byte, int, error) {
	if err := n.ownedForRead(ref); err != nil {
		return 0, nil, 0, err
	}
	return n.db.getEncoded(ctx, ref)
}

// Get returns the blob if the namespace owns it.
func (n *Namespace) Get(ctx context.Context, ref Ref) ([]byte, error) {
	if err := n.ownedForRead(ref); err != nil {
		return nil, err
	}
	n.db.protect(ref)
	return n.db.getBlob(ctx, ref)
}

// ownedForRead answers ErrNotFound for a blob the namespace does not own.
// An ownership record that cannot be read marks the blob damaged: a put
// of its bytes writes both anew.
func (n *Namespace) ownedForRead(ref Ref) error {
	n.db.mu.RLock()
	owned, err := n.owns(ref)
	n.db.mu.RUnlock()
	switch {
	case err != nil:
		return n.db.damage(ref, fmt.Errorf("get %s: ownership: %w", ref.Short(), err))
	case !owned:
		return fmt.Errorf("get %s: %w", ref.Short(), ErrNotFound)
	}
	return nil
}

// Flush makes the namespace's puts durable (and every other's).
func (n *Namespace) Flush(ctx context.Context) error { return n.db.Flush(ctx) }

// List calls fn for every ref the namespace owns, in byte order.
func (n *Namespace) List(ctx context.Context, fn func(Ref) error) error {
	if err := n.db.Flush(ctx); err != nil {
		return err
	}
	p := ownPrefix(n.name)
	return n.db.iterate(p, func(k, _ []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(Ref(k[len(p):]))
	})
}

// ListPage returns up to limit refs the namespace owns, in byte order,
// after the ref after (the zero Ref: from the start).
func (n *Namespace) ListPage(ctx context.Context, after Ref, limit int) ([]Ref, error) {
	if err := n.db.Flush(ctx); err != nil {
		return nil, err
	}
	p := ownPrefix(n.name)
	it, err := n.db.meta.Iter(context.Background(), p, prefixEnd(p))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Ref
	ok := it.First()
	if !after.IsZero() {
		ok = it.SeekGE(append(append([]byte(nil), p...), after[:]...))
		if ok && Ref(it.Key()[len(p):]) == after {
			ok = it.Next()
		}
	}
	for ; ok && len(out) < limit; ok = it.Next() {
		out = append(out, Ref(it.Key()[len(p):]))
	}
	return out, it.Error()
}

// Removals is a counter that moves, before the change is visible, whenever
// a blob some namespace owned may have stopped being there for it: an
// ownership dropped, a blob collected, a blob found damaged. While it stays
// put, what a caller saw put (and owned) is still owned, so the caller may
// rely on its own record of that instead of asking again. It is only
// meaningful for a store no other process writes (Shared is false).
func (db *DB) Removals() uint64 { return db.removals.Load() }

// Delete drops the namespace's ownership of refs. The bytes stay until the
// store's garbage collection finds no owner.
func (n *Namespace) Delete(ctx context.Context, refs []Ref) error {
	n.db.mu.Lock()
	defer n.db.mu.Unlock()
	n.db.removals.Add(1)
	for _, r := range refs {
		if err := n.db.pending.Delete(ownKey(n.name, r)); err != nil {
			return err
		}
	}
	return n.db.flushLocked()
}
