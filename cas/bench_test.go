package cas_test

import (
	"bufio"
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/internal/s3test"
	"github.com/ferry-sync/ferry/s3store"
	"golang.org/x/sync/errgroup"
)

var ingestSize = flag.Int64("ingest-bytes", 256<<20, "bytes BenchmarkIngest stores (the issue's figure is 2 GiB: -ingest-bytes=2147483648)")

// writeBytes reads what this process has caused to be written to storage.
func writeBytes(b *testing.B) int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		b.Skip("no /proc/self/io")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Skip("no write_bytes in /proc/self/io")
	return 0
}

// ingestChunks yields n bytes of incompressible chunks of 512 KiB to
// 1 MiB (the default mean is 768 KiB), from a fixed seed.
func ingestChunks(n int64, fn func([]byte) error) error {
	return ingestStream(1, n, fn)
}

// ingestParallel runs GOMAXPROCS producers, as scan's uploaders do.
func ingestParallel(n int64, fn func([]byte) error) error {
	var g errgroup.Group
	w := runtime.GOMAXPROCS(0)
	for i := range w {
		g.Go(func() error { return ingestStream(uint64(i+1), n/int64(w), fn) })
	}
	return g.Wait()
}

func ingestStream(seed uint64, n int64, fn func([]byte) error) error {
	r := rand.NewChaCha8([32]byte{42, byte(seed)})
	buf := make([]byte, 1<<20)
	sizes := rand.New(rand.NewPCG(1, seed))
	for done := int64(0); done < n; {
		c := buf[:min(int64(512<<10+sizes.IntN(512<<10)), n-done)]
		_, _ = r.Read(c)
		if err := fn(c); err != nil {
			return err
		}
		done += int64(len(c))
	}
	return nil
}

// BenchmarkIngest stores -ingest-bytes of new chunks, durably, from one
// producer per core (as scan's uploaders), three ways in the same run:
// ferry's store (pack files + Pebble index), Pebble alone with value
// separation (blob files), and a plain file written and fsynced (the
// disk's own speed, the reference for the ratio). It reports MB/s and write amplification (bytes
// written to storage / bytes stored, from /proc/self/io).
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, put func(ref cas.Ref, data []byte) error, finish func() error) {
		b.SetBytes(*ingestSize)
		var wa float64
		for b.Loop() {
			w0 := writeBytes(b)
			if err := ingestParallel(*ingestSize, func(c []byte) error { return put(cas.Sum(c), c) }); err != nil {
				b.Fatal(err)
			}
			if err := finish(); err != nil {
				b.Fatal(err)
			}
			wa = float64(writeBytes(b)-w0) / float64(*ingestSize)
		}
		b.ReportMetric(wa, "write-amp")
	}
	b.Run("store=packs", func(b *testing.B) {
		db, err := cas.Open(b.TempDir(), cas.Options{Create: true})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		n, _ := db.Namespace("bench")
		run(b, func(r cas.Ref, d []byte) error { return n.Put(ctx, r, d) }, func() error { return n.Flush(ctx) })
	})
	b.Run("store=s3-packs", func(b *testing.B) {
		// Packs uploaded to versitygw (posix backend on this disk, its
		// own process: its writes are not in write-amp) before the flush
		// returns; the local copies are dropped (a one-byte cache).
		srv := s3test.Start(b, "packs")
		ps, err := s3store.Open(ctx, "packs", "bench/", s3store.Options{Endpoint: srv.Endpoint, Region: s3test.Region, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey})
		if err != nil {
			b.Fatal(err)
		}
		db, err := cas.Open(b.TempDir(), cas.Options{Create: true, Packs: ps, PacksName: "s3://packs/bench", CacheBytes: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		n, _ := db.Namespace("bench")
		run(b, func(r cas.Ref, d []byte) error { return n.Put(ctx, r, d) }, func() error { return n.Flush(ctx) })
	})
	b.Run("store=pebble-valsep", func(b *testing.B) {
		// Value separation needs FormatNewest and the policy at open
		// time; with the default format it is silently off.
		dir := b.TempDir()
		opts := &pebble.Options{FormatMajorVersion: pebble.FormatNewest, MemTableSize: 64 << 20, Logger: quiet{}}
		opts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
			return pebble.ValueSeparationPolicy{Enabled: true, MinimumSize: 4096, MaxBlobReferenceDepth: 10, RewriteMinimumAge: time.Hour, TargetGarbageRatio: 0.2}
		}
		pdb, err := pebble.Open(dir, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer pdb.Close()
		run(b, func(r cas.Ref, d []byte) error {
			payload, _ := cas.Encode(nil, d)
			return pdb.Set(r[:], payload, pebble.NoSync)
		}, func() error {
			if err := pdb.Flush(); err != nil {
				return err
			}
			return pdb.LogData(nil, pebble.Sync)
		})
	})
	b.Run("store=rawfile", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		var mu sync.Mutex
		run(b, func(_ cas.Ref, d []byte) error {
			mu.Lock()
			defer mu.Unlock()
			_, err := f.Write(d)
			return err
		}, f.Sync)
	})
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(format)
}

// BenchmarkGet reads back packed chunks: verified reads per second.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	db, err := cas.Open(b.TempDir(), cas.Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	n, _ := db.Namespace("bench")
	var refs []cas.Ref
	var total int64
	ingestChunks(64<<20, func(c []byte) error {
		r := cas.Sum(c)
		refs = append(refs, r)
		total += int64(len(c))
		return n.Put(ctx, r, c)
	})
	n.Flush(ctx)
	b.SetBytes(total)
	for b.Loop() {
		for _, r := range refs {
			if _, err := n.Get(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	}
}
