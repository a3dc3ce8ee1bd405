package transport

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// putRaw sends one blob on a put stream of its own and returns the
// server's reply, byte for byte, and the time from the end of the upload
// to the reply.
func putRaw(t *testing.T, c *Client, data []byte) ([]byte, time.Duration) {
	t.Helper()
	ctx := context.Background()
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frame := append([]byte{kindPut}, AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum(data), RawLen: uint32(len(data)), StoredLen: uint32(len(data))})...)
	if _, err := st.Write(append(frame, data...)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st.Close()
	reply, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	return reply, time.Since(start)
}

// TestNoExistenceOracle (C6): a tenant uploading candidate bytes learns
// nothing of another namespace. Blobs another namespace stores and blobs
// stored nowhere get byte-identical replies, and a put of either costs the
// same (the timing distributions are compared with the two-sample
// Kolmogorov-Smirnov statistic, under a generous bound for a noisy shared
// machine); the candidate namespace's usage grows by the same amount.
func TestNoExistenceOracle(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	victim := s.dial(t, "victim", s.token(t, "victim", PermWrite))
	attacker := s.dial(t, "attacker", s.token(t, "attacker", PermWrite))
	const n, size = 40, 100 << 10 // a small file: one chunk is the whole file
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func() []byte {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var present [][]byte
	for range n {
		b := blob()
		if err := victim.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
		present = append(present, b)
	}
	if err := victim.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var replies [][]byte
	var tPresent, tAbsent []time.Duration
	usage := func() int64 {
		used, _, err := attacker.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return used
	}
	var grewPresent, grewAbsent int64
	for i := range n {
		// Alternate, so that drift in the machine's load hits both.
		before := usage()
		r, d := putRaw(t, attacker, present[i])
		grewPresent += usage() - before
		replies = append(replies, r)
		tPresent = append(tPresent, d)
		before = usage()
		r, d = putRaw(t, attacker, blob())
		grewAbsent += usage() - before
		replies = append(replies, r)
		tAbsent = append(tAbsent, d)
	}
	for _, r := range replies[1:] {
		if !bytes.Equal(r, replies[0]) {
			t.Fatalf("replies differ: %x and %x", replies[0], r)
		}
	}
	if grewPresent != grewAbsent {
		t.Errorf("usage grew by %d for blobs another namespace stores, %d for new ones", grewPresent, grewAbsent)
	}
	d := ksStatistic(tPresent, tAbsent)
	mp, ma := median(tPresent), median(tAbsent)
	t.Logf("put of a blob another namespace stores: median %v; of a new blob: median %v; KS D = %.2f over %d each", mp, ma, d, n)
	// Before the equalizing write the difference was an fsync of the pack:
	// D near 1. 0.5 is generous for a shared machine.
	if d > 0.5 {
		t.Errorf("the timing of a put tells another namespace's blobs from new ones: KS D = %.2f (medians %v vs %v)", d, mp, ma)
	}
	// And Has answers for the namespace only.
	has, err := attacker.Has(ctx, []cas.Ref{cas.Sum(blob())})
	if err != nil || has[0] {
		t.Fatalf("Has of an unknown blob = %v, %v", has, err)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// ksStatistic is the two-sample Kolmogorov-Smirnov D: the largest gap
// between the two empirical distribution functions.
func ksStatistic(a, b []time.Duration) float64 {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Slice(a, func(i, j int) bool { return a[i] < a[j] })
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	var i, j int
	var d float64
	for i < len(a) && j < len(b) {
		if a[i] <= b[j] {
			i++
		} else {
			j++
		}
		gap := float64(i)/float64(len(a)) - float64(j)/float64(len(b))
		d = max(d, gap, -gap)
	}
	return d
}
