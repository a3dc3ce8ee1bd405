package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ScaleConfig is the scale curve: how a no-op sync's time and memory grow
// with the number of files, and a push's time with the size of a file,
// through a real server on 127.0.0.1.
type ScaleConfig struct {
	Ferry string
	Work  string
	// Files are the folder sizes for the no-op curve (default 1k, 10k,
	// 100k; 1M behind --large).
	Files []int
	// Sizes are the file sizes for the push curve (default 1 GiB; 4 and 16
	// GiB behind --large).
	Sizes []int64
	Runs  int
	Log   func(string)
}

func (c *ScaleConfig) applyDefaults() {
	if c.Files == nil {
		c.Files = []int{1000, 10_000, 100_000}
	}
	if c.Sizes == nil {
		c.Sizes = []int64{1 << 30}
	}
	if c.Runs == 0 {
		c.Runs = 3
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
}

// RunScale measures the curves.
func RunScale(ctx context.Context, c ScaleConfig) (*Report, error) {
	c.applyDefaults()
	cleanup, err := scratch(&c.Work, "ferry-bench-scale-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rep := &Report{Title: "ferry scale curves (server on 127.0.0.1)", Date: time.Now(), Machine: Machine(), Tools: map[string]string{"ferry": version(ctx, c.Ferry)}}
	peer, err := NewFerryPeer(ctx, c.Ferry, c.Work, Net{})
	if err != nil {
		return nil, err
	}
	defer peer.Close()
	for _, n := range c.Files {
		dir := filepath.Join(c.Work, fmt.Sprintf("files-%d", n))
		c.Log(fmt.Sprintf("writing %d files", n))
		if err := writeSmallFiles(dir, n); err != nil {
			return nil, err
		}
		if err := peer.Fresh(ctx); err != nil {
			return nil, err
		}
		c.Log(fmt.Sprintf("%d files: initial push", n))
		first, _, err := peer.Send(ctx, dir)
		if err != nil {
			return nil, err
		}
		work := fmt.Sprintf("%d small files", n)
		rep.Rows = append(rep.Rows, Row{Workload: work, Step: "initial push", Tool: "ferry", Median: first, Runs: 1})
		c.Log(fmt.Sprintf("%d files: no-op push", n))
		noop, err := median(c.Runs, func() (Measure, error) { m, _, err := peer.Send(ctx, dir); return m, err })
		if err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, Row{Workload: work, Step: "no-op sync", Tool: "ferry", Median: noop, Runs: c.Runs})
		rep.Ratios = append(rep.Ratios, Ratio{What: fmt.Sprintf("peak client memory, no-op sync of %d files (MB)", n), Value: float64(noop.MaxRSS) / 1e6, Target: "< 300 at 1M files"})
		os.RemoveAll(dir)
	}
	for _, size := range c.Sizes {
		dir := filepath.Join(c.Work, fmt.Sprintf("size-%d", size))
		c.Log(fmt.Sprintf("writing %s", Human(size)))
		if err := writeRandom(filepath.Join(dir, "big.bin"), 31, size); err != nil {
			return nil, err
		}
		if err := peer.Fresh(ctx); err != nil {
			return nil, err
		}
		c.Log(fmt.Sprintf("%s: push", Human(size)))
		m, b, err := peer.Send(ctx, dir)
		if err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, Row{Workload: "one " + Human(size) + " random file", Step: "initial push", Tool: "ferry", Median: m, Runs: 1, Bytes: b,
			Note: fmt.Sprintf("%.0f MB/s", float64(size)/m.Wall.Seconds()/1e6)})
		os.RemoveAll(dir)
	}
	return rep, nil
}
