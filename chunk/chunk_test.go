package chunk

import (
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/restic/chunker"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// seeded returns n pseudo-random bytes that are the same on every machine.
func seeded(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

func splitAll(t testing.TB, data []byte, p Params) []Chunk {
	t.Helper()
	var out []Chunk
	err := Split(context.Background(), bytes.NewReader(data), p, func(c Chunk) error {
		c.Data = append([]byte(nil), c.Data...)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStability pins the cut points and sums for seeded data. A change here
// means every existing store would stop deduplicating against new writes:
// it must never happen by accident.
func TestStability(t *testing.T) {
	data := seeded(1, 24<<20)
	var sb strings.Builder
	for _, c := range splitAll(t, data, Default()) {
		fmt.Fprintf(&sb, "%d %d %s\n", c.Offset, len(c.Data), hex.EncodeToString(c.Sum[:8]))
	}
	golden := filepath.Join("testdata", "stability.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := sb.String(); got != string(want) {
		t.Errorf("chunk boundaries changed:\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func TestSplitInvariants(t *testing.T) {
	p := Default()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{7}},
		{"below min", seeded(2, int(p.Min)-1)},
		{"zeros (no natural cut)", make([]byte, 3*int(p.Max)+5)},
		{"random", seeded(3, 9<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := splitAll(t, tt.data, p)
			var joined []byte
			for i, c := range chunks {
				if c.Offset != int64(len(joined)) {
					t.Fatalf("chunk %d offset %d, want %d", i, c.Offset, len(joined))
				}
				last := i == len(chunks)-1
				if len(c.Data) > int(p.Max) || (!last && len(c.Data) < int(p.Min)) || len(c.Data) == 0 {
					t.Errorf("chunk %d length %d outside %d..%d", i, len(c.Data), p.Min, p.Max)
				}
				if c.Sum != Sum(c.Data) {
					t.Errorf("chunk %d: sum does not match data", i)
				}
				joined = append(joined, c.Data...)
			}
			if !bytes.Equal(joined, tt.data) {
				t.Fatalf("chunks do not join to the input (%d vs %d bytes)", len(joined), len(tt.data))
			}
		})
	}
}

// TestInsertShiftsFewChunks is the reason for content-defined chunking: an
// insert in the middle changes the chunks around it and no others.
func TestInsertShiftsFewChunks(t *testing.T) {
	p := Default()
	data := seeded(4, 40<<20)
	edited := append(append(append([]byte(nil), data[:20<<20]...), seeded(5, 100)...), data[20<<20:]...)
	before := map[[32]byte]bool{}
	for _, c := range splitAll(t, data, p) {
		before[c.Sum] = true
	}
	newBytes, newChunks := 0, 0
	for _, c := range splitAll(t, edited, p) {
		if !before[c.Sum] {
			newChunks++
			newBytes += len(c.Data)
		}
	}
	if newChunks > 2 || newBytes > 2*int(p.Max) {
		t.Errorf("100-byte insert made %d new chunks (%d bytes); want at most 2", newChunks, newBytes)
	}
}

func TestParamsValidate(t *testing.T) {
	fresh, err := New()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"default", Default(), true},
		{"random", fresh, true},
		{"zero", Params{}, false},
		{"reducible pol", Params{Pol: 1 << 53, Min: DefaultMin, Max: DefaultMax, AvgBits: 19}, false},
		{"min over max", Params{Pol: defaultPol, Min: 8 << 20, Max: 1 << 20, AvgBits: 19}, false},
		{"max too big", Params{Pol: defaultPol, Min: DefaultMin, Max: 1 << 30, AvgBits: 19}, false},
		{"avg bits", Params{Pol: defaultPol, Min: DefaultMin, Max: DefaultMax, AvgBits: 40}, false},
	}
	for _, tt := range tests {
		if err := tt.p.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate(%v) = %v, want ok=%v", tt.name, tt.p, err, tt.ok)
		}
	}
}

func TestSplitCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Split(ctx, bytes.NewReader(seeded(6, 1<<20)), Default(), func(Chunk) error { return nil })
	if err != context.Canceled {
		t.Fatalf("Split on a cancelled context = %v, want context.Canceled", err)
	}
}

// TestSameCutsAsChunker: the Splitter cuts exactly where restic's own
// Chunker does, for several params and read patterns.
func TestSameCutsAsChunker(t *testing.T) {
	data := seeded(11, 20<<20)
	for _, p := range []Params{Default(), {Pol: defaultPol, Min: 64 << 10, Max: 1 << 20, AvgBits: 16}} {
		var want []int
		c := chunker.New(bytes.NewReader(data), chunker.Pol(p.Pol), chunker.WithBoundaries(uint(p.Min), uint(p.Max)), chunker.WithAverageBits(int(p.AvgBits)))
		buf := make([]byte, 0, p.Max)
		for {
			ch, err := c.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, int(ch.Length))
		}
		// A reader that returns odd-sized pieces must not change the cuts.
		s := NewSplitter(iotest.HalfReader(bytes.NewReader(data)), p)
		var got []int
		for {
			ch, err := s.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, len(ch.Data))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("params %v: cuts %v, chunker.Chunker cuts %v", p, got, want)
		}
	}
}

func TestResetAllocatesNothing(t *testing.T) {
	s := NewSplitter(nil, Default())
	buf := make([]byte, 0, Default().Max)
	small := []byte("a small file")
	r := bytes.NewReader(small)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(small)
		s.Reset(r)
		for {
			if _, err := s.Next(buf); err != nil {
				break
			}
		}
	})
	if allocs > 1 {
		t.Errorf("Reset and Next of a small file: %.0f allocations", allocs)
	}
}
