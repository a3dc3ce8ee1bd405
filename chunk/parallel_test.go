package chunk

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// sequentialCuts is the end of every chunk a Splitter makes.
func sequentialCuts(t testing.TB, data []byte, p Params) []int64 {
	var out []int64
	for _, c := range splitAll(t, data, p) {
		out = append(out, c.Offset+int64(len(c.Data)))
	}
	return out
}

func parallelCuts(t testing.TB, data []byte, p Params, o ParallelOptions) []int64 {
	t.Helper()
	var out []int64
	next := int64(0)
	err := ParallelCuts(context.Background(), bytes.NewReader(data), int64(len(data)), p, o, func(off, n int64) error {
		if off != next || n <= 0 {
			t.Fatalf("chunk at %d+%d after one that ended at %d", off, n, next)
		}
		next = off + n
		out = append(out, next)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestParallelCutsAreSequential: over random data, random sizes, random
// segment sizes and overlaps (many seams per chunk down to several chunks
// per segment), runs that only cut at Max (zeros, where no segment can
// agree and the stitcher cuts on itself), and edits next to a seam, the
// cuts of ParallelCuts are exactly the sequential ones. Dedup across
// versions depends on that.
func TestParallelCutsAreSequential(t *testing.T) {
	p := Params{Pol: defaultPol, Min: 16 << 10, Max: 256 << 10, AvgBits: 15} // small chunks: many per segment
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 60 {
		n := rng.IntN(6 << 20)
		data := seeded(uint64(trial), n)
		if trial%3 == 0 && n > 0 {
			// A run of zeros: no natural cut for a while.
			at := rng.IntN(n)
			clear(data[at:min(n, at+rng.IntN(2<<20))])
		}
		o := ParallelOptions{
			Workers: 1 + rng.IntN(4),
			Segment: int64(64<<10 + rng.IntN(2<<20)),
			Overlap: int64(1 + rng.IntN(512<<10)),
		}
		want := sequentialCuts(t, data, p)
		got := parallelCuts(t, data, p, o)
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d (%d bytes, %+v): %d cuts, sequential %d; first difference at %s", trial, n, o, len(got), len(want), firstDiff(got, want))
		}
		// An edit just before, at and after a seam changes nothing
		// about the agreement.
		if n > int(o.Segment)+16 {
			seam := int(o.Segment) * (1 + rng.IntN(max(1, n/int(o.Segment)-1)))
			for _, d := range []int{-7, 0, 5} {
				if at := seam + d; at >= 0 && at < n {
					data[at] ^= 0xff
				}
			}
			if got, want := parallelCuts(t, data, p, o), sequentialCuts(t, data, p); !slices.Equal(got, want) {
				t.Fatalf("trial %d after an edit at the seam %d: first difference at %s", trial, seam, firstDiff(got, want))
			}
		}
	}
}

// TestParallelCutsDefaults: the default params and options on 70 MiB (three
// segments) agree with the sequential cut, which TestStability pins.
func TestParallelCutsDefaults(t *testing.T) {
	data := seeded(9, 70<<20)
	if got, want := parallelCuts(t, data, Default(), ParallelOptions{}), sequentialCuts(t, data, Default()); !slices.Equal(got, want) {
		t.Fatalf("first difference at %s", firstDiff(got, want))
	}
}

func firstDiff(a, b []int64) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("cut %d: %d against %d", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("cut %d (one list ends)", min(len(a), len(b)))
}

// BenchmarkParallelCuts: cutting 256 MiB in memory on every core against
// one (go test ./chunk -run XXX -bench ParallelCuts).
func BenchmarkParallelCuts(b *testing.B) {
	data := seeded(4, 256<<20)
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprint("workers=", w), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				err := ParallelCuts(context.Background(), bytes.NewReader(data), int64(len(data)), Default(), ParallelOptions{Workers: w}, func(off, n int64) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("splitter", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		s := NewSplitter(nil, Default())
		buf := make([]byte, 0, Default().Max)
		for b.Loop() {
			s.Reset(bytes.NewReader(data))
			for {
				if _, err := s.Cut(buf); err != nil {
					break
				}
			}
		}
	})
}
