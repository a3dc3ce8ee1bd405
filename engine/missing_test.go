package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-sync/ferry/cas"
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

// TestRepairCoversSSTableCorruption (C10, inline blobs): trees and file
// lists live in Pebble's tables. Bytes flipped in the store's table on
// disk are damage to repair, which reports it, and reads give
// ErrCorrupt, never wrong bytes: a restore either fails or restores
// exactly.
func TestRepairCoversSSTableCorruption(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	for i := range 50 {
		write(t, filepath.Join(a, "docs", fmt.Sprintf("f%02d.txt", i)), []byte(fmt.Sprintf("file %d", i)), 0o644)
	}
	e.push(a)
	want := snapshot(t, a)
	// A collection compacts the store: every record is in a table.
	if _, err := GC(e.ctx, e.store, GCOptions{Grace: -1}); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(e.store, "pebble", "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no sstable after the compaction")
	}
	var biggest string
	var size int64
	for _, p := range tables {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
	}
	raw, _ := os.ReadFile(biggest)
	for i := range 64 {
		raw[len(raw)/4+i] ^= 0xFF // inside the data blocks, far from the footer
	}
	os.WriteFile(biggest, raw, 0o600)

	res, err := Repair(e.ctx, e.store, RepairOptions{})
	if err == nil || res == nil || res.OK || res.Damaged == 0 {
		t.Fatalf("repair of a store with a rotten table: %+v, %v; want damage reported", res, err)
	}
	t.Logf("repair: %d damaged, %d paths (%d healable, %d lost), %d unattributed", res.Damaged, len(res.Paths), res.Healable, res.Lost, len(res.Unreferenced))
	to := filepath.Join(e.tmp, "restored")
	if _, err := Restore(e.ctx, a, RestoreOptions{Version: "head", To: to}); err == nil {
		sameSnapshot(t, snapshot(t, to), want)
	} else if !errors.Is(err, cas.ErrCorrupt) && !errors.Is(err, ErrIncomplete) && !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("restore from a rotten table: %v; want a corruption error or exact bytes", err)
	}
}
