package engine

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/casefoldfs"
	"github.com/ferry-sync/ferry/state"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != index.StateDir {
			out = append(out, e.Name())
		}
	}
	return out
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCaseFoldingFolder (A8): a folder on a filesystem that folds case
// (a real one: a FUSE mount that folds as macOS and ext4's casefold do)
// is probed as such. A pull of a version holding "README" and "readme"
// overwrites neither: the second is kept under a conflict copy's name,
// with a warning and a conflict; the folder's pushes keep both names, and
// edits to the copy reach the other name; case-only renames arrive as
// renames in both directions.
func TestCaseFoldingFolder(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	b := filepath.Join(casefoldfs.MountT(t), "b")
	if _, err := Init(e.ctx, b, InitOptions{Remote: e.store, Root: "r"}); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{a: false, b: true} {
		f, err := state.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if f.Config.CaseFold != want {
			t.Errorf("%s: probed case folding %v, want %v", dir, f.Config.CaseFold, want)
		}
		f.Close()
	}
	write(t, filepath.Join(a, "README"), []byte("upper"), 0o644)
	write(t, filepath.Join(a, "readme"), []byte("lower"), 0o644)
	write(t, filepath.Join(a, "todo.txt"), []byte("todo"), 0o644)
	write(t, filepath.Join(a, "docs", "Notes.txt"), []byte("notes"), 0o644)
	e.push(a)

	res, err := Pull(e.ctx, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Conflicts) != 1 || res.Conflicts[0].Path != "readme" || res.Conflicts[0].Kind != "case" {
		t.Fatalf("pull onto a case-folding folder: conflicts %+v, want readme as a case conflict", res.Conflicts)
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "folds case") {
		t.Errorf("no warning about the collision: %q", res.Warnings)
	}
	alias := filepath.Base(res.Conflicts[0].Copy)
	if got := names(t, b); !slices.Equal(got, []string{"README", "docs", alias, "todo.txt"}) {
		t.Fatalf("folder holds %v", got)
	}
	if readString(t, filepath.Join(b, "README")) != "upper" || readString(t, filepath.Join(b, alias)) != "lower" {
		t.Fatal("the collision overwrote one name with the other")
	}

	// Nothing changed here: the push records neither name as deleted.
	if res, err := Push(e.ctx, b, PushOptions{}); err != nil || !res.UpToDate {
		t.Fatalf("push of the unchanged folder: %+v, %v", res, err)
	}
	// An edit of the copy is an edit of readme.
	write(t, filepath.Join(b, alias), []byte("lower, edited"), 0o644)
	e.push(b)
	e.pull(a)
	if readString(t, filepath.Join(a, "readme")) != "lower, edited" || readString(t, filepath.Join(a, "README")) != "upper" {
		t.Fatal("the edit of the conflict copy did not reach readme")
	}

	// Case-only renames from the other device: one adds the new name
	// first (TODO.txt sorts before todo.txt), one removes the old first.
	os.Rename(filepath.Join(a, "todo.txt"), filepath.Join(a, "TODO.txt"))
	os.Rename(filepath.Join(a, "docs", "Notes.txt"), filepath.Join(a, "docs", "notes.txt"))
	e.push(a)
	e.pull(b)
	if got := names(t, b); !slices.Contains(got, "TODO.txt") || slices.Contains(got, "todo.txt") || readString(t, filepath.Join(b, "TODO.txt")) != "todo" {
		t.Fatalf("after the rename todo.txt -> TODO.txt the folder holds %v", got)
	}
	if got := names(t, filepath.Join(b, "docs")); !slices.Equal(got, []string{"notes.txt"}) || readString(t, filepath.Join(b, "docs", "notes.txt")) != "notes" {
		t.Fatalf("after the rename Notes.txt -> notes.txt docs holds %v", got)
	}

	// A case-only rename here (through another name, as Linux needs) is a
	// rename there.
	os.Rename(filepath.Join(b, "README"), filepath.Join(b, "tmp-name"))
	os.Rename(filepath.Join(b, "tmp-name"), filepath.Join(b, "ReadMe"))
	e.push(b)
	e.pull(a)
	if got := names(t, a); !slices.Contains(got, "ReadMe") || slices.Contains(got, "README") || !slices.Contains(got, "readme") {
		t.Fatalf("after the rename README -> ReadMe the other folder holds %v", got)
	}
}

// TestNFDNames (A7): names macOS writes in NFD are synced (in NFC, the
// versions' form) instead of skipped; the folder that holds the NFD
// spelling finds its file under it again, so pulls update that file and
// never make an NFC twin beside it; NFC and NFD twins in one directory
// are a collision, and the NFD one is skipped with a warning.
func TestNFDNames(t *testing.T) {
	e := newEnv(t)
	a, b := e.folder("a", "r"), e.folder("b", "r")
	nfd, nfc := "cafe\u0301.txt", "caf\u00e9.txt"
	write(t, filepath.Join(a, nfd), []byte("from a"), 0o644)
	res := e.push(a)
	if len(res.Warnings) != 0 {
		t.Errorf("push of an NFD name warned: %q", res.Warnings)
	}
	e.pull(b)
	if got := names(t, b); !slices.Equal(got, []string{nfc}) || readString(t, filepath.Join(b, nfc)) != "from a" {
		t.Fatalf("the other folder holds %q", got)
	}
	// A change from the other side updates the NFD file, in place.
	write(t, filepath.Join(b, nfc), []byte("from b"), 0o644)
	e.push(b)
	e.pull(a)
	if got := names(t, a); !slices.Equal(got, []string{nfd}) || readString(t, filepath.Join(a, nfd)) != "from b" {
		t.Fatalf("after the pull the NFD folder holds %q", got)
	}
	// And its own edits reach the other side, under the one name.
	write(t, filepath.Join(a, nfd), []byte("from a again"), 0o644)
	if res := e.push(a); res.FilesChanged != 1 {
		t.Errorf("push of an edit of the NFD file changed %d files", res.FilesChanged)
	}
	e.pull(b)
	if readString(t, filepath.Join(b, nfc)) != "from a again" {
		t.Fatal("the edit did not arrive")
	}

	// Twins: both spellings in one directory.
	write(t, filepath.Join(a, "twin-"+nfc), []byte("nfc"), 0o644)
	write(t, filepath.Join(a, "twin-"+nfd), []byte("nfd"), 0o644)
	res = e.push(a)
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "one name in Unicode NFC") {
		t.Errorf("push of NFC/NFD twins did not warn: %q", res.Warnings)
	}
	e.pull(b)
	if readString(t, filepath.Join(b, "twin-"+nfc)) != "nfc" {
		t.Fatal("of the twins, the NFC one was not the one synced")
	}
}
