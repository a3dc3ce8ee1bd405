package cas_test

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/internal/pgtest"
	"github.com/ferry-sync/ferry/pgmeta"
)

// BenchmarkMeta: what the store's records cost in Pebble and through
// PostgreSQL (a local cluster on the same disk), one operation at a time
// as one server's requests run: a Has of 1,000 refs (half present), the
// put of 100 small (inline) blobs and the flush that makes them durable,
// and a head's move (a commit with its compare-and-swap). Compare the two
// with benchstat; bench/results/cluster.md has a run.
//
//	go test ./cas -run XXX -bench Meta -benchtime 20x -count 3
func BenchmarkMeta(b *testing.B) {
	var pg *pgtest.Server
	stores := []struct {
		name string
		open func(b *testing.B) *cas.DB
	}{
		{"pebble", func(b *testing.B) *cas.DB {
			db, err := cas.Open(b.TempDir(), cas.Options{Create: true})
			if err != nil {
				b.Fatal(err)
			}
			return db
		}},
		{"postgres", func(b *testing.B) *cas.DB {
			if pg == nil {
				pg = pgtest.Start(b)
			}
			m, err := pgmeta.Open(context.Background(), pg.NewDB(b))
			if err != nil {
				b.Fatal(err)
			}
			db, err := cas.Open(filepath.Join(b.TempDir(), "s"), cas.Options{Create: true, Meta: m})
			if err != nil {
				b.Fatal(err)
			}
			return db
		}},
	}
	blob := func(i int) []byte { return binary.BigEndian.AppendUint64([]byte("blob-"), uint64(i)) }
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			ctx := context.Background()
			db := st.open(b)
			defer db.Close()
			ns, err := db.Namespace("n")
			if err != nil {
				b.Fatal(err)
			}
			refs := make([]cas.Ref, 1000)
			for i := range refs {
				data := blob(i)
				refs[i] = cas.Sum(data)
				if i%2 == 0 {
					if err := ns.Put(ctx, refs[i], data); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := ns.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.Run("has-1000", func(b *testing.B) {
				for b.Loop() {
					if _, err := ns.Has(ctx, refs); err != nil {
						b.Fatal(err)
					}
				}
			})
			next := 1 << 20
			b.Run("put-100-flush", func(b *testing.B) {
				for b.Loop() {
					for range 100 {
						data := blob(next)
						next++
						if err := ns.Put(ctx, cas.Sum(data), data); err != nil {
							b.Fatal(err)
						}
					}
					if err := ns.Flush(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			var head cas.Ref
			b.Run("head-move", func(b *testing.B) {
				var total time.Duration
				for b.Loop() {
					data := blob(next)
					next++
					ref := cas.Sum(data)
					if err := ns.Put(ctx, ref, data); err != nil {
						b.Fatal(err)
					}
					t0 := time.Now()
					if err := ns.SwapHead(ctx, "r", head, ref); err != nil {
						b.Fatal(err)
					}
					total += time.Since(t0)
					head = ref
				}
				b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/move")
			})
		})
	}
}
