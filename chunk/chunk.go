package chunk

import (
	"context"
	"io"

	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

// Sum is the BLAKE3-256 digest of b: the name of a chunk.
func Sum(b []byte) [32]byte { return blake3.Sum256(b) }

// A Chunk is one cut of a stream. Data aliases the buffer passed to Next and
// is valid until that buffer is reused.
type Chunk struct {
	Offset int64
	Data   []byte
	Sum    [32]byte
}

// Splitter cuts one stream. It is not safe for concurrent use; one Splitter
// per goroutine, reused through Reset, keeps its read buffer and the
// fingerprint tables: resetting it allocates nothing, so a folder of many
// small files costs no more than their bytes.
//
// It drives restic/chunker's BaseChunker over its own buffer, the same cut
// as chunker.Chunker (TestStability and TestSameCutsAsChunker pin that).
type Splitter struct {
	base   *chunker.BaseChunker
	fresh  chunker.BaseChunker // base as new: Reset copies it back
	p      Params
	r      io.Reader
	rbuf   []byte
	rpos   int
	rlen   int
	eof    bool
	offset int64
}

// readSize is how much the Splitter reads at a time.
const readSize = 512 << 10

// NewSplitter returns a Splitter reading r. p must be valid.
func NewSplitter(r io.Reader, p Params) *Splitter {
	base := chunker.NewBase(chunker.Pol(p.Pol),
		chunker.WithBaseBoundaries(uint(p.Min), uint(p.Max)), chunker.WithBaseAverageBits(int(p.AvgBits)))
	return &Splitter{base: base, fresh: *base, p: p, r: r, rbuf: make([]byte, readSize)}
}

// Reset makes s read r from its start, keeping its buffers. (BaseChunker's
// own Reset allocates a new chunker each time; a copy of the fresh one
// does not.)
func (s *Splitter) Reset(r io.Reader) {
	*s.base = s.fresh
	s.r, s.rpos, s.rlen, s.eof, s.offset = r, 0, 0, false, 0
}

// Next returns the next chunk, cut into buf (which should have capacity
// Params.Max to avoid growing), and its sum. It returns io.EOF after the
// last chunk; an empty stream has no chunks.
func (s *Splitter) Next(buf []byte) (Chunk, error) {
	c, err := s.Cut(buf)
	if err == nil {
		c.Sum = blake3.Sum256(c.Data)
	}
	return c, err
}

// Cut is Next without the sum (Chunk.Sum is zero), for callers that hash
// on another goroutine: cutting is sequential, hashing need not be.
func (s *Splitter) Cut(buf []byte) (Chunk, error) {
	buf = buf[:0]
	for {
		if s.rpos == s.rlen {
			if s.eof {
				if len(buf) == 0 {
					return Chunk{}, io.EOF
				}
				return s.emit(buf), nil
			}
			n, err := io.ReadFull(s.r, s.rbuf)
			switch {
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				s.eof = true
			case err != nil:
				return Chunk{}, err
			}
			s.rpos, s.rlen = 0, n
			continue
		}
		split := s.base.NextSplitPoint(s.rbuf[s.rpos:s.rlen])
		if split < 0 {
			buf = append(buf, s.rbuf[s.rpos:s.rlen]...)
			s.rpos = s.rlen
			continue
		}
		buf = append(buf, s.rbuf[s.rpos:s.rpos+split]...)
		s.rpos += split
		return s.emit(buf), nil
	}
}

func (s *Splitter) emit(data []byte) Chunk {
	c := Chunk{Offset: s.offset, Data: data}
	s.offset += int64(len(data))
	return c
}

// Offset is how many bytes the chunks returned so far cover.
func (s *Splitter) Offset() int64 { return s.offset }

// Split cuts all of r, calling fn for each chunk in order. The chunk's Data
// is only valid during the call. It checks ctx between chunks.
func Split(ctx context.Context, r io.Reader, p Params, fn func(Chunk) error) error {
	s := NewSplitter(r, p)
	buf := make([]byte, 0, p.Max)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := s.Next(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
	}
}
