package cas

import (
	"hash/maphash"
	"math/bits"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// keyFilter is a blocked Bloom filter over every key of a Pebble Meta: it
// answers "certainly absent" for most keys that are not there, without
// Pebble. Most of a first push's lookups are for keys that do not exist
// yet (is this blob stored? does this namespace own it?), and Pebble
// answers those only after seeking every memtable's skiplist and every
// level's filter; for 100,000 small files that was 65% of the server's
// CPU (docs/ARCHITECTURE.md, "Many small files").
//
// Each key sets 7 bits within one 512-bit block, so a lookup touches one
// cache line. Bits are only ever set: a deleted key stays "maybe", which
// costs a Pebble lookup and is never wrong. Adds and lookups may run
// concurrently (the words are atomic).
type keyFilter struct {
	words  []atomic.Uint64 // blocks of 8 words
	blocks uint64
	seed   maphash.Seed
	cap    int64 // keys it was sized for
	added  atomic.Int64
}

const (
	filterBitsPerKey = 16
	filterBlockWords = 8
	filterMinKeys    = 1 << 16
)

func newKeyFilter(keys int64) *keyFilter {
	keys = max(keys, filterMinKeys)
	blocks := uint64(keys*filterBitsPerKey/(64*filterBlockWords)) + 1
	return &keyFilter{
		words:  make([]atomic.Uint64, blocks*filterBlockWords),
		blocks: blocks,
		seed:   maphash.MakeSeed(),
		cap:    keys,
	}
}

// locate gives the key's block and the 63 bits that choose its 7 probes.
func (f *keyFilter) locate(key []byte) (block uint64, g uint64) {
	h := maphash.Bytes(f.seed, key)
	block, _ = bits.Mul64(h, f.blocks) // h scaled to [0, blocks)
	return block * filterBlockWords, bits.RotateLeft64(h, 29) * 0x9E3779B97F4A7C15
}

func (f *keyFilter) add(key []byte) {
	base, g := f.locate(key)
	for range 7 {
		p := g & 511
		f.words[base+p>>6].Or(1 << (p & 63))
		g >>= 9
	}
	f.added.Add(1)
}

// mayContain reports false only for a key never added.
func (f *keyFilter) mayContain(key []byte) bool {
	base, g := f.locate(key)
	for range 7 {
		p := g & 511
		if f.words[base+p>>6].Load()&(1<<(p&63)) == 0 {
			return false
		}
		g >>= 9
	}
	return true
}

// full reports whether more keys were added than it was sized for: its
// false positives rise from there, and a larger one should be built.
func (f *keyFilter) full() bool { return f.added.Load() > f.cap }

// addKeyLocked records a key about to be committed in the filter in use, f,
// and in the one being built. Both happen before the batch applies, so no
// reader finds the key in Pebble and not in the filter.
func (m *pebbleMeta) addKeyLocked(f *keyFilter, key []byte) {
	if f != nil {
		f.add(key)
	}
	if m.building != nil {
		m.building.add(key)
	}
}

// startBuildLocked starts building a filter of every key, sized for what
// Pebble holds (or, when one is full, four times what it holds), unless a
// build is under way. The filter in use, if any, stays in use until the
// new one is complete.
func (m *pebbleMeta) startBuildLocked() {
	if m.building != nil {
		return
	}
	select {
	case <-m.stop:
		return
	default:
	}
	keys := int64(m.pdb.Metrics().DiskSpaceUsage() / 64)
	if f := m.filter.Load(); f != nil {
		keys = max(keys, 4*f.added.Load())
	}
	m.building = newKeyFilter(keys)
	// The iterator is made under mu: what commits before it, it sees;
	// what commits after, addKeyLocked adds to the new filter.
	it, err := m.pdb.NewIter(nil)
	if err != nil {
		m.building = nil
		m.log.Warn("pebble: key filter not built", "err", err)
		return
	}
	m.builds.Add(1)
	go m.build(m.building, it)
}

// build adds every key it iterates to f, and puts f in use when it has
// seen them all. A filter that missed a key would answer "absent" for a
// key that is there, so any failure (a damaged table, a close) leaves the
// filter in use as it was.
func (m *pebbleMeta) build(f *keyFilter, it *pebble.Iterator) {
	defer m.builds.Done()
	n, ok := 0, true
	for valid := it.First(); valid; valid = it.Next() {
		f.add(it.Key())
		if n++; n%4096 == 0 {
			select {
			case <-m.stop:
				ok = false
			default:
			}
			if !ok {
				break
			}
		}
	}
	if err := it.Close(); err != nil {
		m.log.Warn("pebble: key filter not built", "err", pebbleErr(err))
		ok = false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.building = nil
	if ok {
		m.filter.Store(f)
		if f.full() {
			m.startBuildLocked()
		}
	}
}
