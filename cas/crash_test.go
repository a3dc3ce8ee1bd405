package cas_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/ferry-sync/ferry/cas"
)

// crashWorkload pushes versions into two roots: each version is a blob
// listing its chunks (one packed, one inline). It records a version as
// acknowledged when SwapHead returned nil before the crash was taken.
type crashWorkload struct {
	acked   map[string][]cas.Ref // root -> acknowledged heads, in order
	content map[cas.Ref][][]byte // version -> its chunks
}

func (w *crashWorkload) run(ctx context.Context, db *cas.DB, rng *rand.Rand, crashed *atomic.Bool) {
	n, _ := db.Namespace("ns")
	heads := map[string]cas.Ref{}
	for i := 0; i < 8; i++ {
		root := []string{"r1", "r2"}[i%2]
		chunks := [][]byte{random(rng.Uint64(), 64<<10+rng.IntN(64<<10)), random(rng.Uint64(), 100+rng.IntN(900))}
		var list []byte
		for _, c := range chunks {
			if err := n.Put(ctx, cas.Sum(c), c); err != nil {
				return
			}
			r := cas.Sum(c)
			list = append(list, r[:]...)
		}
		ver := cas.Sum(list)
		if err := n.Put(ctx, ver, list); err != nil {
			return
		}
		err := n.SwapHead(ctx, root, heads[root], ver)
		if crashed.Load() {
			return // answered after the crash: it does not count
		}
		if err != nil {
			return
		}
		heads[root] = ver
		w.acked[root] = append(w.acked[root], ver)
		w.content[ver] = chunks
	}
}

// TestCrashKeepsAcknowledgedHeads (F1, F2): the store's commit path on a
// crashable in-memory filesystem. At the k-th filesystem operation a crash
// is taken (CrashClone: what was synced, plus a random share of what was
// not); the store reopened on the clone must hold every head it
// acknowledged, in its history, with every blob that head names, and pass
// a full check. Every k up to the workload's length is tried, for several
// seeds.
func TestCrashKeepsAcknowledgedHeads(t *testing.T) {
	ctx := context.Background()
	points := 0
	for seed := uint64(1); seed <= 3; seed++ {
		for k := int64(1); ; k += 3 {
			rng := rand.New(rand.NewPCG(seed, uint64(k)))
			mem := vfs.NewCrashableMem()
			var crashed atomic.Bool
			var clone *vfs.MemFS
			var ops atomic.Int64
			fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if ops.Add(1) == k {
					clone = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
					crashed.Store(true)
				}
				return nil
			}))
			db, err := cas.Open("store", cas.Options{Create: true, FS: fs})
			if err != nil {
				if clone == nil {
					t.Fatal(err)
				}
			}
			w := &crashWorkload{acked: map[string][]cas.Ref{}, content: map[cas.Ref][][]byte{}}
			if db != nil {
				w.run(ctx, db, rng, &crashed)
				db.Close()
			}
			if clone == nil {
				if k == 1 {
					t.Fatal("the workload made no filesystem operation")
				}
				break // k is past the workload's end
			}
			points++
			t.Run(fmt.Sprintf("seed%d-op%d", seed, k), func(t *testing.T) {
				checkCrashClone(t, ctx, clone, w)
			})
		}
	}
	if points < 50 {
		t.Fatalf("only %d crash points tried", points)
	}
}

func checkCrashClone(t *testing.T, ctx context.Context, clone *vfs.MemFS, w *crashWorkload) {
	db, err := cas.Open("store", cas.Options{FS: clone})
	if errors.Is(err, cas.ErrNotFound) && len(w.acked) == 0 {
		return // crashed before the store was made
	}
	if err != nil {
		t.Fatalf("reopen after the crash: %v", err)
	}
	defer db.Close()
	n, _ := db.Namespace("ns")
	for root, acked := range w.acked {
		hist, err := n.History(ctx, root)
		if err != nil {
			t.Fatal(err)
		}
		var refs []cas.Ref
		for _, h := range hist {
			refs = append(refs, h.Ref)
		}
		if len(refs) < len(acked) || !slices.Equal(refs[:len(acked)], acked) {
			t.Fatalf("root %s: history %d entries, acknowledged %d: an acknowledged head was lost", root, len(refs), len(acked))
		}
		for _, ver := range acked {
			for _, c := range w.content[ver] {
				got, err := n.Get(ctx, cas.Sum(c))
				if err != nil || !bytes.Equal(got, c) {
					t.Fatalf("root %s: version %s names %s: %v", root, ver.Short(), cas.Sum(c).Short(), err)
				}
			}
		}
	}
	var damage []cas.Damage
	if _, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { damage = append(damage, d) }); err != nil || len(damage) > 0 {
		t.Fatalf("check after the crash: %v, %v", damage, err)
	}
}
