package scan

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"github.com/zeebo/blake3"
)

func (d *dirNode) add(e index.Entry) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.entries = append(d.entries, e)
	d.skip = append(d.skip, false)
	return len(d.entries) - 1
}

func (d *dirNode) setRef(slot int, ref cas.Ref) {
	d.mu.Lock()
	d.entries[slot].Ref = ref
	d.mu.Unlock()
}

// childDone counts one pending child of d as finished, and finishes d
// when it was the last.
func (s *scanner) childDone(d *dirNode) error {
	d.mu.Lock()
	d.pending--
	last := d.pending == 0
	d.mu.Unlock()
	if !last {
		return nil
	}
	entries := d.entries
	if slices.Contains(d.skip, true) {
		entries = make([]index.Entry, 0, len(d.entries))
		for i, e := range d.entries {
			if !d.skip[i] {
				entries = append(entries, e)
			}
		}
	}
	fp := fingerprint(entries)
	var ref cas.Ref
	if d.hasTree && d.tree.Fingerprint == fp {
		// The same entries as a scan whose objects are at Dest: the same
		// tree, stored already.
		ref = d.tree.Ref
	} else {
		t, err := index.NewTree(entries)
		if err != nil {
			return fmt.Errorf("scan %q: %w", d.path, err)
		}
		b := index.EncodeTree(t)
		if len(b) > cas.MaxBlobSize {
			return fmt.Errorf("scan %q: directory has too many entries (%d) for one tree object", d.path, len(entries))
		}
		ref = cas.Sum(b)
		if err := s.putObject(ref, b); err != nil {
			return err
		}
		if err := s.record(func(u *state.Update) error {
			return u.PutTree(d.path, state.TreeStat{Fingerprint: fp, Ref: ref})
		}); err != nil {
			return err
		}
	}
	d.ref = ref
	if d.parent == nil {
		close(d.done)
		return nil
	}
	d.parent.mu.Lock()
	d.parent.entries[d.slot].Ref = ref
	d.parent.entries[d.slot].Size = d.size.Load()
	d.parent.mu.Unlock()
	d.parent.size.Add(d.size.Load())
	return s.childDone(d.parent)
}

// fingerprintVersion names the tree encoding that fingerprint stands for:
// bump it when index encodes trees differently, so that no cached ref of
// the old encoding is reused.
const fingerprintVersion = 1

// fingerprint hashes exactly what index.NewTree encodes, in the order it
// encodes it (entries come from a sorted listing), at a fraction of the
// cost of encoding: equal fingerprints mean equal trees.
func fingerprint(entries []index.Entry) [32]byte {
	h := blake3.New()
	bp := fingerprintBufs.Get().(*[]byte)
	defer fingerprintBufs.Put(bp)
	b := (*bp)[:0]
	b = append(b, "ferry tree fingerprint"...)
	b = binary.LittleEndian.AppendUint32(b, fingerprintVersion)
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(len(e.Name)))
		b = append(b, e.Name...)
		b = append(b, byte(e.Kind))
		b = binary.LittleEndian.AppendUint32(b, uint32(e.Mode))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.MTime))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Size))
		b = append(b, e.Ref[:]...)
		b = binary.AppendUvarint(b, uint64(len(e.Target)))
		b = append(b, e.Target...)
		if len(b) > 32<<10 {
			h.Write(b)
			b = b[:0]
		}
	}
	h.Write(b)
	*bp = b
	var out [32]byte
	h.Sum(out[:0])
	return out
}

var fingerprintBufs = sync.Pool{New: func() any { b := make([]byte, 0, 40<<10); return &b }}

// putObject stores an object in Dest (when missing) and in the cache.
func (s *scanner) putObject(ref cas.Ref, b []byte) error {
	if s.opts.Objects != nil {
		if err := s.opts.Objects.Put(s.ctx, ref, b); err != nil {
			return fmt.Errorf("scan: cache: %w", err)
		}
	}
	if s.dst == nil {
		return nil
	}
	if !s.opts.PutObjects {
		if has, err := s.has(ref); err != nil || has {
			return err
		}
	}
	if err := s.dst.Put(s.ctx, ref, b); err != nil {
		return fmt.Errorf("scan: put object %s: %w", ref.Short(), err)
	}
	atomic.AddInt64(&s.res.ObjectsSent, 1)
	return nil
}
