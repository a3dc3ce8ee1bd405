package chunk

import (
	"context"
	"errors"
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
// per goroutine, reused through Reset, keeps its 512 KiB read buffer warm.
type Splitter struct {
	c      *chunker.Chunker
	p      Params
	offset int64
}

// NewSplitter returns a Splitter reading r. p must be valid.
func NewSplitter(r io.Reader, p Params) *Splitter {
	s := &Splitter{p: p}
	// restic/chunker's option type is unexported, so the options are
	// spelled out here and in Reset.
	s.c = chunker.New(r, chunker.Pol(p.Pol),
		chunker.WithBoundaries(uint(p.Min), uint(p.Max)), chunker.WithAverageBits(int(p.AvgBits)))
	return s
}

// Reset makes s read r from its start, keeping its buffers.
func (s *Splitter) Reset(r io.Reader) {
	s.c.Reset(r, chunker.Pol(s.p.Pol),
		chunker.WithBoundaries(uint(s.p.Min), uint(s.p.Max)), chunker.WithAverageBits(int(s.p.AvgBits)))
	s.offset = 0
}

// Next returns the next chunk, cut into buf (which should have capacity
// Params.Max to avoid growing), and its sum. It returns io.EOF after the
// last chunk; an empty stream has no chunks.
func (s *Splitter) Next(buf []byte) (Chunk, error) {
	c, err := s.c.Next(buf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Chunk{}, io.EOF
		}
		return Chunk{}, err
	}
	ch := Chunk{Offset: s.offset, Data: c.Data, Sum: blake3.Sum256(c.Data)}
	s.offset += int64(len(c.Data))
	return ch, nil
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
