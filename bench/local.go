package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// LocalConfig is the local-engine workload: ferry against a store on the
// same disk, with the disk's own copy speed as the reference.
type LocalConfig struct {
	// Ferry is the ferry binary to measure.
	Ferry string
	// Work is a scratch directory (default: a new temp dir, removed after).
	Work string
	// BigSize is the size of the one-large-file push (default 4 GiB).
	BigSize int64
	// SmallFiles is the size of the no-op folder (default 100,000).
	SmallFiles int
	// Runs per figure; the median is reported (default 3).
	Runs int
	// Log, if set, receives a line per step.
	Log func(string)
}

func (c *LocalConfig) applyDefaults() {
	if c.BigSize == 0 {
		c.BigSize = 4 << 30
	}
	if c.SmallFiles == 0 {
		c.SmallFiles = 100_000
	}
	if c.Runs == 0 {
		c.Runs = 3
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
}

// pushSummary is the part of `ferry push --json` the harness reads.
type pushSummary struct {
	FilesRead int64 `json:"files_read"`
	BytesSent int64 `json:"bytes_sent"`
	UpToDate  bool  `json:"up_to_date"`
}

// RunLocal measures: a push of one large random file (wall time and peak
// RSS) against `dd conv=fsync` of the same file; and a no-op push of a
// folder of many small files that the stat cache knows.
func RunLocal(ctx context.Context, c LocalConfig) (*Report, error) {
	c.applyDefaults()
	cleanup, err := scratch(&c.Work, "ferry-bench-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rep := &Report{Title: "ferry local engine", Date: time.Now(), Machine: Machine(), Tools: map[string]string{"ferry": version(ctx, c.Ferry)}}

	// One large file.
	big := filepath.Join(c.Work, "big", "big.bin")
	c.Log(fmt.Sprintf("writing %s of random data", Human(c.BigSize)))
	if err := writeRandom(big, 1, c.BigSize); err != nil {
		return nil, err
	}
	copyTo := filepath.Join(c.Work, "copy.bin")
	c.Log("dd conv=fsync (the disk's copy speed)")
	dd, err := median(c.Runs, func() (Measure, error) {
		defer os.Remove(copyTo)
		return Exec(ctx, nil, "dd", "if="+big, "of="+copyTo, "bs=16M", "conv=fsync", "status=none")
	})
	if err != nil {
		return nil, err
	}
	rep.Rows = append(rep.Rows, Row{Workload: "one " + Human(c.BigSize) + " file", Step: "copy", Tool: "dd conv=fsync", Median: dd, Runs: c.Runs, Bytes: c.BigSize})
	c.Log("ferry push of the large file")
	var sent int64
	push, err := median(c.Runs, func() (Measure, error) {
		store := filepath.Join(c.Work, "store-big")
		os.RemoveAll(store)
		os.RemoveAll(filepath.Join(c.Work, "big", ".ferry"))
		if _, err := Exec(ctx, nil, c.Ferry, "init", filepath.Join(c.Work, "big"), "--remote", store); err != nil {
			return Measure{}, err
		}
		m, err := Exec(ctx, nil, c.Ferry, "--json", "push", filepath.Join(c.Work, "big"))
		if err == nil {
			var s pushSummary
			_ = json.Unmarshal([]byte(m.Stdout), &s)
			sent = s.BytesSent
		}
		return m, err
	})
	if err != nil {
		return nil, err
	}
	rep.Rows = append(rep.Rows, Row{Workload: "one " + Human(c.BigSize) + " file", Step: "initial push", Tool: "ferry", Median: push, Runs: c.Runs, Bytes: sent,
		Note: "chunk, hash, compress-or-not, pack, fsync"})
	rep.Ratios = append(rep.Ratios,
		Ratio{What: "push of one large file, wall time / dd conv=fsync", Value: push.Wall.Seconds() / dd.Wall.Seconds(), Target: "close to 1"},
		Ratio{What: fmt.Sprintf("peak RSS of that push (MB)"), Value: float64(push.MaxRSS) / 1e6, Target: "< 150"},
	)
	os.RemoveAll(filepath.Join(c.Work, "big"))
	os.RemoveAll(filepath.Join(c.Work, "store-big"))

	// Many small files, no-op.
	small := filepath.Join(c.Work, "small")
	c.Log(fmt.Sprintf("writing %d small files", c.SmallFiles))
	if err := writeSmallFiles(small, c.SmallFiles); err != nil {
		return nil, err
	}
	store := filepath.Join(c.Work, "store-small")
	if _, err := Exec(ctx, nil, c.Ferry, "init", small, "--remote", store); err != nil {
		return nil, err
	}
	c.Log("ferry initial push of the small files")
	first, err := Exec(ctx, nil, c.Ferry, "push", small)
	if err != nil {
		return nil, err
	}
	workload := fmt.Sprintf("%d small files", c.SmallFiles)
	rep.Rows = append(rep.Rows, Row{Workload: workload, Step: "initial push", Tool: "ferry", Median: first, Runs: 1})
	c.Log("ferry no-op push")
	var read int64 = -1
	noop, err := median(c.Runs, func() (Measure, error) {
		m, err := Exec(ctx, nil, c.Ferry, "--json", "push", small)
		if err == nil {
			var s pushSummary
			_ = json.Unmarshal([]byte(m.Stdout), &s)
			if !s.UpToDate {
				return m, fmt.Errorf("no-op push was not up to date: %s", m.Stdout)
			}
			read = max(read, s.FilesRead)
		}
		return m, err
	})
	if err != nil {
		return nil, err
	}
	rep.Rows = append(rep.Rows, Row{Workload: workload, Step: "no-op push", Tool: "ferry", Median: noop, Runs: c.Runs,
		Note: fmt.Sprintf("files read: %d", read)})
	rep.Ratios = append(rep.Ratios, Ratio{What: fmt.Sprintf("no-op push of %d files (s)", c.SmallFiles), Value: noop.Wall.Seconds(), Target: "< 1 (100k files)"})
	return rep, nil
}

func version(ctx context.Context, bin string, args ...string) string {
	if len(args) == 0 {
		args = []string{"--version"}
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
