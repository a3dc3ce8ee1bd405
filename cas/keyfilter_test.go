package cas

import (
	"encoding/binary"
	"testing"
)

// TestKeyFilter: every key added is "maybe" (no false negatives, ever),
// and at its capacity fewer than 1% of keys never added are.
func TestKeyFilter(t *testing.T) {
	const n = 200_000
	f := newKeyFilter(n)
	key := func(i int) []byte { return binary.BigEndian.AppendUint64([]byte("o\x00ns\x00"), uint64(i)) }
	for i := range n {
		f.add(key(i))
	}
	for i := range n {
		if !f.mayContain(key(i)) {
			t.Fatalf("key %d added and reported absent", i)
		}
	}
	fp := 0
	for i := n; i < 2*n; i++ {
		if f.mayContain(key(i)) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.01 {
		t.Errorf("false positive rate %.4f at capacity, want < 0.01", rate)
	}
	if f.full() {
		t.Errorf("full after %d adds, sized for %d", f.added.Load(), f.cap)
	}
	f.add(key(-1))
	if !f.full() {
		t.Errorf("not full after %d adds, sized for %d", f.added.Load(), f.cap)
	}
}
