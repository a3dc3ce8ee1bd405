package chunk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"

	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

const benchSize = 64 << 20

// BenchmarkPlainLoop is the reference: restic/chunker and BLAKE3 with
// nothing of ferry around them. BenchmarkSplit over the same bytes should be
// at least 0.9 of its throughput.
func BenchmarkPlainLoop(b *testing.B) {
	data := seeded(7, benchSize)
	p := Default()
	buf := make([]byte, 0, p.Max)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c := chunker.New(bytes.NewReader(data), chunker.Pol(p.Pol),
			chunker.WithBoundaries(uint(p.Min), uint(p.Max)), chunker.WithAverageBits(int(p.AvgBits)))
		for {
			ch, err := c.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			_ = blake3.Sum256(ch.Data)
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	data := seeded(7, benchSize)
	p := Default()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Split(context.Background(), bytes.NewReader(data), p, func(Chunk) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSplitFiles chunks many files with one worker and with one per
// core, one Splitter per worker, the way scan does: the ratio of the two is
// the multi-core scaling.
func BenchmarkSplitFiles(b *testing.B) {
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) { benchSplitFiles(b, workers) })
	}
}

func benchSplitFiles(b *testing.B, workers int) {
	const files = 32
	data := seeded(8, benchSize)
	per := len(data) / files
	p := Default()
	b.SetBytes(int64(per * files))
	for b.Loop() {
		next := make(chan []byte)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				s := NewSplitter(nil, p)
				buf := make([]byte, 0, p.Max)
				for f := range next {
					s.Reset(bytes.NewReader(f))
					for {
						if _, err := s.Next(buf); err != nil {
							break
						}
					}
				}
			})
		}
		for i := range files {
			next <- data[i*per : (i+1)*per]
		}
		close(next)
		wg.Wait()
	}
}

// BenchmarkChunkSizes reports, for several average sizes, how many chunks a
// GiB makes (metadata cost) and, averaged over 8 positions, how many bytes
// a 100-byte insert into a 64 MiB file makes new (delta cost). It chose
// the defaults.
func BenchmarkChunkSizes(b *testing.B) {
	data := seeded(9, benchSize)
	const positions = 8
	var edits [][]byte
	for k := range positions {
		at := benchSize/positions*k + benchSize/(2*positions)
		edits = append(edits, append(append(append([]byte(nil), data[:at]...), seeded(uint64(10+k), 100)...), data[at:]...))
	}
	for _, c := range []struct {
		min     uint32
		avgBits uint8
		max     uint32
	}{{64 << 10, 17, 2 << 20}, {128 << 10, 18, 2 << 20}, {256 << 10, 19, 4 << 20}, {512 << 10, 20, 8 << 20}} {
		p := Params{Pol: defaultPol, Min: c.min, Max: c.max, AvgBits: c.avgBits}
		b.Run(fmt.Sprintf("min=%dK/avg=2^%d", c.min>>10, c.avgBits), func(b *testing.B) {
			var chunks, delta int
			for b.Loop() {
				seen := map[[32]byte]bool{}
				chunks = 0
				for _, ch := range splitAll(b, data, p) {
					seen[ch.Sum] = true
					chunks++
				}
				delta = 0
				for _, e := range edits {
					for _, ch := range splitAll(b, e, p) {
						if !seen[ch.Sum] {
							delta += len(ch.Data)
						}
					}
				}
			}
			b.ReportMetric(float64(chunks)*float64(1<<30)/benchSize, "chunks/GiB")
			b.ReportMetric(float64(delta)/positions, "insert-delta-B")
		})
	}
}
