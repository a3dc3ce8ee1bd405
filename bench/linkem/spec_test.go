package linkem

import (
	"testing"
	"time"
)

func TestParseShape(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Shape
		bad  bool
	}{
		{"", Shape{}, false},
		{"delay=25ms,loss=1%,rate=100mbit", Shape{Delay: 25 * time.Millisecond, Loss: 0.01, Rate: 12_500_000}, false},
		{"jitter=5ms, dup=0.001, reorder=2%, reorder-by=10ms", Shape{Jitter: 5 * time.Millisecond, Duplicate: 0.001, Reorder: 0.02, ReorderBy: 10 * time.Millisecond}, false},
		{"rate=10MiB/s,queue=256KiB,max-packet=1280", Shape{Rate: 10 << 20, Queue: 256 << 10, MaxPacket: 1280}, false},
		{"loss=101%", Shape{}, true},
		{"loss=NaN", Shape{}, true},
		{"delay=-1s", Shape{}, true},
		{"rate=0", Shape{}, true},
		{"max-packet=20", Shape{}, true},
		{"color=blue", Shape{}, true},
		{"delay", Shape{}, true},
	} {
		got, err := ParseShape(tc.spec)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseShape(%q) = %+v, %v; want %+v (error %v)", tc.spec, got, err, tc.want, tc.bad)
		}
	}
}

// FuzzParseShape: a shape that parses prints back to the same shape, and
// its values are in range.
func FuzzParseShape(f *testing.F) {
	for _, s := range []string{"delay=25ms,loss=1%,rate=100mbit", "queue=1e3kb", "reorder=50%,reorder-by=1h", "rate=1bit", ",", "loss=1e-300"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseShape(spec)
		if err != nil {
			return
		}
		if s.Loss < 0 || s.Loss > 1 || s.Delay < 0 || s.Delay > maxDelay || s.Rate < 0 || s.Queue < 0 {
			t.Fatalf("%q -> %+v", spec, s)
		}
		again, err := ParseShape(s.String())
		if err != nil || again != s {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", spec, s, s.String(), again, err)
		}
	})
}
