package cas

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Servers that share one Meta (a cluster) learn what the others did from
// the Meta itself, which every database has, rather than from a channel
// that some do not (CockroachDB has no LISTEN): each server polls a few
// keys under 'C' every ClusterPoll.
//
//	C e <time:8> <server:8>   a head moved: ns \x00 root \x00 ref
//	C s <server:8>            a server's heartbeat: time:8, gc epoch joined:8
//	C g                       the collection lease (JSON clusterLease)
//	C p <epoch:8> <ref>       a blob a server reported present during collection epoch
//
// Head events are keyed by the writer's clock: a poller reads the last
// eventWindow of them by its own clock and skips those it has seen, so
// servers whose clocks agree within eventWindow lose no event.

const (
	// ClusterPoll is how often a server polls the cluster's keys.
	ClusterPoll = 200 * time.Millisecond
	// eventWindow is how far back a poll reads head events.
	eventWindow = time.Minute
	// eventKeep is how long head events stay before a poller prunes them.
	eventKeep = 10 * time.Minute
	// heartbeatFresh: a server whose heartbeat is older is taken as dead
	// by a collector waiting for every server to join its collection.
	heartbeatFresh = 15 * time.Second
	// pollStale: a server that has not polled for this long stops
	// answering Has and puts, since a collection may have begun that it
	// has not joined. It is under heartbeatFresh, so a server the
	// collector did not wait for has stopped answering already.
	pollStale = 10 * time.Second
	// leaseTTL is how long a collection lease lasts unless renewed.
	leaseTTL = 30 * time.Second
)

// clusterNow is the clock of liveness (heartbeats, polls, leases) and of
// head events: the wall clock, since servers compare it across machines,
// whatever clock a store's records are stamped with.
var clusterNow = time.Now

// ErrGCBusy: another server of the cluster holds the collection lease.
var ErrGCBusy = errors.New("another server is collecting garbage")

// ErrClusterStale: this server lost touch with the cluster's database for
// too long to answer safely; the client should try again.
var ErrClusterStale = errors.New("the server lost touch with the cluster's database")

func clusterEventKey(t time.Time, id [8]byte) []byte {
	k := binary.BigEndian.AppendUint64([]byte("Ce"), uint64(t.UnixNano()))
	return append(k, id[:]...)
}

func heartbeatKey(id [8]byte) []byte { return append([]byte("Cs"), id[:]...) }

var leaseKey = []byte("Cg")

func protPrefix(epoch uint64) []byte { return binary.BigEndian.AppendUint64([]byte("Cp"), epoch) }

func protKey(epoch uint64, r Ref) []byte { return append(protPrefix(epoch), r[:]...) }

// clusterLease is the collection lease. Epoch is its fencing token: it
// grows with every lease taken, and a collector's deletions commit only
// while the lease still holds its epoch.
type clusterLease struct {
	Holder  string    `json:"holder"`
	Epoch   uint64    `json:"epoch"`
	Expires time.Time `json:"expires"`
}

func newServerID() [8]byte {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return id
}

// ClusterHooks is how a server acts on what other servers did.
type ClusterHooks struct {
	// Head is called for a head moved through another server.
	Head func(ns, root string, ref Ref)
	// Pause holds the server's head moves while it joins a collection
	// (as gc's Pause does for its own).
	Pause func() (resume func())
	// Ready is called after the first poll that succeeded: only then may
	// the server answer clients, since a collection may be under way.
	Ready func()
}

// RunCluster polls the cluster's keys until ctx is done: it reports other
// servers' head moves, joins and leaves their collections, and keeps this
// server's heartbeat. A DB whose Meta is not shared returns at once.
func (db *DB) RunCluster(ctx context.Context, h ClusterHooks) error {
	if !db.meta.Shared() {
		return nil
	}
	db.mu.Lock()
	db.cluster.running = true
	db.mu.Unlock()
	seen := map[string]time.Time{}
	lastPrune := time.Time{}
	t := time.NewTicker(ClusterPoll)
	defer t.Stop()
	ready := h.Ready
	for {
		if err := db.pollCluster(ctx, h, seen, &lastPrune); err != nil && ctx.Err() == nil {
			db.opts.Logger.Warn("cluster poll failed", "err", err)
		} else if err == nil && ready != nil {
			ready()
			ready = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (db *DB) pollCluster(ctx context.Context, h ClusterHooks, seen map[string]time.Time, lastPrune *time.Time) error {
	now := clusterNow()
	from := binary.BigEndian.AppendUint64([]byte("Ce"), uint64(now.Add(-eventWindow).UnixNano()))
	it, err := db.meta.Iter(ctx, from, []byte("Cf"))
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if _, dup := seen[string(k)]; dup || len(k) != 18 {
			continue
		}
		seen[string(k)] = now
		if bytes.Equal(k[10:], db.cluster.id[:]) || h.Head == nil {
			continue
		}
		parts := bytes.SplitN(it.Value(), []byte{0}, 3)
		if len(parts) != 3 || len(parts[2]) != len(Ref{}) {
			continue
		}
		h.Head(string(parts[0]), string(parts[1]), Ref(parts[2]))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	for k, at := range seen {
		if now.Sub(at) > 2*eventWindow {
			delete(seen, k)
		}
	}
	if now.Sub(*lastPrune) > eventKeep/10 {
		*lastPrune = now
		old := binary.BigEndian.AppendUint64([]byte("Ce"), uint64(now.Add(-eventKeep).UnixNano()))
		w := &MetaWrites{Ranges: [][2][]byte{{[]byte("Ce"), old}}}
		if err := db.meta.Commit(ctx, w, false); err != nil {
			return err
		}
	}

	lease, _, err := db.readLease(ctx)
	if err != nil {
		return err
	}
	active := lease != nil && lease.Expires.After(now)
	db.mu.RLock()
	joined, mine := db.cluster.joined, db.cluster.lease != nil
	db.mu.RUnlock()
	switch {
	case mine:
		// This server collects: BeginClusterGC joined, and its end leaves.
	case active && lease.Epoch != joined:
		resume := func() {}
		if h.Pause != nil {
			resume = h.Pause()
		}
		err := db.joinGC(lease.Epoch, nil)
		resume()
		if err != nil {
			return err
		}
	case !active && joined != 0:
		db.leaveGC()
	}
	db.mu.RLock()
	joined = db.cluster.joined
	db.mu.RUnlock()
	hb := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	hb = binary.BigEndian.AppendUint64(hb, joined)
	if err := db.meta.Commit(ctx, &MetaWrites{Keys: map[string][]byte{string(heartbeatKey(db.cluster.id)): hb}}, false); err != nil {
		return err
	}
	db.mu.Lock()
	db.cluster.polled = now
	db.mu.Unlock()
	return nil
}

// clusterState is a DB's part in its cluster.
type clusterState struct {
	id      [8]byte
	running bool      // RunCluster polls
	polled  time.Time // the last poll that succeeded
	// joined is the epoch of the collection this server takes part in
	// (0: none): while it is set, blobs reported present are protected in
	// the Meta, and every put writes its bytes anew.
	joined uint64
	// lease is the collection lease this server holds, as committed.
	lease []byte
	// collecting is held by this server's collection from its lease to
	// its end.
	collecting sync.Mutex
}

// clusterFreshLocked refuses to answer when the server has lost touch
// with the cluster. The caller holds db.mu.
func (db *DB) clusterFreshLocked() error {
	c := &db.cluster
	if !c.running || clusterNow().Sub(c.polled) < pollStale {
		return nil
	}
	if c.polled.IsZero() {
		return Errorf(ErrClusterStale, "%w: it has not reached the database yet", ErrClusterStale)
	}
	return Errorf(ErrClusterStale, "%w (last poll %s ago)", ErrClusterStale, clusterNow().Sub(c.polled).Round(time.Second))
}

// joinGC makes this server take part in collection epoch: what it wrote
// before is made durable first (a put that relied on a blob stored
// already is then an ownership the collector sees), then the local
// protection starts and the commit epoch moves, so a commit checked
// before checks again. The caller pauses commits.
func (db *DB) joinGC(epoch uint64, lease []byte) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.flushLocked(); err != nil {
		return err
	}
	db.cluster.joined, db.cluster.lease = epoch, lease
	db.gcActive, db.protected = true, RefSet{}
	db.gcEpoch++
	return nil
}

func (db *DB) leaveGC() {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.cluster.joined = 0
	db.gcActive, db.protected = false, nil
}

func (db *DB) readLease(ctx context.Context) (*clusterLease, []byte, error) {
	v, err := db.meta.Get(ctx, leaseKey)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var l clusterLease
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, nil, fmt.Errorf("%w: collection lease: %v", ErrCorrupt, err)
	}
	return &l, v, nil
}

// protectShared records, in the Meta, that refs were reported present
// during this server's collection epoch, before the answer goes out: the
// collector spares them, and a deletion that raced ahead shows when the
// caller looks again. The caller holds db.mu shared or not at all.
func (db *DB) protectShared(epoch uint64, refs []Ref) error {
	if len(refs) == 0 {
		return nil
	}
	w := &MetaWrites{Keys: make(map[string][]byte, len(refs))}
	for _, r := range refs {
		w.Keys[string(protKey(epoch, r))] = []byte{}
	}
	return db.meta.Commit(context.Background(), w, true)
}

// BeginClusterGC takes the cluster's collection lease, joins this server
// to its epoch (under pause, as a single server's collection begins), and
// waits until every server with a fresh heartbeat has joined too: from
// then on, no server answers Has or stores a blob without the protection
// the sweep respects. The lease is renewed until end is called; if a
// renewal fails (the lease was taken over, or the database is out of
// reach), ctx's collection is cancelled by cancel. end releases the lease.
func (db *DB) BeginClusterGC(ctx context.Context, pause func() (resume func()), cancel func()) (end func(), err error) {
	// One collection at a time on this server too: a second one waits.
	db.cluster.collecting.Lock()
	defer func() {
		if err != nil {
			db.cluster.collecting.Unlock()
		}
	}()
	now := clusterNow()
	old, oldRaw, err := db.readLease(ctx)
	if err != nil {
		return nil, err
	}
	me := hex.EncodeToString(db.cluster.id[:])
	if old != nil && old.Expires.After(now) && old.Holder != me {
		return nil, Errorf(ErrGCBusy, "%w (server %s, lease until %s)", ErrGCBusy, old.Holder, old.Expires.UTC().Format(time.RFC3339))
	}
	l := clusterLease{Holder: me, Epoch: 1, Expires: now.Add(leaseTTL)}
	if old != nil {
		l.Epoch = old.Epoch + 1
	}
	raw, _ := json.Marshal(l)
	w := &MetaWrites{Keys: map[string][]byte{string(leaseKey): raw}, Conds: map[string][]byte{string(leaseKey): oldRaw}}
	if err := db.meta.Commit(ctx, w, true); errors.Is(err, ErrConflict) {
		return nil, Errorf(ErrGCBusy, "%w (it took the lease first)", ErrGCBusy)
	} else if err != nil {
		return nil, err
	}
	resume := func() {}
	if pause != nil {
		resume = pause()
	}
	err = db.joinGC(l.Epoch, raw)
	resume()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if err := db.renewLease(ctx, l); err != nil {
				db.opts.Logger.Error("collection lease lost: stopping the collection", "err", err)
				cancel()
				return
			}
		}
	}()
	release := func() {
		close(stop)
		<-done
		db.mu.Lock()
		cur := db.cluster.lease
		db.cluster.lease = nil
		db.mu.Unlock()
		rel := l
		rel.Expires = time.Time{}
		b, _ := json.Marshal(rel)
		w := &MetaWrites{Keys: map[string][]byte{string(leaseKey): b}, Conds: map[string][]byte{string(leaseKey): cur},
			Ranges: [][2][]byte{{protPrefix(l.Epoch), protPrefix(l.Epoch + 1)}}}
		if err := db.meta.Commit(context.Background(), w, true); err != nil {
			db.opts.Logger.Warn("releasing the collection lease", "err", err)
		}
		db.leaveGC()
	}
	if err == nil {
		err = db.awaitJoined(ctx, l.Epoch)
	}
	if err != nil {
		release()
		return nil, err
	}
	return func() { release(); db.cluster.collecting.Unlock() }, nil
}

// renewLease extends the lease this server holds, if it still does.
func (db *DB) renewLease(ctx context.Context, l clusterLease) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	l.Expires = clusterNow().Add(leaseTTL)
	raw, _ := json.Marshal(l)
	w := &MetaWrites{Keys: map[string][]byte{string(leaseKey): raw}, Conds: map[string][]byte{string(leaseKey): db.cluster.lease}}
	if err := db.meta.Commit(ctx, w, true); err != nil {
		return err
	}
	db.cluster.lease = raw
	return nil
}

// awaitJoined waits until every other server whose heartbeat is fresh
// has joined epoch: at most two heartbeat periods.
func (db *DB) awaitJoined(ctx context.Context, epoch uint64) error {
	deadline := clusterNow().Add(2 * heartbeatFresh)
	for {
		var waiting []string
		now := clusterNow()
		err := iterMeta(db.meta, []byte("Cs"), func(k, v []byte) error {
			if len(k) != 10 || len(v) != 16 || bytes.Equal(k[2:], db.cluster.id[:]) {
				return nil
			}
			at := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			if now.Sub(at) < heartbeatFresh && binary.BigEndian.Uint64(v[8:]) != epoch {
				waiting = append(waiting, hex.EncodeToString(k[2:]))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(waiting) == 0 {
			return nil
		}
		if now.After(deadline) {
			return fmt.Errorf("cas: servers %v did not join the collection", waiting)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(ClusterPoll / 2):
		}
	}
}
