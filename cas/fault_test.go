package cas_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/ferry-sync/ferry/cas"
)

// TestFsyncErrorFailsTheStore (F3): an fsync that fails (EIO) is never
// retried and never followed by an acknowledgement: the flush fails with
// ErrFailed, and so does every later write and every head read, even once
// the disk would take writes again. What was durable before survives.
func TestFsyncErrorFailsTheStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string // suffix of the file whose sync fails
		size int    // blob size: packed or inline
	}{
		{"pack", ".pack", 256 << 10},
		{"wal", ".log", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mem := vfs.NewMem()
			var armed atomic.Bool
			fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				switch op.Kind {
				case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
					if armed.Load() && strings.HasSuffix(op.Path, tc.file) {
						return syscall.EIO
					}
				}
				return nil
			}))
			db, err := cas.Open("store", cas.Options{Create: true, FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			n := ns(t, db, "a")
			first, second := random(10, tc.size), random(11, tc.size)
			if err := n.Put(ctx, cas.Sum(first), first); err != nil {
				t.Fatal(err)
			}
			if err := n.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(first)); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			_ = n.Put(ctx, cas.Sum(second), second) // may be buffered
			err = n.SwapHead(ctx, "r", cas.Sum(first), cas.Sum(second))
			if !errors.Is(err, cas.ErrFailed) {
				t.Fatalf("SwapHead over a failing fsync = %v, want ErrFailed", err)
			}
			armed.Store(false) // the disk is fine again: the store stays failed
			if err := n.Put(ctx, cas.Sum(second), second); !errors.Is(err, cas.ErrFailed) {
				t.Errorf("Put after a failed fsync = %v, want ErrFailed", err)
			}
			if err := n.SwapHead(ctx, "r", cas.Sum(first), cas.Sum(second)); !errors.Is(err, cas.ErrFailed) {
				t.Errorf("SwapHead after a failed fsync = %v, want ErrFailed", err)
			}
			if _, err := n.Head(ctx, "r"); !errors.Is(err, cas.ErrFailed) {
				t.Errorf("Head after a failed fsync = %v, want ErrFailed (it may not be durable)", err)
			}
			if err := db.Flush(ctx); !errors.Is(err, cas.ErrFailed) {
				t.Errorf("Flush after a failed fsync = %v, want ErrFailed", err)
			}
			db.Close()
			// What a restart finds: the acknowledged head, intact.
			db, err = cas.Open("store", cas.Options{FS: mem})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			n = ns(t, db, "a")
			if h, err := n.Head(ctx, "r"); err != nil || h != cas.Sum(first) && h != cas.Sum(second) {
				t.Fatalf("head after restart = %s, %v", h.Short(), err)
			}
			if got, err := n.Get(ctx, cas.Sum(first)); err != nil || !bytes.Equal(got, first) {
				t.Fatalf("acknowledged blob after restart: %v", err)
			}
		})
	}
}

// TestReadErrorIsCorrupt (F5): a pack read that fails (EIO) is damage:
// ErrCorrupt to the reader, never wrong bytes, and check reports it.
func TestReadErrorIsCorrupt(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	var armed atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && op.Kind == errorfs.OpFileReadAt && strings.HasSuffix(op.Path, ".pack") {
			return syscall.EIO
		}
		return nil
	}))
	db, err := cas.Open("store", cas.Options{Create: true, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	n := ns(t, db, "a")
	blob := random(12, 300<<10)
	if err := n.Put(ctx, cas.Sum(blob), blob); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // reads then come from the file
		t.Fatal(err)
	}
	db, err = cas.Open("store", cas.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n = ns(t, db, "a")
	armed.Store(true)
	if got, err := n.Get(ctx, cas.Sum(blob)); !errors.Is(err, cas.ErrCorrupt) || got != nil {
		t.Fatalf("Get over EIO = %d bytes, %v; want ErrCorrupt", len(got), err)
	}
	var found []cas.Damage
	if _, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { found = append(found, d) }); err != nil || len(found) != 1 || found[0].Ref != cas.Sum(blob) {
		t.Fatalf("check over EIO found %v, %v", found, err)
	}
	armed.Store(false)
	found = nil
	if _, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { found = append(found, d) }); err != nil || len(found) != 0 {
		t.Fatalf("check once reads work again found %v, %v", found, err)
	}
}

// TestMinFreeRefusesNewBlobs (F4, unit): below the free-space mark, blobs
// new to a namespace are refused with ErrFull before anything is written,
// while heads still move and reads go on; once space returns, puts
// succeed again.
func TestMinFreeRefusesNewBlobs(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 30, TotalBytes: 2 << 30})
	db, err := cas.Open("store", cas.Options{Create: true, FS: mem, MinFree: 512 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, b := ns(t, db, "a"), ns(t, db, "b")
	kept := random(13, 64<<10)
	if err := a.Put(ctx, cas.Sum(kept), kept); err != nil {
		t.Fatal(err)
	}
	// The disk fills from outside: the store asks the filesystem again
	// at least every 16 MiB written, so it refuses within that.
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 100 << 20, TotalBytes: 2 << 30})
	var fresh []byte
	var written int
	for {
		fresh = random(uint64(100+written/(256<<10)), 256<<10)
		err := a.Put(ctx, cas.Sum(fresh), fresh)
		if errors.Is(err, cas.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if written += len(fresh); written > 17<<20 {
			t.Fatalf("%d bytes accepted below the free-space mark", written)
		}
	}
	if !strings.Contains(fmt.Sprint(a.Put(ctx, cas.Sum(fresh), fresh)), "the store keeps 536870912 free") {
		t.Error("the refusal does not say how much the server keeps free")
	}
	if has, _ := a.Has(ctx, []cas.Ref{cas.Sum(fresh)}); has[0] {
		t.Fatal("a refused blob was stored")
	}
	// A blob another namespace stores costs what a new one costs (C6):
	// refused the same way; one the namespace has already is fine.
	if err := b.Put(ctx, cas.Sum(kept), kept); !errors.Is(err, cas.ErrFull) {
		t.Fatalf("claiming another namespace's blob below the mark = %v, want ErrFull like a new blob", err)
	}
	if err := a.Put(ctx, cas.Sum(kept), kept); err != nil {
		t.Fatalf("putting a blob the namespace has, below the mark: %v", err)
	}
	if err := a.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(kept)); err != nil {
		t.Fatalf("SwapHead below the mark: %v", err)
	}
	if got, err := a.Get(ctx, cas.Sum(kept)); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("read below the mark: %v", err)
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 30, TotalBytes: 2 << 30})
	if err := a.Put(ctx, cas.Sum(fresh), fresh); err != nil {
		t.Fatalf("Put once space returned: %v", err)
	}
}

// TestShortAndSSTableReadErrors (F5): a pack cut short on disk, and EIO
// from reads of Pebble's tables, are damage: ErrCorrupt, never wrong
// bytes, and check reports the short pack.
func TestShortAndSSTableReadErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("short pack", func(t *testing.T) {
		dir := t.TempDir()
		db := openDB(t, dir)
		blob := random(15, 512<<10)
		if err := ns(t, db, "a").Put(ctx, cas.Sum(blob), blob); err != nil {
			t.Fatal(err)
		}
		db.Close()
		packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
		fi, _ := os.Stat(packs[0])
		if err := os.Truncate(packs[0], fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		db = openDB(t, dir)
		if got, err := ns(t, db, "a").Get(ctx, cas.Sum(blob)); !errors.Is(err, cas.ErrCorrupt) || got != nil {
			t.Fatalf("Get from a short pack = %d bytes, %v; want ErrCorrupt", len(got), err)
		}
		var found []cas.Damage
		if _, err := db.Check(ctx, cas.CheckOptions{ReadData: true}, func(d cas.Damage) { found = append(found, d) }); err != nil || len(found) != 1 {
			t.Fatalf("check of a short pack found %v, %v", found, err)
		}
	})
	t.Run("sstable EIO", func(t *testing.T) {
		mem := vfs.NewMem()
		var armed atomic.Bool
		fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
			if armed.Load() && op.Kind == errorfs.OpFileReadAt && strings.HasSuffix(op.Path, ".sst") {
				return syscall.EIO
			}
			return nil
		}))
		db, err := cas.Open("store", cas.Options{Create: true, FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		// Many blobs, so that the data block holding the one read below is
		// not among those the store reads (and caches) as it opens.
		small := []byte("an inline blob, as a tree is")
		for i := range 2000 {
			b := append(bytes.Clone(small), byte(i), byte(i>>8))
			if i == 1000 {
				b = small
			}
			if err := ns(t, db, "a").Put(ctx, cas.Sum(b), b); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.FlushMemtable(); err != nil {
			t.Fatal(err)
		}
		db.Close()
		db, err = cas.Open("store", cas.Options{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		armed.Store(true)
		if got, err := ns(t, db, "a").Get(ctx, cas.Sum(small)); !errors.Is(err, cas.ErrCorrupt) || got != nil {
			t.Fatalf("Get over EIO from a table = %q, %v; want ErrCorrupt", got, err)
		}
	})
}
