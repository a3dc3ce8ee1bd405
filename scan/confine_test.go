package scan_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/scan"
	"github.com/ferry-sync/ferry/state"
	"golang.org/x/sys/unix"
)

// TestReadsStayInTheFolder (B4 read side, I1): a racer swaps a directory
// of the folder with a symlink to a directory outside it, atomically and
// in a tight loop, while ten scans read 10,000 files through it (each
// with an empty stat cache, so every file is read). The outside directory
// has the same names, holding a marker: it must never reach the store.
func TestReadsStayInTheFolder(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	folder, outside := filepath.Join(tmp, "folder"), filepath.Join(tmp, "outside")
	marker := []byte(fmt.Sprintf("MARKER-%d-outside-the-folder", os.Getpid()))
	const dirs, files = 100, 100
	for i := range dirs {
		for _, base := range []string{filepath.Join(folder, "d"), filepath.Join(outside, "secret")} {
			if err := os.MkdirAll(filepath.Join(base, fmt.Sprintf("sub%02d", i)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for j := range files {
			name := fmt.Sprintf("sub%02d/f%03d", i, j)
			if err := os.WriteFile(filepath.Join(folder, "d", name), []byte("inside "+name), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "secret", name), marker, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	swap := filepath.Join(outside, "swap")
	if err := os.Symlink(filepath.Join(outside, "secret"), swap); err != nil {
		t.Fatal(err)
	}

	db, err := cas.Open(filepath.Join(tmp, "store"), cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dst, _ := db.Namespace("n")

	var stop atomic.Bool
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			// folder/d and outside/swap trade places: a directory one
			// moment, a link out of the folder the next.
			if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(folder, "d"), unix.AT_FDCWD, swap, unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("exchange: %v", err)
				return
			}
			swaps.Add(1)
		}
	}()
	var read int64
	for i := range 10 {
		f, err := state.Init(filepath.Join(tmp, fmt.Sprintf("state%d", i)), state.Config{Remote: "x", Root: "r"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := scan.Scan(ctx, folder, f.StatCache(), dst, scan.Options{Params: chunk.Default()})
		f.Close()
		if err != nil {
			stop.Store(true)
			t.Fatalf("scan %d: %v", i, err)
		}
		read += res.FilesRead
		res.CacheUpdate.Discard()
	}
	stop.Store(true)
	wg.Wait()
	if swaps.Load() < 100 || read < 1000 {
		t.Fatalf("only %d swaps and %d files read: the race did not run", swaps.Load(), read)
	}
	if err := dst.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var blobs int
	err = dst.List(ctx, func(r cas.Ref) error {
		blobs++
		b, err := dst.Get(ctx, r)
		if err != nil {
			return err
		}
		if bytes.Contains(b, marker) {
			return fmt.Errorf("blob %s holds the marker from outside the folder", r.Short())
		}
		if typ, err := index.TypeOf(b); err == nil && typ == index.TypeTree {
			tr, err := index.DecodeTree(b)
			if err != nil {
				return err
			}
			for _, e := range tr.Entries {
				if e.Kind == index.KindFile && e.Ref == cas.Sum(mustFileObject(marker)) {
					return fmt.Errorf("tree %s lists %s with the marker's content", r.Short(), e.Name)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d swaps, %d files read in 10 scans, %d blobs stored, none from outside", swaps.Load(), read, blobs)
}

func mustFileObject(data []byte) []byte {
	top, _ := index.FileObjects([]index.ChunkRef{{Ref: cas.Sum(data), Len: uint32(len(data))}})
	return top
}

// TestIgnoreFileReadSafely (A12, B4): a .ferryignore that is a FIFO, or a
// link to a file outside the folder, or over 1 MiB, is refused with a
// warning, never waited on or followed; the scan finishes.
func TestIgnoreFileReadSafely(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	outside := filepath.Join(tmp, "rules")
	if err := os.WriteFile(outside, []byte("*\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		make func(path string) error
		want string
	}{
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o644) }, "not a regular file"},
		{"link", func(p string) error { return os.Symlink(outside, p) }, "symlink"},
		{"huge", func(p string) error { return os.WriteFile(p, bytes.Repeat([]byte("#\n"), 1<<20), 0o644) }, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(tmp, tc.name)
			if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "sub", "kept.txt"), []byte("kept"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.make(filepath.Join(dir, "sub", scan.IgnoreFile)); err != nil {
				t.Fatal(err)
			}
			f, err := state.Init(filepath.Join(tmp, tc.name+"-state"), state.Config{Remote: "x", Root: "r"})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			res, err := scan.Scan(ctx, dir, f.StatCache(), nil, scan.Options{Params: chunk.Default(), Objects: f.Cache()})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Warnings) == 0 || !strings.Contains(strings.Join(res.Warnings, "\n"), tc.want) {
				t.Errorf("warnings %q, want one saying %q", res.Warnings, tc.want)
			}
			if _, err := index.Lookup(ctx, f.Cache(), res.Root, "sub/kept.txt"); err != nil {
				t.Errorf("sub/kept.txt is not in the tree: %v", err)
			}
		})
	}
}
