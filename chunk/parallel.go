package chunk

import (
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/restic/chunker"
)

// Cutting one large file on several cores. The fingerprint's state after
// a cut is the fresh state (restic/chunker resets it), and the digest
// depends only on the last 64 bytes: so a chunker started anywhere cuts,
// from its first cut that the sequential chunker also makes, exactly as
// the sequential one does. ParallelCuts starts a chunker at the head of
// each segment, on its own core, and stitches: it follows the true cuts
// (from the start of the file, or from a segment it has joined), and as
// soon as one of them is among the next segment's cuts, it follows that
// segment. Where no cut agrees before a segment's cuts run out (a run of
// bytes that never cuts but at Max, say zeros), it cuts on from the last
// true cut itself. The boundaries are identical to a Splitter's, whatever
// the segment size (TestParallelCutsAreSequential).

// ParallelOptions tune ParallelCuts; the zero value is the default.
type ParallelOptions struct {
	// Workers is how many segments are cut at once (default GOMAXPROCS).
	Workers int
	// Segment is the bytes each worker starts a chunker on (default
	// 32 MiB); Overlap how far past its segment it goes on cutting, so
	// that the next segment's cuts can be met (default half of Params.Max).
	Segment, Overlap int64
}

func (o ParallelOptions) withDefaults(p Params) ParallelOptions {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Segment <= 0 {
		o.Segment = 32 << 20
	}
	if o.Overlap <= 0 {
		o.Overlap = int64(p.Max) / 2
	}
	return o
}

// pieceSize is what a cutter reads at a time.
const pieceSize = 1 << 20

// cutter runs one chunker over r from start (as if a chunk began there).
type cutter struct {
	base *chunker.BaseChunker
	r    io.ReaderAt
	buf  []byte
}

func newCutter(r io.ReaderAt, p Params) *cutter {
	base := chunker.NewBase(chunker.Pol(p.Pol),
		chunker.WithBaseBoundaries(uint(p.Min), uint(p.Max)), chunker.WithBaseAverageBits(int(p.AvgBits)))
	return &cutter{base: base, r: r, buf: make([]byte, pieceSize)}
}

// cuts appends to out the end of every chunk a fresh chunker makes from
// start before end, and size itself when end is size (the last chunk).
func (c *cutter) cuts(ctx context.Context, start, end, size int64, out []int64) ([]int64, error) {
	pos, chunkStart := start, start
	for pos < end {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		n := min(int64(len(c.buf)), end-pos)
		if _, err := c.r.ReadAt(c.buf[:n], pos); err != nil && !(errors.Is(err, io.EOF) && pos+n == size) {
			return out, err
		}
		b := c.buf[:n]
		for len(b) > 0 {
			split := c.base.NextSplitPoint(b)
			if split < 0 {
				break
			}
			pos += int64(split)
			b = b[split:]
			out = append(out, pos)
			chunkStart = pos
		}
		pos += int64(len(b))
	}
	if end == size && chunkStart < size {
		out = append(out, size)
	}
	return out, nil
}

// segment is one worker's result: the cuts a chunker started at start
// makes before end.
type segment struct {
	start, end int64
	cuts       []int64
	err        error
	done       chan struct{}
}

// ParallelCuts calls fn(off, n) for every chunk of the size bytes of r,
// in order, with the boundaries a Splitter makes. Memory is a read piece
// and a list of cut offsets per segment in flight.
func ParallelCuts(ctx context.Context, r io.ReaderAt, size int64, p Params, o ParallelOptions, fn func(off, n int64) error) error {
	o = o.withDefaults(p)
	if size <= 0 {
		return nil
	}
	if o.Workers == 1 || size <= o.Segment {
		// One segment: the sequential cut, without the stitching.
		cuts, err := newCutter(r, p).cuts(ctx, 0, size, size, nil)
		if err != nil {
			return err
		}
		last := int64(0)
		for _, c := range cuts {
			if err := fn(last, c-last); err != nil {
				return err
			}
			last = c
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nseg := int((size + o.Segment - 1) / o.Segment)
	segs := make([]*segment, nseg)
	for k := range segs {
		start := int64(k) * o.Segment
		segs[k] = &segment{start: start, end: min(start+o.Segment+o.Overlap, size), done: make(chan struct{})}
	}
	// Workers take segments in order; at most Workers+1 wait to be
	// stitched, which bounds the memory of their cut lists.
	next := make(chan *segment)
	slots := make(chan struct{}, o.Workers+1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range o.Workers {
		wg.Go(func() {
			c := newCutter(r, p)
			fresh := *c.base
			for s := range next {
				*c.base = fresh
				s.cuts, s.err = c.cuts(ctx, s.start, s.end, size, nil)
				close(s.done)
			}
		})
	}
	wg.Go(func() {
		defer close(next)
		for _, s := range segs {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- s:
			case <-ctx.Done():
				return
			}
		}
	})
	wait := func(k int) (*segment, error) {
		s := segs[k]
		select {
		case <-s.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return s, s.err
	}
	release := func(k int) {
		segs[k].cuts = nil
		<-slots
	}

	// The true cuts come from cur (a segment's list, from index i on)
	// while it has them, else from seq, a chunker of our own started at a
	// true cut.
	cur, err := wait(0)
	if err != nil {
		return err
	}
	curK, i := 0, 0
	var seq *cutter
	var seqFresh chunker.BaseChunker
	var seqCuts []int64
	last := int64(0)
	nk := 1 // the next segment to join
	for last < size {
		var c int64
		switch {
		case cur != nil && i < len(cur.cuts):
			c = cur.cuts[i]
			i++
		case cur != nil:
			// The segment's cuts ran out before any agreed with the next
			// one's: cut on from the last true cut.
			release(curK)
			cur = nil
			fallthrough
		default:
			if len(seqCuts) == 0 {
				if seq == nil {
					seq = newCutter(r, p)
					seqFresh = *seq.base
				}
				// A window of at least two chunks' most; the chunk it
				// ends in is cut by the next window, from the last cut.
				*seq.base = seqFresh
				end := min(last+max(o.Segment, 2*int64(p.Max)), size)
				if seqCuts, err = seq.cuts(ctx, last, end, size, seqCuts[:0]); err != nil {
					return err
				}
				if len(seqCuts) == 0 {
					return errors.New("chunk: no cut within twice the largest chunk")
				}
			}
			c, seqCuts = seqCuts[0], seqCuts[1:]
		}
		if err := fn(last, c-last); err != nil {
			return err
		}
		last = c
		// Join the next segment when this cut is one of its own.
		for nk < nseg && c >= segs[nk].start {
			s, err := wait(nk)
			if err != nil {
				return err
			}
			if j, found := slices.BinarySearch(s.cuts, c); found {
				if cur != nil {
					release(curK)
				}
				cur, curK, i = s, nk, j+1
				seqCuts = seqCuts[:0]
				nk++
				continue
			}
			if c >= s.end || (len(s.cuts) > 0 && c > s.cuts[len(s.cuts)-1]) {
				// Past all it could agree on: it is no use any more.
				release(nk)
				nk++
				continue
			}
			break
		}
	}
	if cur != nil {
		release(curK)
	}
	return nil
}
