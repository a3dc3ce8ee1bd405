package cas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrQuota: a put would take a namespace past its byte quota.
var ErrQuota = errors.New("quota exceeded")

// QuotaError says which namespace is over its quota, and by how much.
type QuotaError struct {
	Namespace   string
	Used, Limit int64
	Need        int64
}

func (e *QuotaError) Error() string {
	if e.Need == 0 {
		return fmt.Sprintf("cas: quota exceeded: namespace %q holds %d of its %d bytes: nothing was sent (free space with forget and gc, or raise the quota)", e.Namespace, e.Used, e.Limit)
	}
	return fmt.Sprintf("cas: quota exceeded: namespace %q holds %d of its %d bytes; %d more were refused", e.Namespace, e.Used, e.Limit, e.Need)
}

func (e *QuotaError) Is(target error) bool { return target == ErrQuota }

func usageKey(ns string) []byte { return append([]byte{'u'}, ns...) }
func quotaKey(ns string) []byte { return append([]byte{'q'}, ns...) }

// chargeLocked adds n bytes to ns's usage, or refuses with a *QuotaError
// when that passes its quota. The caller holds db.mu and writes the
// ownership in the same batch.
func (db *DB) chargeLocked(ns string, n int64) error {
	used, err := db.usageLocked(ns)
	if err != nil {
		return err
	}
	limit, err := db.quotaLocked(ns)
	if err != nil {
		return err
	}
	if limit > 0 && used+n > limit {
		return &QuotaError{Namespace: ns, Used: used, Limit: limit, Need: n}
	}
	return db.addUsageLocked(ns, used, n)
}

// addUsageLocked adds delta to ns's usage, which is used now. The record
// is a counter, added to rather than set, so that servers sharing a Meta
// charge one namespace without losing each other's charges.
func (db *DB) addUsageLocked(ns string, used, delta int64) error {
	if db.usage == nil {
		db.usage = map[string]int64{}
	}
	db.usage[ns] = used + delta
	db.pending.Add(usageKey(ns), delta)
	return nil
}

// usageLocked returns ns's charged bytes: what its ownership records
// were charged. A store from before usage was counted is counted once,
// from the ownership records.
func (db *DB) usageLocked(ns string) (int64, error) {
	if v, ok := db.usage[ns]; ok {
		return v, nil
	}
	switch v, err := db.pending.Counter(usageKey(ns)); {
	case err == nil:
		if db.usage == nil {
			db.usage = map[string]int64{}
		}
		db.usage[ns] = v
		return v, nil
	case !errors.Is(err, ErrNotFound):
		return 0, err
	}
	var total int64
	err := db.iterate(ownPrefix(ns), func(_, v []byte) error {
		if len(v) >= 16 {
			total += int64(binary.BigEndian.Uint64(v[8:]))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, db.addUsageLocked(ns, 0, total)
}

// quotaLocked returns ns's byte quota, 0 for none.
// Quotas are cached: every new ownership is checked against one, and a
// lookup each cost a quarter of the time of putting many small blobs.
func (db *DB) quotaLocked(ns string) (int64, error) {
	if q, ok := db.quotas[ns]; ok {
		return q, nil
	}
	v, err := db.getLocked(quotaKey(ns))
	var q int64
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return 0, err
	case len(v) != 8:
		return 0, fmt.Errorf("%w: quota record of namespace %q", ErrCorrupt, ns)
	default:
		q = int64(binary.BigEndian.Uint64(v))
	}
	if db.quotas == nil {
		db.quotas = map[string]int64{}
	}
	db.quotas[ns] = q
	return q, nil
}

// SetQuota limits the bytes the namespace may hold (its blobs' stored
// sizes, counted once per namespace, whether referenced yet or still in
// flight); 0 removes the limit. What it holds already stays.
func (n *Namespace) SetQuota(ctx context.Context, limit int64) error {
	if limit < 0 {
		return fmt.Errorf("quota %d: want 0 (none) or a byte count", limit)
	}
	n.db.mu.Lock()
	defer n.db.mu.Unlock()
	var err error
	if limit == 0 {
		err = n.db.pending.Delete(quotaKey(n.name))
	} else {
		err = n.db.pending.Set(quotaKey(n.name), binary.BigEndian.AppendUint64(nil, uint64(limit)))
	}
	if err != nil {
		return err
	}
	err = n.db.flushLocked()
	if err == nil {
		if n.db.quotas == nil {
			n.db.quotas = map[string]int64{}
		}
		n.db.quotas[n.name] = limit
	} else {
		delete(n.db.quotas, n.name) // read again from the store
	}
	return err
}

// Usage returns the bytes the namespace holds and its quota (0: none).
func (n *Namespace) Usage(ctx context.Context) (used, limit int64, err error) {
	n.db.mu.Lock()
	defer n.db.mu.Unlock()
	if used, err = n.db.usageLocked(n.name); err != nil {
		return 0, 0, err
	}
	limit, err = n.db.quotaLocked(n.name)
	return used, limit, err
}
