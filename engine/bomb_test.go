package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// TestDAGBombClient (C7): a version of 2^40 paths (a petabyte) through 40
// distinct trees, put straight into a store past any commit check, is
// handled in bounded time and memory by everything a client does with it:
// restore and pull refuse it with ErrTooBig before writing anything, diff
// refuses it, and check (which visits each object once) checks it.
func TestDAGBombClient(t *testing.T) {
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "x.txt"), []byte("x"), 0o644)
	first := e.push(a).Version

	db, err := cas.Open(e.store, cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := db.Namespace(DefaultNamespace)
	put := func(b []byte) cas.Ref {
		r := cas.Sum(b)
		if err := ns.Put(e.ctx, r, b); err != nil {
			t.Fatal(err)
		}
		return r
	}
	data := make([]byte, 1<<10)
	fo, _ := index.FileObjects([]index.ChunkRef{{Ref: put(data), Len: uint32(len(data))}})
	entry := index.Entry{Kind: index.KindFile, Mode: 0o644, Size: int64(len(data)), Ref: put(fo)}
	for level := range 40 {
		x, y := entry, entry
		x.Name, y.Name = "a", "b"
		entry = index.Entry{Name: fmt.Sprint(level), Kind: index.KindDir, Mode: 0o755, Size: 2 * entry.Size,
			Ref: put(index.EncodeTree(&index.Tree{Entries: []index.Entry{x, y}}))}
	}
	head, _ := ns.Head(e.ctx, "r")
	bomb := put(index.EncodeVersion(&index.Version{Root: entry.Ref, Parents: []cas.Ref{head}, Time: time.Unix(2, 0)}))
	if err := ns.SwapHead(e.ctx, "r", head, bomb); err != nil {
		t.Fatal(err)
	}
	db.Close()

	bounded := func(what string, f func(context.Context) error, want error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
		defer cancel()
		err := f(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s of a DAG bomb did not end", what)
		}
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Fatalf("%s of a DAG bomb = %v, want %v", what, err, want)
		}
	}
	to := filepath.Join(e.tmp, "restored")
	bounded("restore", func(ctx context.Context) error {
		_, err := Restore(ctx, a, RestoreOptions{Version: "head", To: to})
		return err
	}, index.ErrTooBig)
	if entries, _ := os.ReadDir(to); len(entries) != 0 {
		t.Fatalf("the refused restore wrote %d entries", len(entries))
	}
	b := e.folder("b", "r")
	bounded("pull", func(ctx context.Context) error { _, err := Pull(ctx, b, Options{}); return err }, index.ErrTooBig)
	if got := names(t, b); len(got) != 0 {
		t.Fatalf("the refused pull wrote %v", got)
	}
	bounded("diff", func(ctx context.Context) error { _, err := Diff(ctx, a, first, "head", Options{}); return err }, index.ErrTooBig)
	bounded("check", func(ctx context.Context) error {
		_, err := Check(ctx, e.store, CheckOptions{ReadData: true})
		return err
	}, nil)
}
