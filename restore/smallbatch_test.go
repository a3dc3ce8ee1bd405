package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// countingBatches is a chunk source that batches, counting its calls.
type countingBatches struct {
	g            cas.Getter
	gets, batchs atomic.Int64
}

func (c *countingBatches) Get(ctx context.Context, r cas.Ref) ([]byte, error) {
	c.gets.Add(1)
	return c.g.Get(ctx, r)
}

func (c *countingBatches) GetMany(ctx context.Context, refs []cas.Ref, fn func(cas.Ref, []byte) error) error {
	c.batchs.Add(1)
	for _, r := range refs {
		b, err := c.g.Get(ctx, r)
		if err != nil {
			return err
		}
		// The caller may keep only a copy: the next call reuses this.
		if err := fn(r, b); err != nil {
			return err
		}
		clear(b)
	}
	return nil
}

// TestSmallFilesFetchedInGroups: a restore of 1,000 new small files
// (some sharing content) fetches their chunks in a few batches, not one
// request a file, and every file has its content.
func TestSmallFilesFetchedInGroups(t *testing.T) {
	s := newStore(t)
	const n = 1000
	dirs := map[string]index.Entry{}
	for d := range 10 {
		files := map[string]index.Entry{}
		for i := range n / 10 {
			files[fmt.Sprintf("f%03d", i)] = s.file(fmt.Sprintf("content of %d", (d*100+i)%700))
		}
		dirs[fmt.Sprintf("d%d", d)] = dir(s.tree(files))
	}
	root := s.tree(dirs)
	target := t.TempDir()
	src := &countingBatches{g: s.n}
	res, err := Apply(context.Background(), target, s.n, cas.Ref{}, root, Options{Workers: 2, Chunks: src})
	if err != nil {
		t.Fatal(err)
	}
	for d := range 10 {
		for i := range n / 10 {
			b, err := os.ReadFile(filepath.Join(target, fmt.Sprintf("d%d", d), fmt.Sprintf("f%03d", i)))
			if want := fmt.Sprintf("content of %d", (d*100+i)%700); err != nil || string(b) != want {
				t.Fatalf("d%d/f%03d: %q, %v; want %q", d, i, b, err, want)
			}
		}
	}
	if got, max := src.batchs.Load(), int64(n/groupFilesMax+1); got > max || src.gets.Load() != 0 {
		t.Errorf("%d batches and %d single gets for %d small files, want at most %d batches and none single", got, src.gets.Load(), n, max)
	}
	if res.ChunksFetched != n {
		t.Errorf("%d chunks fetched, want %d", res.ChunksFetched, n)
	}
}

// TestSmallFileGroupMissingChunk: a file of a group whose chunk is not
// there fails the restore with its path, as it would alone.
func TestSmallFileGroupMissingChunk(t *testing.T) {
	s := newStore(t)
	files := map[string]index.Entry{}
	for i := range 10 {
		files[fmt.Sprintf("f%d", i)] = s.file(fmt.Sprintf("file %d", i))
	}
	lost := []byte("this chunk was never stored")
	fo, _ := index.FileObjects([]index.ChunkRef{{Ref: cas.Sum(lost), Len: uint32(len(lost))}})
	files["lost"] = index.Entry{Kind: index.KindFile, Mode: 0o644, Size: int64(len(lost)), Ref: s.put(fo)}
	root := s.tree(files)
	_, err := Apply(context.Background(), t.TempDir(), s.n, cas.Ref{}, root, Options{Workers: 2, Chunks: &countingBatches{g: s.n}})
	if !errors.Is(err, cas.ErrNotFound) || !strings.Contains(err.Error(), `"lost"`) {
		t.Fatalf("restore with a missing chunk = %v, want not found naming \"lost\"", err)
	}
}
