package restore

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

type store struct {
	t *testing.T
	n *cas.Namespace
}

func newStore(t *testing.T) *store {
	db, err := cas.Open(t.TempDir(), cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	n, err := db.Namespace("t")
	if err != nil {
		t.Fatal(err)
	}
	return &store{t: t, n: n}
}

func (s *store) put(b []byte) cas.Ref {
	r := cas.Sum(b)
	if err := s.n.Put(context.Background(), r, b); err != nil {
		s.t.Fatal(err)
	}
	return r
}

func (s *store) file(content string) index.Entry {
	var chunks []index.ChunkRef
	if content != "" {
		chunks = []index.ChunkRef{{Ref: s.put([]byte(content)), Len: uint32(len(content))}}
	}
	top, _ := index.FileObjects(chunks)
	return index.Entry{Kind: index.KindFile, Mode: 0o644, MTime: 1_600_000_000_000_000_000, Size: int64(len(content)), Ref: s.put(top)}
}

func (s *store) tree(entries map[string]index.Entry) cas.Ref {
	var list []index.Entry
	for name, e := range entries {
		e.Name = name
		list = append(list, e)
	}
	t, err := index.NewTree(list)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.put(index.EncodeTree(t))
}

func dir(ref cas.Ref) index.Entry { return index.Entry{Kind: index.KindDir, Mode: 0o755, Ref: ref} }

// sentinel makes a directory outside the target and returns a function
// that fails the test if anything in it changed (content, mode, mtime).
func sentinel(t *testing.T, path string) func() {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(path, "victim")
	os.WriteFile(f, []byte("untouched"), 0o600)
	before, _ := os.Stat(f)
	return func() {
		t.Helper()
		entries, _ := os.ReadDir(path)
		if len(entries) != 1 {
			t.Errorf("outside dir has %d entries, want only the victim", len(entries))
		}
		after, err := os.Stat(f)
		b, _ := os.ReadFile(f)
		if err != nil || string(b) != "untouched" || after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("the file outside the target changed: %v %q %v", err, b, after)
		}
	}
}

// TestSymlinkSwapRace is catalogue rows B4 and B9: while a restore writes
// 2,000 files into d/, another goroutine keeps replacing d with a symlink
// to a directory outside the target. Whatever the interleaving, nothing
// outside changes: every write is relative to a descriptor opened without
// following links, and mode and mtime are set through the file's own.
func TestSymlinkSwapRace(t *testing.T) {
	s := newStore(t)
	files := map[string]index.Entry{}
	for i := range 2000 {
		files[fmt.Sprintf("f%04d", i)] = s.file(fmt.Sprint("content ", i))
	}
	root := s.tree(map[string]index.Entry{"d": dir(s.tree(files))})

	tmp := t.TempDir()
	target, outside := filepath.Join(tmp, "target"), filepath.Join(tmp, "outside")
	os.MkdirAll(filepath.Join(target, "d"), 0o755)
	check := sentinel(t, outside)

	var stop atomic.Bool
	swaps := make(chan int)
	go func() {
		n := 0
		d, real := filepath.Join(target, "d"), filepath.Join(target, "d.real")
		for !stop.Load() {
			if os.Rename(d, real) == nil {
				os.Symlink(outside, d)
				os.Remove(d)
				os.Rename(real, d)
				n++
			}
		}
		swaps <- n
	}()
	_, err := Apply(context.Background(), target, s.n, cas.Ref{}, root, Options{Workers: 4})
	stop.Store(true)
	n := <-swaps
	t.Logf("restore under %d swaps: %v", n, err)
	if n == 0 {
		t.Error("the racer never swapped")
	}
	check()
	// Whatever was written is inside the target, and nothing but the
	// tree's own names (and no temp files) is there.
	filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(target, p)
		if rel == "." || rel == "d" || rel == "d.real" {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			t.Errorf("a symlink %s is left in the target", rel)
		}
		return nil
	})
}

// TestPlantedSymlinkReplaced is row B3: a symlink where the tree has a
// file is replaced by the file; its target is not written.
func TestPlantedSymlinkReplaced(t *testing.T) {
	s := newStore(t)
	root := s.tree(map[string]index.Entry{"x": s.file("the real x")})
	tmp := t.TempDir()
	target, outside := filepath.Join(tmp, "target"), filepath.Join(tmp, "outside")
	os.MkdirAll(target, 0o755)
	check := sentinel(t, outside)
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(target, "x"))
	if _, err := Apply(context.Background(), target, s.n, cas.Ref{}, root, Options{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "x")); err != nil || string(b) != "the real x" {
		t.Errorf("x = %q, %v", b, err)
	}
	fi, _ := os.Lstat(filepath.Join(target, "x"))
	if !fi.Mode().IsRegular() || fi.ModTime().UnixNano() != 1_600_000_000_000_000_000 || fi.Mode().Perm() != 0o644 {
		t.Errorf("x: %v %v", fi.Mode(), fi.ModTime())
	}
	check()
}

// TestSymlinkParentRefused: a directory the tree names, found as a symlink
// in the target, is never written through.
func TestSymlinkParentRefused(t *testing.T) {
	s := newStore(t)
	inner := s.tree(map[string]index.Entry{"passwd": s.file("evil")})
	from := s.tree(map[string]index.Entry{"s": dir(inner)})
	tmp := t.TempDir()
	target, outside := filepath.Join(tmp, "target"), filepath.Join(tmp, "outside")
	os.MkdirAll(target, 0o755)
	check := sentinel(t, outside)
	// The folder believes s is a directory (from = the same tree) but
	// someone replaced it with a link; a modified s/passwd must not go
	// through it.
	os.Symlink(outside, filepath.Join(target, "s"))
	to := s.tree(map[string]index.Entry{"s": dir(s.tree(map[string]index.Entry{"passwd": s.file("evil v2")}))})
	_, err := Apply(context.Background(), target, s.n, from, to, Options{})
	if err == nil {
		t.Error("writing through a symlinked directory succeeded")
	}
	check()
}

// TestApplyChanges: modify, delete, kind changes and metadata-only
// changes land as the diff says.
func TestApplyChanges(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	target := t.TempDir()
	a := s.tree(map[string]index.Entry{
		"keep":   s.file("same"),
		"change": s.file("old"),
		"gone":   s.file("x"),
		"d2f":    dir(s.tree(map[string]index.Entry{"inner": s.file("i")})),
		"f2d":    s.file("file"),
		"chmod":  s.file("mode"),
	})
	if _, err := Apply(ctx, target, s.n, cas.Ref{}, a, Options{}); err != nil {
		t.Fatal(err)
	}
	chmod := s.file("mode")
	chmod.Mode = 0o700
	chmod.MTime += int64(time.Hour)
	b := s.tree(map[string]index.Entry{
		"keep":   s.file("same"),
		"change": s.file("new"),
		"d2f":    s.file("now a file"),
		"f2d":    dir(s.tree(map[string]index.Entry{"child": s.file("c")})),
		"chmod":  chmod,
		"link":   {Kind: index.KindSymlink, Mode: 0o777, Size: 4, Target: "keep"},
	})
	res, err := Apply(ctx, target, s.n, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"keep": "same", "change": "new", "d2f": "now a file", "f2d/child": "c", "chmod": "mode"}
	for p, content := range want {
		if got, err := os.ReadFile(filepath.Join(target, p)); err != nil || string(got) != content {
			t.Errorf("%s = %q, %v; want %q", p, got, err, content)
		}
	}
	if _, err := os.Lstat(filepath.Join(target, "gone")); !os.IsNotExist(err) {
		t.Errorf("gone still exists: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(target, "link")); err != nil || l != "keep" {
		t.Errorf("link = %q, %v", l, err)
	}
	fi, _ := os.Stat(filepath.Join(target, "chmod"))
	if fi.Mode().Perm() != 0o700 || fi.ModTime().UnixNano() != chmod.MTime {
		t.Errorf("chmod: mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
	if res.FilesWritten != 3 || res.Removed < 3 {
		t.Errorf("result %+v", res)
	}
	if temps, _ := filepath.Glob(filepath.Join(target, index.TempPrefix+"*")); len(temps) > 0 {
		t.Errorf("temp files left: %v", temps)
	}
}

// TestSymlinkChainNotFollowed (B2): links are data. A version holding a
// chain a -> b, b -> ../outside restores as two links; the next version
// makes a a directory with a file in it: a is replaced (never written
// through), nothing outside changes, and no write lands on a path the
// version does not name.
func TestSymlinkChainNotFollowed(t *testing.T) {
	s := newStore(t)
	link := func(target string) index.Entry {
		return index.Entry{Kind: index.KindSymlink, Mode: 0o777, Size: int64(len(target)), Target: target}
	}
	tmp := t.TempDir()
	target, outside := filepath.Join(tmp, "target"), filepath.Join(tmp, "outside")
	os.MkdirAll(target, 0o755)
	check := sentinel(t, outside)
	v1 := s.tree(map[string]index.Entry{"a": link("b"), "b": link("../outside")})
	if _, err := Apply(context.Background(), target, s.n, cas.Ref{}, v1, Options{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(filepath.Join(target, "a")); got != "b" {
		t.Fatalf("a restored as %q", got)
	}
	v2 := s.tree(map[string]index.Entry{
		"a": dir(s.tree(map[string]index.Entry{"victim": s.file("through the chain")})),
		"b": link("../outside"),
	})
	if _, err := Apply(context.Background(), target, s.n, v1, v2, Options{}); err != nil {
		t.Fatal(err)
	}
	check()
	if fi, err := os.Lstat(filepath.Join(target, "a")); err != nil || !fi.IsDir() {
		t.Fatalf("a is not a directory now: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "a", "victim")); string(b) != "through the chain" {
		t.Fatalf("a/victim = %q", b)
	}
	if got, _ := os.Readlink(filepath.Join(target, "b")); got != "../outside" {
		t.Fatalf("b is %q, want the link unchanged", got)
	}
}
