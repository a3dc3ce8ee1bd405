package engine

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-sync/ferry/gc"
)

// TestRestoreMissingData (E5): a version whose data the store lost (here:
// a chunk found damaged by check) is refused before anything is written,
// with the paths that lack data named; --partial restores the rest, in a
// target and in place (where the lost path stays as it is), and never
// leaves a partial file under a final name. A version that was forgotten
// and collected says so.
func TestRestoreMissingData(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	big := random(21, 2<<20)
	write(t, filepath.Join(a, "keep.txt"), []byte("still here"), 0o644)
	write(t, filepath.Join(a, "dir", "big.bin"), big, 0o644)
	write(t, filepath.Join(a, "dir", "small.txt"), []byte("small"), 0o644)
	v1 := e.push(a).Version

	// Rot in big.bin's pack, found by a check, so the store calls it
	// missing.
	packs, _ := filepath.Glob(filepath.Join(e.store, "packs", "*.pack"))
	for _, p := range packs {
		raw, _ := os.ReadFile(p)
		if i := bytes.Index(raw, big[100000:100100]); i >= 0 {
			raw[i] ^= 0x20
			os.WriteFile(p, raw, 0o600)
		}
	}
	if _, err := Check(e.ctx, e.store, CheckOptions{ReadData: true}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("check of the rotten store: %v", err)
	}

	target := filepath.Join(e.tmp, "t1")
	_, err := Restore(e.ctx, a, RestoreOptions{Version: v1, To: target})
	var ie *IncompleteError
	if !errors.As(err, &ie) || ie.Total != 1 || ie.Paths[0] != "dir/big.bin" || !strings.Contains(err.Error(), "--partial") {
		t.Fatalf("restore of a version with lost data = %v; want an IncompleteError naming dir/big.bin", err)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Fatalf("a refused restore wrote %v", entries)
	}

	res, err := Restore(e.ctx, a, RestoreOptions{Version: v1, To: target, Partial: true})
	if err != nil {
		t.Fatalf("partial restore: %v", err)
	}
	if len(res.Missing) != 1 || res.Missing[0] != "dir/big.bin" {
		t.Fatalf("partial restore left out %v, want dir/big.bin", res.Missing)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "keep.txt")); string(b) != "still here" {
		t.Fatalf("partial restore: keep.txt = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "dir", "small.txt")); string(b) != "small" {
		t.Fatalf("partial restore: dir/small.txt = %q", b)
	}
	if _, err := os.Lstat(filepath.Join(target, "dir", "big.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the lost file is in the target: %v", err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(target, "dir", ".ferry-tmp-*")); len(tmps) != 0 {
		t.Fatalf("temporary files left: %v", tmps)
	}

	// In place: the lost path keeps what the folder has.
	write(t, filepath.Join(a, "keep.txt"), []byte("changed here"), 0o644)
	write(t, filepath.Join(a, "dir", "big.bin"), []byte("the folder's own big.bin"), 0o644)
	e.push(a)
	if _, err := Restore(e.ctx, a, RestoreOptions{Version: v1, Partial: true}); err != nil {
		t.Fatalf("partial restore in place: %v", err)
	}
	keep, _ := os.ReadFile(filepath.Join(a, "keep.txt"))
	own, _ := os.ReadFile(filepath.Join(a, "dir", "big.bin"))
	if string(keep) != "still here" || string(own) != "the folder's own big.bin" {
		t.Fatalf("in place: keep.txt %q, dir/big.bin %q", keep, own)
	}

	// Forgotten and collected: said so.
	if _, err := Forget(e.ctx, a, ForgetOptions{Policy: gc.Policy{Last: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := GC(e.ctx, e.store, GCOptions{Grace: 0}); err != nil && !errors.Is(err, ErrDamaged) {
		t.Fatalf("gc: %v", err)
	}
	_, err = Restore(e.ctx, a, RestoreOptions{Version: v1, To: filepath.Join(e.tmp, "t2")})
	if err == nil || !strings.Contains(err.Error(), "forgotten") {
		t.Fatalf("restore of a forgotten, collected version = %v; want it said", err)
	}
}
