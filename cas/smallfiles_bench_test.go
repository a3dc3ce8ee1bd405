package cas_test

import (
	"context"
	"encoding/binary"
	"flag"
	"testing"

	"github.com/ferry-sync/ferry/cas"
)

var (
	smallFiles    = flag.Int("small-files", 100_000, "files BenchmarkSmallFilesPush stores per iteration")
	smallMemTable = flag.Uint64("small-memtable", 64<<20, "BenchmarkSmallFilesPush: the memtable size (64 MiB: what ferry serve picks on a large disk; 0: what a new local store gets)")
)

// BenchmarkSmallFilesPush: the store's side of a first push of many small
// files, as a server runs it. Each file is a chunk and a file object; a
// client asks whether the store has them (one has-many per 1,000 refs),
// puts both, and the store flushes every 1,000 puts; then the commit check
// reads every file object and asks the sizes of every chunk. Every key is
// new during the puts and present during the check, which is the pattern
// the 300k-file profile found dominated by Pebble point lookups.
//
//	go test ./cas -run XXX -bench SmallFilesPush -benchtime 1x -count 6
func BenchmarkSmallFilesPush(b *testing.B) {
	ctx := context.Background()
	n := *smallFiles
	blob := func(kind byte, i int) []byte {
		v := make([]byte, 0, 96)
		v = append(v, kind)
		v = binary.BigEndian.AppendUint64(v, uint64(i))
		for len(v) < 96 {
			v = append(v, byte(i*7+len(v)))
		}
		return v
	}
	for range b.N {
		b.StopTimer()
		db, err := cas.Open(b.TempDir(), cas.Options{Create: true, MemTableSize: *smallMemTable})
		if err != nil {
			b.Fatal(err)
		}
		ns, err := db.Namespace("n")
		if err != nil {
			b.Fatal(err)
		}
		chunks := make([]cas.Ref, n)
		files := make([]cas.Ref, n)
		for i := range n {
			chunks[i] = cas.Sum(blob('c', i))
			files[i] = cas.Sum(blob('f', i))
		}
		b.StartTimer()
		const batch = 500 // files per has-many: 1,000 refs
		for lo := 0; lo < n; lo += batch {
			hi := min(lo+batch, n)
			refs := append(append([]cas.Ref{}, chunks[lo:hi]...), files[lo:hi]...)
			has, err := ns.Has(ctx, refs)
			if err != nil {
				b.Fatal(err)
			}
			for i := lo; i < hi; i++ {
				if has[i-lo] {
					b.Fatalf("file %d present before its put", i)
				}
				if err := ns.Put(ctx, chunks[i], blob('c', i)); err != nil {
					b.Fatal(err)
				}
				if err := ns.Put(ctx, files[i], blob('f', i)); err != nil {
					b.Fatal(err)
				}
			}
			if err := ns.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
		for lo := 0; lo < n; lo += 1000 {
			hi := min(lo+1000, n)
			for i := lo; i < hi; i++ {
				if _, err := ns.Get(ctx, files[i]); err != nil {
					b.Fatal(err)
				}
			}
			sizes, err := ns.Sizes(ctx, chunks[lo:hi])
			if err != nil {
				b.Fatal(err)
			}
			for i, s := range sizes {
				if s != 96 {
					b.Fatalf("chunk %d: size %d", lo+i, s)
				}
			}
		}
		b.StopTimer()
		db.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/file")
}
