package scan_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/scan"
	"github.com/ferry-sync/ferry/state"
)

// scanInto scans dir with the folder's stat cache into a fresh namespace
// of db and commits what the scan learnt.
func scanInto(t *testing.T, dir string, f *state.Folder, dst *cas.Namespace) *scan.Result {
	t.Helper()
	ctx := context.Background()
	res, err := scan.Scan(ctx, dir, f.StatCache(), dst, scan.Options{Params: chunk.Default(), Objects: f.Cache()})
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := res.CacheUpdate.Commit(); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestCachedTreesEqualFreshScan: whatever changed in the folder, a scan
// that reuses the trees and file refs the stat cache remembers returns the
// root a scan with an empty cache computes, and stores every tree that
// root reaches.
func TestCachedTreesEqualFreshScan(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	write := func(t *testing.T, p, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	edits := []struct {
		name string
		edit func(t *testing.T, dir string)
	}{
		{"nothing", func(t *testing.T, dir string) {}},
		{"same size new content deep", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "a/b/c/deep.txt")
			write(t, p, "DEEP")
			later := old.Add(time.Second)
			if err := os.Chtimes(p, later, later); err != nil {
				t.Fatal(err)
			}
		}},
		{"file added", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "a/b/new.txt"), "new") }},
		{"file removed", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "a/b/c/deep.txt"))) }},
		{"file chmod", func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, "a/one.txt"), 0o600)) }},
		{"directory chmod", func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, "a/b/c"), 0o700)) }},
		{"directory renamed", func(t *testing.T, dir string) {
			must(t, os.Rename(filepath.Join(dir, "a/b"), filepath.Join(dir, "a/bb")))
		}},
		{"directory removed and made again with the same content", func(t *testing.T, dir string) {
			must(t, os.RemoveAll(filepath.Join(dir, "x")))
			write(t, filepath.Join(dir, "x/y.txt"), "y")
		}},
		{"symlink retargeted", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "a/link")
			must(t, os.Remove(p))
			must(t, os.Symlink("two.txt", p))
		}},
		{"ignore file added", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "a/.ferryignore"), "two.txt\n") }},
		{"empty directory added", func(t *testing.T, dir string) { must(t, os.MkdirAll(filepath.Join(dir, "e/f"), 0o755)) }},
	}
	for _, tc := range edits {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "a/one.txt"), "one")
			write(t, filepath.Join(dir, "a/two.txt"), "two")
			write(t, filepath.Join(dir, "a/b/c/deep.txt"), "deep")
			write(t, filepath.Join(dir, "x/y.txt"), "y")
			must(t, os.Symlink("one.txt", filepath.Join(dir, "a/link")))
			f := openFolder(t, dir)
			db, err := cas.Open(t.TempDir(), cas.Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			dst, _ := db.Namespace("n")
			first := scanInto(t, dir, f, dst)
			if first.ObjectsSent == 0 {
				t.Fatal("the first scan stored no objects")
			}

			tc.edit(t, dir)
			cached := scanInto(t, dir, f, dst)

			fresh, err := scan.Scan(context.Background(), dir, openFolder(t, t.TempDir()).StatCache(), nil, scan.Options{Params: chunk.Default()})
			if err != nil {
				t.Fatal(err)
			}
			if cached.Root != fresh.Root {
				t.Fatalf("root with cached trees %s, from scratch %s", cached.Root.Short(), fresh.Root.Short())
			}
			if tc.name == "nothing" && (cached.ObjectsSent != 0 || cached.FilesRead != 0) {
				t.Fatalf("a no-op scan stored %d objects and read %d files", cached.ObjectsSent, cached.FilesRead)
			}
			// Every tree the root reaches is in the store.
			var walk func(ref cas.Ref, path string)
			walk = func(ref cas.Ref, path string) {
				tr, err := index.LoadTree(context.Background(), dst, ref)
				if err != nil {
					t.Fatalf("tree %q: %v", path, err)
				}
				for _, e := range tr.Entries {
					if e.Kind == index.KindDir {
						walk(e.Ref, index.JoinPath(path, e.Name))
					}
				}
			}
			walk(cached.Root, "")
		})
	}
}

// TestScanErrorInAWalker: a directory that fails deep in the tree (here,
// one past the depth limit, met by a walker goroutine) fails the scan
// with its reason, and the scan returns rather than hangs.
func TestScanErrorInAWalker(t *testing.T) {
	dir := t.TempDir()
	for i := range 8 {
		must(t, os.MkdirAll(filepath.Join(dir, "wide", string(rune('a'+i))), 0o755))
	}
	deep := filepath.Join(dir, "wide", "c")
	for range index.MaxDepth {
		deep = filepath.Join(deep, "d")
	}
	must(t, os.MkdirAll(deep, 0o755))
	f := openFolder(t, dir)
	_, err := scan.Scan(context.Background(), dir, f.StatCache(), nil, scan.Options{Params: chunk.Default()})
	if err == nil || !strings.Contains(err.Error(), "deeper than") {
		t.Fatalf("scan of a too deep tree: %v", err)
	}
}

// TestDirectorySwappedForLink: a directory replaced by a symlink to a
// place outside the folder is recorded as a link, never walked.
func TestDirectorySwappedForLink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(dir, "sub")))
	f := openFolder(t, dir)
	res, err := scan.Scan(context.Background(), dir, f.StatCache(), nil, scan.Options{Params: chunk.Default()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Files != 0 || res.Summary.Symlinks != 1 {
		t.Fatalf("scan found %d files and %d links, want 0 and 1", res.Summary.Files, res.Summary.Symlinks)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
}

// TestLargeFileCutOnEveryCore: a file large enough to be cut on every core
// (chunk.ParallelCuts) gets the file object of the sequential cut, so it
// deduplicates against what any other device or an older ferry stored.
func TestLargeFileCutOnEveryCore(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 80<<20)
	rand.NewChaCha8([32]byte{5}).Read(data)
	clear(data[30<<20 : 36<<20]) // cut only at Max across the first seam
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var list []index.ChunkRef
	err := chunk.Split(context.Background(), bytes.NewReader(data), chunk.Default(), func(c chunk.Chunk) error {
		list = append(list, index.ChunkRef{Ref: cas.Ref(c.Sum), Len: uint32(len(c.Data))})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	top, _ := index.FileObjects(list)
	res, err := scan.Scan(context.Background(), dir, openFolder(t, t.TempDir()).StatCache(), nil, scan.Options{Params: chunk.Default(), CutWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	db, err := cas.Open(t.TempDir(), cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dst, _ := db.Namespace("n")
	if _, err := scan.Scan(context.Background(), dir, openFolder(t, t.TempDir()).StatCache(), dst, scan.Options{Params: chunk.Default(), CutWorkers: 3}); err != nil {
		t.Fatal(err)
	}
	tr, err := index.LoadTree(context.Background(), dst, res.Root)
	if err != nil || len(tr.Entries) != 1 {
		t.Fatalf("tree: %v", err)
	}
	if got, want := tr.Entries[0].Ref, cas.Sum(top); got != want {
		t.Fatalf("big.bin's file object is %s; the sequential cut's is %s", got.Short(), want.Short())
	}
}
