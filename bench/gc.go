package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// GCConfig sizes the collection workloads.
type GCConfig struct {
	Ferry string
	Work  string
	// Chunks in the synthetic store (default 1,000,000).
	Chunks int
	// FileSize and Pushes for the space workload (default 20 MiB, 5).
	FileSize int64
	Pushes   int
	Log      func(string)
}

func (c *GCConfig) applyDefaults() {
	if c.Chunks == 0 {
		c.Chunks = 1_000_000
	}
	if c.FileSize == 0 {
		c.FileSize = 20 << 20
	}
	if c.Pushes == 0 {
		c.Pushes = 5
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
}

// RunGC measures `ferry gc` on a store of Chunks chunks of which 40% are
// dead (time and peak memory of the whole process), and the space a store
// keeps after Pushes pushes of a changing file, forget --keep-last 1 and
// gc, against the size of the one version kept.
func RunGC(ctx context.Context, c GCConfig) (*Report, error) {
	c.applyDefaults()
	cleanup, err := scratch(&c.Work, "ferry-bench-gc-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rep := &Report{Title: "ferry garbage collection", Date: time.Now(), Machine: Machine(), Tools: map[string]string{"ferry": version(ctx, c.Ferry)}}

	store := filepath.Join(c.Work, "big-store")
	c.Log(fmt.Sprintf("gc: building a store of %d chunks", c.Chunks))
	t0 := time.Now()
	if err := BuildGCStore(ctx, store, c.Chunks); err != nil {
		return nil, fmt.Errorf("gc store: %w", err)
	}
	c.Log(fmt.Sprintf("gc: built in %s; collecting", time.Since(t0).Round(time.Millisecond)))
	m, err := Exec(ctx, nil, c.Ferry, "--json", "gc", "--remote", store, "--grace", "0s")
	if err != nil {
		return nil, err
	}
	var st struct {
		Blobs   int   `json:"blobs_deleted"`
		Live    int   `json:"live_blobs"`
		MarkMS  int64 `json:"mark_ms"`
		SweepMS int64 `json:"sweep_ms"`
	}
	_ = json.Unmarshal([]byte(m.Stdout), &st)
	name := fmt.Sprintf("store of %d chunks (40%% dead; 64-byte chunks, inline)", c.Chunks)
	rep.Rows = append(rep.Rows, Row{Workload: name, Step: "gc", Tool: "ferry", Median: m, Runs: 1,
		Note: fmt.Sprintf("%d live, %d deleted; mark %d ms, sweep %d ms", st.Live, st.Blobs, st.MarkMS, st.SweepMS)})
	rep.Ratios = append(rep.Ratios,
		Ratio{What: fmt.Sprintf("gc of %d chunks: wall seconds", c.Chunks), Value: m.Wall.Seconds(), Target: "< 60 at 1M chunks"},
		Ratio{What: fmt.Sprintf("gc of %d chunks: peak RSS (MB)", c.Chunks), Value: float64(m.MaxRSS) / 1e6, Target: "< 200 at 1M chunks"})

	// Space: pushes of a changing file, forget all but the last, gc.
	folder, pstore := filepath.Join(c.Work, "folder"), filepath.Join(c.Work, "store")
	if _, err := Exec(ctx, nil, c.Ferry, "init", folder, "--remote", pstore, "-q"); err != nil {
		return nil, err
	}
	for i := range c.Pushes {
		if err := writeRandom(filepath.Join(folder, "data.bin"), uint64(100+i), c.FileSize); err != nil {
			return nil, err
		}
		if _, err := Exec(ctx, nil, c.Ferry, "push", folder, "-q"); err != nil {
			return nil, err
		}
	}
	before := dirSize(pstore)
	if _, err := Exec(ctx, nil, c.Ferry, "forget", folder, "--keep-last", "1", "-q"); err != nil {
		return nil, err
	}
	m, err = Exec(ctx, nil, c.Ferry, "gc", "--remote", pstore, "--grace", "0s", "-q")
	if err != nil {
		return nil, err
	}
	after := dirSize(pstore)
	name = fmt.Sprintf("%d pushes of a changing %s file", c.Pushes, Human(c.FileSize))
	rep.Rows = append(rep.Rows, Row{Workload: name, Step: "forget --keep-last 1 + gc", Tool: "ferry", Median: m, Runs: 1, Bytes: before - after,
		Note: fmt.Sprintf("store %s before, %s after; live data %s", Human(before), Human(after), Human(c.FileSize))})
	rep.Ratios = append(rep.Ratios, Ratio{What: "store size after forget --keep-last 1 + gc / live data", Value: float64(after) / float64(c.FileSize), Target: "<= 1.10"})
	return rep, nil
}

// dirSize is the disk space (allocated blocks) under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// BuildGCStore writes a store (exported for profiling a collection) with n small chunks in files of 64 chunks,
// directories of 500 files, and two versions: the first names the first
// 60% of the files, the second the last 60%. The first is then dropped
// from the history, so 40% of the chunks are dead. The store's clock is
// set an hour back so nothing is within a grace period.
func BuildGCStore(ctx context.Context, dir string, n int) error {
	past := time.Now().Add(-time.Hour)
	db, err := cas.Open(dir, cas.Options{Create: true, Now: func() time.Time { return past }})
	if err != nil {
		return err
	}
	defer db.Close()
	ns, err := db.Namespace("default")
	if err != nil {
		return err
	}
	const perFile, perDir = 64, 500
	files := n / perFile
	var fileRefs []index.Entry
	chunk := make([]byte, 64)
	for f := range files {
		list := make([]index.ChunkRef, perFile)
		for i := range perFile {
			binary.LittleEndian.PutUint64(chunk, uint64(f*perFile+i))
			binary.LittleEndian.PutUint64(chunk[8:], 0x9e3779b97f4a7c15)
			ref := cas.Sum(chunk)
			if err := ns.Put(ctx, ref, chunk); err != nil {
				return err
			}
			list[i] = index.ChunkRef{Ref: ref, Len: uint32(len(chunk))}
		}
		top, parts := index.FileObjects(list)
		for _, p := range parts {
			if err := ns.Put(ctx, cas.Sum(p), p); err != nil {
				return err
			}
		}
		ref := cas.Sum(top)
		if err := ns.Put(ctx, ref, top); err != nil {
			return err
		}
		fileRefs = append(fileRefs, index.Entry{Name: fmt.Sprintf("f%06d", f), Kind: index.KindFile, Mode: 0o644, Size: perFile * 64, Ref: ref})
	}
	version := func(from, to int) (cas.Ref, error) {
		var dirs []index.Entry
		for d := from; d < to; d += perDir {
			t, err := index.NewTree(fileRefs[d:min(d+perDir, to)])
			if err != nil {
				return cas.Ref{}, err
			}
			b := index.EncodeTree(t)
			ref := cas.Sum(b)
			if err := ns.Put(ctx, ref, b); err != nil {
				return cas.Ref{}, err
			}
			dirs = append(dirs, index.Entry{Name: fmt.Sprintf("d%06d", d), Kind: index.KindDir, Mode: 0o755, Ref: ref})
		}
		root, err := index.NewTree(dirs)
		if err != nil {
			return cas.Ref{}, err
		}
		rb := index.EncodeTree(root)
		if err := ns.Put(ctx, cas.Sum(rb), rb); err != nil {
			return cas.Ref{}, err
		}
		vb := index.EncodeVersion(&index.Version{Root: cas.Sum(rb), Time: past, Device: "bench"})
		vref := cas.Sum(vb)
		return vref, ns.Put(ctx, vref, vb)
	}
	v1, err := version(0, files*6/10)
	if err != nil {
		return err
	}
	v2, err := version(files*4/10, files)
	if err != nil {
		return err
	}
	if err := ns.Flush(ctx); err != nil {
		return err
	}
	if err := ns.SwapHead(ctx, "bench", cas.Ref{}, v1); err != nil {
		return err
	}
	if err := ns.SwapHead(ctx, "bench", v1, v2); err != nil {
		return err
	}
	hist, err := ns.History(ctx, "bench")
	if err != nil {
		return err
	}
	return ns.DropHistory(ctx, "bench", []uint64{hist[0].Seq})
}
