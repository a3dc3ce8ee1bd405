package cas

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Heads: a namespace's roots, their heads (moved by compare-and-swap),
// history and tags.

func (n *Namespace) checkRoot(root string) error {
	if err := ValidName(root); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	return nil
}

// Head returns the root's head or ErrNotFound.
func (n *Namespace) Head(ctx context.Context, root string) (Ref, error) {
	if err := n.checkRoot(root); err != nil {
		return Ref{}, err
	}
	if err := n.db.failure(); err != nil {
		return Ref{}, err
	}
	v, err := n.db.get(headKey(n.name, root))
	if err != nil {
		return Ref{}, fmt.Errorf("head of %q: %w", root, err)
	}
	if len(v) != len(Ref{}) {
		return Ref{}, fmt.Errorf("%w: head of %q", ErrCorrupt, root)
	}
	return Ref(v), nil
}

// SwapHead moves root's head from old to new, after making every pending
// write durable, in one synced batch with the history entry. The new head
// must be a blob the namespace owns.
func (n *Namespace) SwapHead(ctx context.Context, root string, old, new Ref) error {
	if err := n.checkRoot(root); err != nil {
		return err
	}
	if new.IsZero() {
		return fmt.Errorf("swap head of %q: the new head is the zero ref", root)
	}
	db := n.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failed != nil {
		return db.failed
	}
	var cur Ref
	switch v, err := db.getLocked(headKey(n.name, root)); {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	default:
		cur = Ref(v)
	}
	if cur != old {
		return &StaleError{Root: root, Old: old, Current: cur}
	}
	shared := db.meta.Shared()
	if db.opts.Packs != nil || shared {
		// The blobs first, on their own: an upload that fails must not
		// leave the head waiting in the batch, to move at a later flush
		// after this one was refused; and a head that another server
		// moved meanwhile must fail only the head's own commit.
		if err := db.flushLocked(); err != nil {
			return err
		}
	}
	if ok, err := n.owns(new); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("swap head of %q to %s: %w", root, new.Short(), ErrNotFound)
	}
	seq, err := n.lastSeq(root)
	if err != nil {
		return err
	}
	entry := binary.BigEndian.AppendUint64(append([]byte(nil), new[:]...), uint64(db.opts.Now().UnixNano()))
	if err := db.pending.Set(histKey(n.name, root, seq+1), entry); err != nil {
		return err
	}
	if err := db.pending.Set(headKey(n.name, root), new[:]); err != nil {
		return err
	}
	if shared {
		db.pending.Expect(headKey(n.name, root), refOrNil(old))
		// The other servers' watchers learn of it from this record.
		ev := append(append(append(append([]byte(n.name), 0), root...), 0), new[:]...)
		if err := db.pending.Set(clusterEventKey(clusterNow(), db.cluster.id), ev); err != nil {
			return err
		}
	}
	return n.staleOnConflict(root, old, db.flushLocked())
}

// refOrNil is r's bytes, or nil (absent) for the zero Ref.
func refOrNil(r Ref) []byte {
	if r.IsZero() {
		return nil
	}
	return r[:]
}

// staleOnConflict turns a commit that lost the head to another server
// (ErrConflict) into the *StaleError a caller acts on. The caller holds
// db.mu.
func (n *Namespace) staleOnConflict(root string, old Ref, err error) error {
	if !errors.Is(err, ErrConflict) {
		return err
	}
	var cur Ref
	if v, gerr := n.db.getLocked(headKey(n.name, root)); gerr == nil && len(v) == len(cur) {
		cur = Ref(v)
	}
	return &StaleError{Root: root, Old: old, Current: cur}
}

func (n *Namespace) lastSeq(root string) (uint64, error) {
	p := histPrefix(n.name, root)
	it, err := n.db.meta.Iter(context.Background(), p, prefixEnd(p))
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	return binary.BigEndian.Uint64(it.Key()[len(p):]), nil
}

// History lists the root's history, oldest first.
func (n *Namespace) History(ctx context.Context, root string) ([]HistoryEntry, error) {
	if err := n.checkRoot(root); err != nil {
		return nil, err
	}
	if err := n.db.failure(); err != nil {
		return nil, err
	}
	p := histPrefix(n.name, root)
	var out []HistoryEntry
	err := n.db.iterate(p, func(k, v []byte) error {
		if len(k) != len(p)+8 || len(v) != 40 {
			return fmt.Errorf("%w: history entry of %q", ErrCorrupt, root)
		}
		out = append(out, HistoryEntry{
			Seq:  binary.BigEndian.Uint64(k[len(p):]),
			Ref:  Ref(v[:32]),
			Time: time.Unix(0, int64(binary.BigEndian.Uint64(v[32:]))).UTC(),
		})
		return nil
	})
	return out, err
}

// DropHistory removes the history entries with the given sequence numbers
// (retention). The head's own entry is never removed.
func (n *Namespace) DropHistory(ctx context.Context, root string, seqs []uint64) error {
	if err := n.checkRoot(root); err != nil {
		return err
	}
	n.db.mu.Lock()
	defer n.db.mu.Unlock()
	last, err := n.lastSeq(root)
	if err != nil {
		return err
	}
	for _, s := range seqs {
		if s == last {
			return fmt.Errorf("drop history of %q: entry %d is the head", root, s)
		}
		if err := n.db.pending.Delete(histKey(n.name, root, s)); err != nil {
			return err
		}
	}
	return n.db.flushLocked()
}

// Roots lists the namespace's roots with a head.
func (n *Namespace) Roots(ctx context.Context) ([]string, error) {
	p := headPrefix(n.name)
	var out []string
	err := n.db.iterate(p, func(k, _ []byte) error {
		out = append(out, string(k[len(p):]))
		return nil
	})
	return out, err
}

// SetTag names ref under root; the zero Ref removes the tag.
func (n *Namespace) SetTag(ctx context.Context, root, tag string, ref Ref) error {
	if err := n.checkRoot(root); err != nil {
		return err
	}
	if err := ValidName(tag); err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	key := append(tagPrefix(n.name, root), tag...)
	n.db.mu.Lock()
	defer n.db.mu.Unlock()
	if ref.IsZero() {
		if err := n.db.pending.Delete(key); err != nil {
			return err
		}
	} else {
		if ok, err := n.owns(ref); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("tag %q: %s: %w", tag, ref.Short(), ErrNotFound)
		}
		if err := n.db.pending.Set(key, ref[:]); err != nil {
			return err
		}
	}
	return n.db.flushLocked()
}

// Tags returns the root's tags.
func (n *Namespace) Tags(ctx context.Context, root string) (map[string]Ref, error) {
	if err := n.checkRoot(root); err != nil {
		return nil, err
	}
	p := tagPrefix(n.name, root)
	out := map[string]Ref{}
	err := n.db.iterate(p, func(k, v []byte) error {
		if len(v) != 32 || bytes.IndexByte(k[len(p):], 0) >= 0 {
			return fmt.Errorf("%w: tag record", ErrCorrupt)
		}
		out[string(k[len(p):])] = Ref(v)
		return nil
	})
	return out, err
}

// DeleteRoot removes a root: its head, its history and its tags, if its
// head is still head (else a *StaleError, so that a push that just landed
// is not deleted unseen). What only that root kept becomes garbage for
// the next collection, after the grace period.
func (n *Namespace) DeleteRoot(ctx context.Context, root string, head Ref) error {
	if err := n.checkRoot(root); err != nil {
		return err
	}
	db := n.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failed != nil {
		return db.failed
	}
	v, err := db.getLocked(headKey(n.name, root))
	if errors.Is(err, ErrNotFound) {
		return Errorf(ErrNotFound, "root %q: not found", root)
	}
	if err != nil {
		return err
	}
	if cur := Ref(v); cur != head {
		return &StaleError{Root: root, Old: head, Current: cur}
	}
	shared := db.meta.Shared()
	if shared {
		if err := db.flushLocked(); err != nil { // the condition commits alone
			return err
		}
	}
	if err := db.pending.Delete(headKey(n.name, root)); err != nil {
		return err
	}
	for _, p := range [][]byte{histPrefix(n.name, root), tagPrefix(n.name, root)} {
		if err := db.pending.DeleteRange(p, prefixEnd(p)); err != nil {
			return err
		}
	}
	if shared {
		db.pending.Expect(headKey(n.name, root), head[:])
	}
	return n.staleOnConflict(root, head, db.flushLocked())
}
