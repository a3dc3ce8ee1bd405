package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// ScaleConfig is the scale curve: how a no-op sync's time and memory grow
// with the number of files, and a push's time with the size of a file,
// through a real server on 127.0.0.1.
type ScaleConfig struct {
	Ferry string
	Work  string
	// Files are the folder sizes for the many-files curve: initial and
	// no-op push (default 10k, 100k, 300k, 1M).
	Files []int
	// Sizes are the file sizes for the push curve (default 1 GiB; 4 and 16
	// GiB behind --large).
	Sizes []int64
	Runs  int
	Log   func(string)
}

func (c *ScaleConfig) applyDefaults() {
	if c.Files == nil {
		c.Files = []int{10_000, 100_000, 300_000, 1_000_000}
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

// scalePoint measures the initial and no-op push of the n files in dir
// through a fresh server.
func scalePoint(ctx context.Context, c ScaleConfig, rep *Report, dir string, n int) (time.Duration, error) {
	work := filepath.Join(c.Work, fmt.Sprintf("server-%d", n))
	defer os.RemoveAll(work)
	peer, err := NewFerryPeer(ctx, c.Ferry, work, Net{})
	if err != nil {
		return 0, err
	}
	defer peer.Close()
	if err := peer.Fresh(ctx); err != nil {
		return 0, err
	}
	c.Log(fmt.Sprintf("%d files: initial push", n))
	first, _, err := peer.Send(ctx, dir)
	if err != nil {
		return 0, err
	}
	serverPeak := peer.(*ferryPeer).srv.PeakRSS()
	name := fmt.Sprintf("%d small files", n)
	rep.Rows = append(rep.Rows, Row{Workload: name, Step: "initial push", Tool: "ferry", Median: first, Runs: 1,
		Note: "server peak RSS " + Human(serverPeak)})
	c.Log(fmt.Sprintf("%d files: no-op push", n))
	noop, err := median(c.Runs, func() (Measure, error) { m, _, err := peer.Send(ctx, dir); return m, err })
	if err != nil {
		return 0, err
	}
	rep.Rows = append(rep.Rows, Row{Workload: name, Step: "no-op sync", Tool: "ferry", Median: noop, Runs: c.Runs})
	rep.Ratios = append(rep.Ratios,
		Ratio{What: fmt.Sprintf("peak client memory, initial push of %d files (MB)", n), Value: float64(first.MaxRSS) / 1e6, Target: "< 300 at 1M files"},
		Ratio{What: fmt.Sprintf("peak server memory, initial push of %d files (MB)", n), Value: float64(serverPeak) / 1e6, Target: "< 500 at 1M files"},
		Ratio{What: fmt.Sprintf("peak client memory, no-op sync of %d files (MB)", n), Value: float64(noop.MaxRSS) / 1e6, Target: "< 300 at 1M files"})
	return first.Wall, nil
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
	// Each file count gets a server and store of its own, so that a point
	// on the curve does not pay for the data of the points before it.
	initial := map[int]time.Duration{}
	for _, n := range c.Files {
		dir := filepath.Join(c.Work, fmt.Sprintf("files-%d", n))
		c.Log(fmt.Sprintf("writing %d files", n))
		if err := writeSmallFiles(dir, n); err != nil {
			return nil, err
		}
		wall, err := scalePoint(ctx, c, rep, dir, n)
		if err != nil {
			return nil, err
		}
		initial[n] = wall
		os.RemoveAll(dir)
	}
	// The curve against 100k files (the smallest count without it).
	base := 100_000
	if _, ok := initial[base]; !ok {
		base = slices.Min(c.Files)
	}
	for _, n := range c.Files {
		if n > base {
			rep.Ratios = append(rep.Ratios, Ratio{
				What:   fmt.Sprintf("initial push of %d files over that of %d (%gx the files)", n, base, float64(n)/float64(base)),
				Value:  initial[n].Seconds() / initial[base].Seconds(),
				Target: "<= 10 for 1M over 100k",
			})
		}
	}
	peer, err := NewFerryPeer(ctx, c.Ferry, c.Work, Net{})
	if err != nil {
		return nil, err
	}
	defer peer.Close()
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
