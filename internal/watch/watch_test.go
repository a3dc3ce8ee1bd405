package watch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func next(t *testing.T, w *Watcher) Batch {
	t.Helper()
	select {
	case b := <-w.Batches():
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch")
		return Batch{}
	}
}

func TestBatches(t *testing.T) {
	dir := t.TempDir()
	w, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o644)
	b := next(t, w)
	if !slices.Contains(b.Paths, "a") {
		t.Errorf("batch %v misses a", b.Paths)
	}
	// A new directory is watched, and what is written into it is seen.
	os.MkdirAll(filepath.Join(dir, "d", "e"), 0o755)
	next(t, w)
	os.WriteFile(filepath.Join(dir, "d", "e", "f"), []byte("y"), 0o644)
	deadline := time.After(10 * time.Second)
	for {
		b = next(t, w)
		if slices.Contains(b.Paths, "d/e/f") {
			break
		}
		select {
		case <-deadline:
			t.Fatal("a file in a new directory was not seen")
		default:
		}
	}
	// Our own state and temporary files are not changes.
	os.MkdirAll(filepath.Join(dir, ".ferry"), 0o755)
	os.WriteFile(filepath.Join(dir, ".ferry-tmp-x"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "after"), nil, 0o644)
	b = next(t, w)
	for _, p := range b.Paths {
		if p == ".ferry" || p == ".ferry-tmp-x" {
			t.Errorf("batch reports %q", p)
		}
	}
}

// TestBusyUntilClosed: a file being written is busy until its writer
// closes it.
func TestBusyUntilClosed(t *testing.T) {
	dir := t.TempDir()
	w, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f, err := os.Create(filepath.Join(dir, "slow"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("part"))
	b := next(t, w)
	if !slices.Contains(b.Paths, "slow") || !w.Busy("slow") {
		t.Fatalf("after a write: batch %v, busy %v", b.Paths, w.Busy("slow"))
	}
	f.Close()
	next(t, w) // the close
	if w.Busy("slow") {
		t.Error("still busy after close")
	}
}

// TestOverflow: a kernel queue overflow becomes a rescan batch.
func TestOverflow(t *testing.T) {
	w, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.handle(-1, unix.IN_Q_OVERFLOW, "")
	if b := next(t, w); !b.Overflow {
		t.Errorf("batch %+v, want an overflow", b)
	}
}
