package transport

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ferry-sync/ferry/cas"
)

// settled remembers, per namespace, the blobs that puts stored (or found
// stored) since the namespace's last commit, with their raw lengths. The
// commit check that follows a push asks the store about every chunk of
// every new file; for a first push of many small files those were the
// server's most expensive lookups (present keys deep in Pebble's
// memtables), and the puts had just answered them. The record is per
// namespace, not per connection, because a client spreads its puts over
// several connections and commits on the first.
//
// It is sound only while nothing a namespace owned has gone: every entry
// is stamped with the store's Removals counter read before its put, and
// the whole record is dropped when the counter moves. Only a store no
// other process writes keeps one.
type settled struct {
	total atomic.Int64 // entries held across namespaces
	mu    sync.Mutex
	byNS  map[string]*settledSet
}

type settledSet struct {
	gen  uint64 // the store's Removals when the first entry was added
	refs []settledRef
}

// settledRef keeps the first 128 bits of a ref: finding two blobs whose
// refs share them takes 2^64 hashes, and a client that did would only
// have its own namespace's commit trust a chunk it never put.
type settledRef struct {
	ref    [16]byte
	rawLen uint32
}

// Bounds on the memory the record takes: 20 bytes an entry, 40 MiB for
// the chunks and file objects of a million small files.
const (
	maxSettledPerNS = 1 << 21
	maxSettledTotal = 1 << 22
)

// add records that a put stored ref (rawLen bytes) for ns, with gen the
// store's Removals counter read before the put and now the counter after.
func (s *settled) add(ns string, ref cas.Ref, rawLen int, gen, now uint64) {
	if gen != now || s.total.Load() >= maxSettledTotal {
		return // something went meanwhile; the check will ask the store
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byNS == nil {
		s.byNS = map[string]*settledSet{}
	}
	set := s.byNS[ns]
	switch {
	case set == nil || set.gen < gen:
		if set != nil {
			s.total.Add(-int64(len(set.refs)))
		}
		set = &settledSet{gen: gen}
		s.byNS[ns] = set
	case set.gen > gen:
		return
	}
	if len(set.refs) < maxSettledPerNS {
		set.refs = append(set.refs, settledRef{[16]byte(ref[:16]), uint32(rawLen)})
		s.total.Add(1)
	}
}

// take hands ns's record to a commit check, sorted, if the store's
// Removals counter is still now; the namespace starts a new one. The
// check gives it back with restore when the commit did not happen, so
// that the client's retry is checked as cheaply.
func (s *settled) take(ns string, now uint64) *settledSet {
	s.mu.Lock()
	set := s.byNS[ns]
	delete(s.byNS, ns)
	s.mu.Unlock()
	if set == nil {
		return nil
	}
	s.total.Add(-int64(len(set.refs)))
	if set.gen != now {
		return nil
	}
	slices.SortFunc(set.refs, func(a, b settledRef) int { return bytes.Compare(a.ref[:], b.ref[:]) })
	return set
}

// restore gives back a set take handed out, merged with what was added
// since, unless the counter moved.
func (s *settled) restore(ns string, set *settledSet, now uint64) {
	if set == nil || set.gen != now {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.byNS[ns]
	switch {
	case cur == nil:
	case cur.gen != set.gen:
		return
	case len(set.refs)+len(cur.refs) > maxSettledPerNS:
		return
	default:
		set.refs = append(set.refs, cur.refs...)
		s.total.Add(-int64(len(cur.refs)))
	}
	s.byNS[ns] = set
	s.total.Add(int64(len(set.refs)))
}

// size reports the raw length a put recorded for ref.
func (set *settledSet) size(ref cas.Ref) (int64, bool) {
	if set == nil {
		return 0, false
	}
	i, ok := slices.BinarySearchFunc(set.refs, ref, func(e settledRef, r cas.Ref) int { return bytes.Compare(e.ref[:], r[:16]) })
	if !ok {
		return 0, false
	}
	return int64(set.refs[i].rawLen), true
}
