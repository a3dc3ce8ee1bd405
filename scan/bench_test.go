package scan_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/scan"
	"github.com/ferry-sync/ferry/state"
)

var noopFiles = flag.Int("noop-files", 100_000, "files in BenchmarkNoopScan's folder")

// makeTree writes n small files, 100 to a directory, 10 directories to a
// parent, with mtimes an hour old.
func makeTree(tb testing.TB, dir string, n int) {
	old := time.Now().Add(-time.Hour)
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i/1000), fmt.Sprintf("e%02d", i/100%10))
		if i%100 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				tb.Fatal(err)
			}
		}
		p := filepath.Join(d, fmt.Sprintf("file-%06d.txt", i))
		if err := os.WriteFile(p, fmt.Appendf(nil, "file %d\n", i), 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			tb.Fatal(err)
		}
	}
}

func openFolder(tb testing.TB, dir string) *state.Folder {
	f, err := state.Init(dir, state.Config{Remote: "x", Root: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// BenchmarkNoopScan is a push with nothing to push: -noop-files small
// files all known to the stat cache. Target: under 1 s for 100,000 files,
// with no file content read (files-read must be 0).
func BenchmarkNoopScan(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	makeTree(b, dir, *noopFiles)
	f := openFolder(b, dir)
	db, err := cas.Open(b.TempDir(), cas.Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	dst, _ := db.Namespace("bench")
	opts := scan.Options{Params: chunk.Default(), Objects: f.Cache()}
	first, err := scan.Scan(ctx, dir, f.StatCache(), dst, opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := dst.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err := first.CacheUpdate.Commit(); err != nil {
		b.Fatal(err)
	}
	var res *scan.Result
	for b.Loop() {
		if res, err = scan.Scan(ctx, dir, f.StatCache(), dst, opts); err != nil {
			b.Fatal(err)
		}
		res.CacheUpdate.Commit()
	}
	if res.Root != first.Root || res.Summary.Files != int64(*noopFiles) {
		b.Fatalf("no-op scan found root %s (%d files), want %s", res.Root.Short(), res.Summary.Files, first.Root.Short())
	}
	b.ReportMetric(float64(res.FilesRead), "files-read")
	b.ReportMetric(float64(res.Summary.Files), "files")
}
