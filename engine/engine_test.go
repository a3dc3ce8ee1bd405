package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

func random(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

func write(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	// Files written by the test are an hour old: files modified within the
	// scan's racy window are read again on every scan, by design.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// fixture is a folder with everything the round trip must keep.
func fixture(t *testing.T, dir string) {
	t.Helper()
	write(t, filepath.Join(dir, "plain.txt"), []byte("hello\n"), 0o644)
	write(t, filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	write(t, filepath.Join(dir, "with space", "ünïcødé näme.md"), []byte("unicode"), 0o600)
	write(t, filepath.Join(dir, "empty"), nil, 0o644)
	write(t, filepath.Join(dir, "big", "forty.bin"), random(1, 40<<20), 0o644)
	if err := os.MkdirAll(filepath.Join(dir, "empty dir", "nested empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("plain.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside/target", filepath.Join(dir, "with space", "dangling")); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 2, 3, 4, 5, 6, 789, time.UTC)
	if err := os.Chtimes(filepath.Join(dir, "plain.txt"), old, old); err != nil {
		t.Fatal(err)
	}
}

// snapshot describes a folder: every path below it (not .ferry) with kind,
// mode, content hash, symlink target, and file mtime.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if rel == index.StateDir {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link " + target
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode().Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %s %d", fi.Mode().Perm(), cas.Sum(b).Short(), fi.ModTime().UnixNano())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, got, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: got %q, want %q", p, got[p], w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %q", p, g)
		}
	}
}

type env struct {
	t     *testing.T
	ctx   context.Context
	store string
	tmp   string
}

func newEnv(t *testing.T) *env {
	tmp := t.TempDir()
	return &env{t: t, ctx: context.Background(), store: filepath.Join(tmp, "store"), tmp: tmp}
}

func (e *env) folder(name, root string) string {
	e.t.Helper()
	dir := filepath.Join(e.tmp, name)
	if _, err := Init(e.ctx, dir, InitOptions{Remote: e.store, Root: root}); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

func (e *env) push(dir string) *PushResult {
	e.t.Helper()
	res, err := Push(e.ctx, dir, PushOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) pull(dir string) *PullResult {
	e.t.Helper()
	res, err := Pull(e.ctx, dir, Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// TestRoundTrip is the "done when": a folder with symlinks, empty
// directories, executable bits, unicode and space names, an empty file and
// a 40 MB file goes through push and pull bit-exact; head~1 restores the
// previous version exactly; a 100-byte insert into the 40 MB file grows
// the store by at most a few chunks.
func TestRoundTrip(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "docs")
	fixture(t, a)
	first := e.push(a)
	if first.UpToDate || first.ChunksSent == 0 || first.FilesChanged != 7 {
		t.Fatalf("first push: %+v", first)
	}
	want1 := snapshot(t, a)

	b := e.folder("b", "docs")
	pr := e.pull(b)
	if pr.Version != first.Version {
		t.Fatalf("pull got version %s, want %s", pr.Version, first.Version)
	}
	sameSnapshot(t, snapshot(t, b), want1)

	// A no-op push reads nothing.
	if again := e.push(a); !again.UpToDate || again.FilesRead != 0 || again.BytesScanned != 0 {
		t.Errorf("no-op push: %+v; want up to date with nothing read", again)
	}

	// Insert 100 bytes in the middle of the 40 MB file.
	big := filepath.Join(a, "big", "forty.bin")
	data, _ := os.ReadFile(big)
	edited := append(append(append([]byte(nil), data[:20<<20]...), random(2, 100)...), data[20<<20:]...)
	write(t, big, edited, 0o644)
	before := dirSize(t, e.store)
	second := e.push(a)
	grew := dirSize(t, e.store) - before
	if second.FilesChanged != 1 || second.ChunksSent > 2 || second.FilesRead != 1 {
		t.Errorf("push after a 100-byte insert: %+v; want 1 file, at most 2 chunks", second)
	}
	if grew > 3*(4<<20) {
		t.Errorf("a 100-byte insert grew the store by %d bytes; want at most 3 chunks", grew)
	}
	want2 := snapshot(t, a)

	pr = e.pull(b)
	if pr.ChunksFetched > 2 || pr.FilesWritten != 1 {
		t.Errorf("second pull: %+v; want 1 file and at most 2 chunks fetched", pr)
	}
	sameSnapshot(t, snapshot(t, b), want2)

	// head~1 is the first version, exactly.
	target := filepath.Join(e.tmp, "restored")
	rr, err := Restore(e.ctx, a, RestoreOptions{Version: "head~1", To: target})
	if err != nil {
		t.Fatal(err)
	}
	if rr.Version != first.Version {
		t.Errorf("head~1 resolved to %s, want %s", rr.Version, first.Version)
	}
	sameSnapshot(t, snapshot(t, target), want1)

	if res, err := Check(e.ctx, e.store, CheckOptions{ReadData: true}); err != nil || !res.OK || res.Versions != 2 {
		t.Errorf("check: %+v, %v", res, err)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func TestPullAppliesDeletesAndKindChanges(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "gone.txt"), []byte("x"), 0o644)
	write(t, filepath.Join(a, "dir", "inner.txt"), []byte("y"), 0o644)
	write(t, filepath.Join(a, "becomes-dir"), []byte("file"), 0o644)
	os.Symlink("gone.txt", filepath.Join(a, "link-becomes-file"))
	e.push(a)
	b := e.folder("b", "r")
	e.pull(b)

	os.Remove(filepath.Join(a, "gone.txt"))
	os.RemoveAll(filepath.Join(a, "dir"))
	os.Remove(filepath.Join(a, "becomes-dir"))
	write(t, filepath.Join(a, "becomes-dir", "child"), []byte("c"), 0o644)
	os.Remove(filepath.Join(a, "link-becomes-file"))
	write(t, filepath.Join(a, "link-becomes-file"), []byte("now a file"), 0o644)
	e.push(a)
	e.pull(b)
	sameSnapshot(t, snapshot(t, b), snapshot(t, a))
}

// TestConcurrentEditsKeepBoth is the issue's "two devices edit the same
// file while offline": after both sync, both contents survive, the
// remote's under the name and the local's as a conflict copy, in both
// folders.
func TestConcurrentEditsKeepBoth(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "f.txt"), []byte("v1"), 0o644)
	write(t, filepath.Join(a, "other"), []byte("o"), 0o644)
	e.push(a)
	b := e.folder("b", "r")
	e.pull(b)
	write(t, filepath.Join(a, "f.txt"), []byte("v2 from a"), 0o644)
	write(t, filepath.Join(b, "f.txt"), []byte("v2 from b"), 0o644)
	write(t, filepath.Join(b, "only-b"), []byte("b's new file"), 0o644)
	e.push(a)
	res, err := Push(e.ctx, b, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Merged || len(res.Conflicts) != 1 || res.Conflicts[0].Path != "f.txt" {
		t.Fatalf("push from b: %+v; want a merge with one conflict on f.txt", res)
	}
	copyName := filepath.Join(b, res.Conflicts[0].Copy)
	if got, _ := os.ReadFile(filepath.Join(b, "f.txt")); string(got) != "v2 from a" {
		t.Errorf("b/f.txt = %q, want the remote's", got)
	}
	if got, _ := os.ReadFile(copyName); string(got) != "v2 from b" {
		t.Errorf("the conflict copy holds %q, want b's edit", got)
	}
	e.pull(a)
	sameSnapshot(t, snapshot(t, a), snapshot(t, b))
	v, err := index.LoadVersion(e.ctx, mustOpen(t, a).objects(), mustRef(t, res.Version))
	if err != nil || len(v.Parents) != 2 || len(v.Conflicts) != 1 {
		t.Errorf("merge version %+v, %v; want two parents and the conflict recorded", v, err)
	}
}

func mustOpen(t *testing.T, dir string) *session {
	t.Helper()
	s, err := open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

func mustRef(t *testing.T, s string) cas.Ref {
	t.Helper()
	r, err := cas.ParseRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestMergeWithoutConflict: edits to different files on two devices merge
// silently.
func TestMergeWithoutConflict(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "x"), []byte("x1"), 0o644)
	write(t, filepath.Join(a, "y"), []byte("y1"), 0o644)
	e.push(a)
	b := e.folder("b", "r")
	e.pull(b)
	write(t, filepath.Join(a, "x"), []byte("x2"), 0o644)
	os.Remove(filepath.Join(b, "y"))
	e.push(a)
	res := e.pull(b)
	if !res.Merged || len(res.Conflicts) != 0 {
		t.Fatalf("pull: %+v; want a merge without conflicts", res)
	}
	e.pull(a)
	want := map[string]string{"x": "x2"}
	for _, dir := range []string{a, b} {
		got := snapshot(t, dir)
		if len(got) != 1 || !strings.Contains(got["x"], cas.Sum([]byte(want["x"])).Short()) {
			t.Errorf("%s: %v", dir, got)
		}
	}
}

// TestDeletionGuard: a push and a pull that would delete most of the
// folder stop and ask for --force; small deletions pass.
func TestDeletionGuard(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	for i := range 10 {
		write(t, filepath.Join(a, fmt.Sprintf("f%d", i)), []byte{byte(i)}, 0o644)
	}
	e.push(a)
	b := e.folder("b", "r")
	e.pull(b)
	for i := range 8 {
		os.Remove(filepath.Join(a, fmt.Sprintf("f%d", i)))
	}
	if _, err := Push(e.ctx, a, PushOptions{}); !errors.Is(err, ErrTooManyDeletes) {
		t.Fatalf("push deleting 8 of 10 files = %v, want ErrTooManyDeletes", err)
	}
	if _, err := Push(e.ctx, a, PushOptions{Options: Options{Force: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(e.ctx, b, Options{}); !errors.Is(err, ErrTooManyDeletes) {
		t.Fatalf("pull deleting 8 of 10 files = %v, want ErrTooManyDeletes", err)
	}
	if n := len(snapshot(t, b)); n != 10 {
		t.Errorf("the guarded pull changed the folder: %d files", n)
	}
	if _, err := Pull(e.ctx, b, Options{Force: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(snapshot(t, b)); n != 2 {
		t.Errorf("after --force: %d files, want 2", n)
	}
	// Moving every file into a directory, then renaming the directory,
	// deletes nothing: content that moves is not gone.
	for j := range 12 {
		write(t, filepath.Join(a, fmt.Sprintf("g%d", j)), []byte{byte(j), 1}, 0o644)
	}
	e.push(a)
	e.pull(b)
	os.MkdirAll(filepath.Join(a, "moved"), 0o755)
	ents, _ := os.ReadDir(a)
	for _, de := range ents {
		if !de.IsDir() {
			os.Rename(filepath.Join(a, de.Name()), filepath.Join(a, "moved", de.Name()))
		}
	}
	e.push(a)
	e.pull(b)
	os.Rename(filepath.Join(a, "moved"), filepath.Join(a, "renamed"))
	e.push(a)
	e.pull(b)
	// Deleting a few is fewer than the guard's floor.
	for j := range 4 {
		os.Remove(filepath.Join(a, "renamed", fmt.Sprintf("g%d", j)))
	}
	e.push(a)
	e.pull(b)
}

// TestFileChangingWhileRead is catalogue row B7: a file rewritten while it
// is read is read again, and the version holds one whole state of it.
func TestFileChangingWhileRead(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	path := filepath.Join(a, "moving.bin")
	v1, v2 := random(3, 12<<20), random(4, 12<<20)
	write(t, path, v1, 0o644)

	s, err := open(e.ctx, a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var once sync.Once
	rewrites := 0
	dst := &hookDest{Remote: s.remote, onPut: func() {
		once.Do(func() {
			// Same size, new bytes written in place, new mtime, while the
			// scan is mid-file (it waits for this chunk's buffer).
			rewrites++
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt(v2, 0)
			f.Close()
			old := time.Now().Add(-time.Minute)
			os.Chtimes(path, old, old)
		})
	}}
	sc, err := s.scan(e.ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if rewrites != 1 || sc.FilesRead < 2 {
		t.Fatalf("rewrites %d, files read %d: the change was not seen", rewrites, sc.FilesRead)
	}
	e2, err := index.Lookup(e.ctx, s.objects(), sc.Root, "moving.bin")
	if err != nil {
		t.Fatal(err)
	}
	chunks, _, err := index.Chunks(e.ctx, s.objects(), e2.Ref)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, c := range chunks {
		b, err := s.remote.Get(e.ctx, c.Ref)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, v2) {
		t.Errorf("the version holds %d bytes that are neither state whole (v1 %v, v2 %v)", len(got), bytes.Equal(got, v1), bytes.Equal(got, v2))
	}
}

// hookDest is the real remote with a hook on Put.
type hookDest struct {
	Remote
	onPut func()
}

func (h *hookDest) Put(ctx context.Context, r cas.Ref, b []byte) error {
	h.onPut()
	return h.Remote.Put(ctx, r, b)
}

// TestRestoreStaysInTarget is catalogue rows A1, B1 and B3: a version whose
// tree names "../x" is refused by the decoder with nothing written; a
// symlink replaced by a directory across versions is never written
// through; a planted symlink at a file's path is replaced, not followed.
func TestRestoreStaysInTarget(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	outside := filepath.Join(e.tmp, "outside")
	write(t, filepath.Join(outside, "passwd"), []byte("sentinel"), 0o644)
	write(t, filepath.Join(outside, "victim"), []byte("victim"), 0o644)
	sentinels := snapshot(t, outside)

	// v1: s -> ../outside (a symlink); v2: s/passwd (a directory with a file).
	os.Symlink("../outside", filepath.Join(a, "s"))
	write(t, filepath.Join(a, "x"), []byte("x content"), 0o644)
	e.push(a)
	b := e.folder("b", "r")
	e.pull(b)
	os.Remove(filepath.Join(a, "s"))
	write(t, filepath.Join(a, "s", "passwd"), []byte("evil"), 0o644)
	e.push(a)
	// A planted symlink where b's file x will be rewritten.
	write(t, filepath.Join(a, "x"), []byte("x v3"), 0o644)
	e.push(a)
	os.Remove(filepath.Join(b, "x"))
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(b, "x"))
	// b is now "changed" (x is a link); pull refuses. Restore in place of
	// x must replace the link, not follow it.
	if _, err := Restore(e.ctx, b, RestoreOptions{Version: "head", To: filepath.Join(e.tmp, "b2")}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(e.tmp, "b2", "s"))
	if err != nil || !fi.IsDir() {
		t.Errorf("s in the restore: %v, %v; want a directory", fi, err)
	}
	sameSnapshot(t, snapshot(t, outside), sentinels)

	// Planted symlink in the target of a restore --to.
	target := filepath.Join(e.tmp, "t")
	os.MkdirAll(target, 0o755)
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(target, "x"))
	if _, err := Restore(e.ctx, a, RestoreOptions{Version: "head", To: target, Overwrite: OverwriteAlways}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(target, "x")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("x after restore over a planted symlink: %v, %v", fi, err)
	}
	sameSnapshot(t, snapshot(t, outside), sentinels)
}

// TestCraftedTreeRefused plants a tree object with an entry "../x" in the
// store, behind a real version at the head: pull fails with ErrMalformed
// and writes nothing anywhere.
func TestCraftedTreeRefused(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "ok"), []byte("ok"), 0o644)
	e.push(a)
	b := e.folder("b", "r")
	outside := filepath.Join(e.tmp, "x")
	s, err := open(e.ctx, a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fileObj := index.EncodeFile(&index.File{})
	evil := index.EncodeTree(&index.Tree{Entries: []index.Entry{{Name: "../x", Kind: index.KindFile, Mode: 0o644, Ref: cas.Sum(fileObj)}}})
	head, _ := s.remote.Head(e.ctx, "r")
	ver := index.EncodeVersion(&index.Version{Root: cas.Sum(evil), Parents: []cas.Ref{head}, Time: time.Now()})
	for _, o := range [][]byte{fileObj, evil, ver} {
		if err := s.remote.Put(e.ctx, cas.Sum(o), o); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.remote.SwapHead(e.ctx, "r", head, cas.Sum(ver)); err != nil {
		t.Fatal(err)
	}
	s.close()

	_, err = Pull(e.ctx, b, Options{})
	if !errors.Is(err, index.ErrMalformed) || !strings.Contains(err.Error(), "../x") {
		t.Errorf("pull of a crafted tree = %v, want ErrMalformed naming ../x", err)
	}
	if _, err := os.Lstat(outside); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("something was written outside the folder: %v", err)
	}
	if got := snapshot(t, b); len(got) != 0 {
		t.Errorf("the folder got %v", got)
	}
}

// TestCheckFindsCorruption: a chunk corrupted on disk is named by check
// --read-data with the versions and paths it breaks; a pull of it fails
// rather than write wrong bytes.
func TestCheckFindsCorruption(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	content := random(5, 2<<20)
	write(t, filepath.Join(a, "data.bin"), content, 0o644)
	e.push(a)
	packs, _ := filepath.Glob(filepath.Join(e.store, "packs", "*.pack"))
	for _, p := range packs {
		raw, _ := os.ReadFile(p)
		if i := bytes.Index(raw, content[4096:4200]); i >= 0 {
			raw[i] ^= 1
			os.WriteFile(p, raw, 0o600)
		}
	}
	res, err := Check(e.ctx, e.store, CheckOptions{ReadData: true})
	if !errors.Is(err, ErrDamaged) || res == nil || len(res.Damaged) != 1 {
		t.Fatalf("check: %+v, %v; want one damaged blob", res, err)
	}
	d := res.Damaged[0]
	if len(d.Paths) != 1 || d.Paths[0] != "data.bin" || len(d.Versions) != 1 {
		t.Errorf("damage report %+v; want data.bin in one version", d)
	}
	b := e.folder("b", "r")
	if _, err := Pull(e.ctx, b, Options{}); !errors.Is(err, cas.ErrCorrupt) {
		t.Errorf("pull of a corrupt chunk = %v, want ErrCorrupt", err)
	}
	if _, err := os.Lstat(filepath.Join(b, "data.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a partial data.bin is under its final name: %v", err)
	}
}

// TestCheckFindsChunkLengthMismatch (C8): a version whose file object
// gives a chunk another length than the stored chunk's checks as damaged
// (it could not be restored), named with its path.
func TestCheckFindsChunkLengthMismatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ns, _ := db.Namespace("default")
	data := []byte("twenty bytes of data")
	fo, _ := index.FileObjects([]index.ChunkRef{{Ref: cas.Sum(data), Len: 21}})
	tree := index.EncodeTree(&index.Tree{Entries: []index.Entry{{Name: "long.txt", Kind: index.KindFile, Mode: 0o644, Size: 21, Ref: cas.Sum(fo)}}})
	ver := index.EncodeVersion(&index.Version{Root: cas.Sum(tree), Time: time.Unix(1, 0)})
	for _, b := range [][]byte{data, fo, tree, ver} {
		if err := ns.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	// Straight into the store, past the commit check a server makes.
	if err := ns.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(ver)); err != nil {
		t.Fatal(err)
	}
	for _, readData := range []bool{false, true} {
		res, err := CheckDB(ctx, db, "", CheckOptions{ReadData: readData})
		if !errors.Is(err, ErrDamaged) || len(res.Damaged) != 1 || len(res.Damaged[0].Paths) != 1 || res.Damaged[0].Paths[0] != "long.txt" ||
			!strings.Contains(res.Damaged[0].Error, "21 bytes") {
			t.Fatalf("check (read data %v) = %+v, %v; want long.txt damaged", readData, res, err)
		}
	}
}

func TestIgnoreAndSpecialFiles(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, ".ferryignore"), []byte("*.log\nbuild/\n!keep.log\n"), 0o644)
	write(t, filepath.Join(a, "app.log"), []byte("x"), 0o644)
	write(t, filepath.Join(a, "keep.log"), []byte("x"), 0o644)
	write(t, filepath.Join(a, "build", "out"), []byte("x"), 0o644)
	write(t, filepath.Join(a, "sub", ".ferryignore"), []byte("secret\n"), 0o644)
	write(t, filepath.Join(a, "sub", "secret"), []byte("x"), 0o644)
	write(t, filepath.Join(a, "secret"), []byte("not ignored at the top"), 0o644)
	if err := mkfifo(filepath.Join(a, "fifo")); err != nil {
		t.Fatal(err)
	}
	res := e.push(a)
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "fifo") {
		t.Errorf("warnings %v; want one about the fifo", res.Warnings)
	}
	ls, err := Ls(e.ctx, a, "head", "", true, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, l := range ls {
		paths = append(paths, l.Path)
	}
	want := ".ferryignore keep.log secret sub sub/.ferryignore"
	if strings.Join(paths, " ") != want {
		t.Errorf("pushed %v, want %s", paths, want)
	}
}

func TestLogDiffTagResolve(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "f"), []byte("1"), 0o644)
	v1 := e.push(a)
	write(t, filepath.Join(a, "g"), []byte("2"), 0o644)
	e.push(a)
	write(t, filepath.Join(a, "f"), []byte("3"), 0o644)
	v3 := e.push(a)
	if _, err := Tag(e.ctx, a, "first", v1.Version[:10], false, Options{}); err != nil {
		t.Fatal(err)
	}
	log, err := Log(e.ctx, a, "", Options{})
	if err != nil || len(log) != 3 || log[0].Version != v3.Version || !log[0].Head || len(log[2].Tags) != 1 {
		t.Fatalf("log = %+v, %v", log, err)
	}
	flog, err := Log(e.ctx, a, "f", Options{})
	if err != nil || len(flog) != 2 || flog[0].PathOp != "modified" || flog[1].PathOp != "added" {
		t.Errorf("log f = %+v, %v; want modified then added", flog, err)
	}
	d, err := Diff(e.ctx, a, "first", "head", Options{})
	if err != nil || len(d) != 2 {
		t.Errorf("diff first head = %+v, %v", d, err)
	}
	write(t, filepath.Join(a, "h"), []byte("local"), 0o644)
	d, err = Diff(e.ctx, a, "", "", Options{})
	if err != nil || len(d) != 1 || d[0].Path != "h" || d[0].Op != "added" {
		t.Errorf("diff head vs folder = %+v, %v", d, err)
	}
	st, err := Status(e.ctx, a, Options{})
	if err != nil || st.InSync || len(st.LocalChanges) != 1 {
		t.Errorf("status = %+v, %v", st, err)
	}
}

// TestRestoreInPlaceIsUndoable: restoring a path in place first saves the
// folder as a version, so the restore can itself be undone.
func TestRestoreInPlaceIsUndoable(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "doc.txt"), []byte("first draft"), 0o644)
	e.push(a)
	write(t, filepath.Join(a, "doc.txt"), []byte("second draft, not pushed"), 0o644)
	res, err := Restore(e.ctx, a, RestoreOptions{Version: "head", Paths: []string{"doc.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pushed == "" {
		t.Fatal("the unpushed draft was not saved before the restore")
	}
	if got, _ := os.ReadFile(filepath.Join(a, "doc.txt")); string(got) != "first draft" {
		t.Errorf("after restore: %q", got)
	}
	undo, err := Restore(e.ctx, a, RestoreOptions{Version: res.Pushed[:12], Paths: []string{"doc.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = undo
	if got, _ := os.ReadFile(filepath.Join(a, "doc.txt")); string(got) != "second draft, not pushed" {
		t.Errorf("after undo: %q", got)
	}
}

// TestStatusThenPush: a status between an edit and a push reads the file
// but stores nothing, so it must not teach the stat cache that the new
// content is at the remote (the demo once lost a chunk this way).
func TestStatusThenPush(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "list.txt"), []byte("bread\n"), 0o644)
	e.push(a)
	write(t, filepath.Join(a, "list.txt"), []byte("bread\nmilk\n"), 0o644)
	if _, err := Status(e.ctx, a, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Diff(e.ctx, a, "", "", Options{}); err != nil {
		t.Fatal(err)
	}
	res := e.push(a)
	if res.ChunksSent != 1 {
		t.Errorf("push after status sent %d chunks, want the 1 new one", res.ChunksSent)
	}
	if c, err := Check(e.ctx, e.store, CheckOptions{ReadData: true}); err != nil || !c.OK {
		t.Fatalf("check after status+push: %+v, %v", c, err)
	}
	b := e.folder("b", "r")
	e.pull(b)
	if got, _ := os.ReadFile(filepath.Join(b, "list.txt")); string(got) != "bread\nmilk\n" {
		t.Errorf("pulled %q", got)
	}
}

// TestSyncDryRun: the plan names each side's changes and the bytes a pull
// would fetch, exactly as the pull then does, and changes nothing.
func TestSyncDryRun(t *testing.T) {
	e := newEnv(t)
	a, b := e.folder("a", "r"), e.folder("b", "r")
	write(t, filepath.Join(a, "keep.txt"), []byte("kept"), 0o644)
	write(t, filepath.Join(a, "big.bin"), random(7, 3<<20), 0o644)
	e.push(a)
	e.pull(b)
	write(t, filepath.Join(a, "new.bin"), random(8, 1<<20), 0o644)
	os.Remove(filepath.Join(a, "keep.txt"))
	e.push(a)

	before := snapshot(t, b)
	p, err := PlanSync(e.ctx, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.PullChanges) != 2 || len(p.PushChanges) != 0 || p.Merge {
		t.Fatalf("plan: pull %v, push %v, merge %v; want 2 pull changes only", p.PullChanges, p.PushChanges, p.Merge)
	}
	sameSnapshot(t, snapshot(t, b), before)
	res := e.pull(b)
	if res.BytesFetched != p.BytesToFetch || p.BytesToFetch != 1<<20 {
		t.Errorf("the plan said %d bytes to fetch, the pull fetched %d (want %d)", p.BytesToFetch, res.BytesFetched, 1<<20)
	}

	write(t, filepath.Join(b, "local.txt"), []byte("mine"), 0o644)
	p, err = PlanSync(e.ctx, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.PushChanges) != 1 || p.PushChanges[0].Path != "local.txt" || p.BlobsToSend == 0 {
		t.Errorf("plan after a local change: push %v, %d blobs", p.PushChanges, p.BlobsToSend)
	}
}
