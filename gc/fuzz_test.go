package gc

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// FuzzParseWithin: a within that parses is positive and at most 200
// years, and the Go form of it parses to the same duration.
func FuzzParseWithin(f *testing.F) {
	for _, s := range []string{"1y2m3d4h", "36h", "7d", "-5h", "99999999999999999999y", "0d", "1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseWithin(s)
		if err != nil {
			return
		}
		if d <= 0 || d > maxWithin {
			t.Fatalf("%q -> %v", s, d)
		}
		if again, err := ParseWithin(d.String()); err != nil || again != d {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, d, d.String(), again, err)
		}
	})
}

// FuzzParsePolicy: a policy that parses applies to a real history
// without error, keeps the head, and survives a write and a read.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"Last":3,"Daily":7,"Within":3600000000000,"Tags":["keep"],"KeepTagged":true}`))
	f.Add([]byte(`{"Last":-1}`))
	f.Add([]byte(`{"Last":-2}`))
	f.Add([]byte(`{"Within":-1}`))
	f.Add([]byte(`{}`))
	h := history()[:200]
	head := h[0].Ref
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		ds, err := p.Apply(h, map[string]cas.Ref{"keep": h[5].Ref}, head, time.UTC)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if len(ds) != len(h) || !ds[0].Keep {
			t.Fatalf("%s: %d decisions, head kept %v", b, len(ds), len(ds) > 0 && ds[0].Keep)
		}
		out, _ := json.Marshal(p)
		again, err := ParsePolicy(out)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("%s -> %+v -> %s -> %+v, %v", b, p, out, again, err)
		}
	})
}
