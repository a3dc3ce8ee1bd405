package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// WatchConfig is the watch latency workload: two `ferry watch` processes
// on one server; the time from a write in one folder to the file being in
// the other.
type WatchConfig struct {
	Ferry  string
	Work   string
	Writes int // default 100
	Log    func(string)
}

// RunWatchLatency measures write-to-appearance latency, p50 and p99.
func RunWatchLatency(ctx context.Context, c WatchConfig) (*Report, error) {
	if c.Writes == 0 {
		c.Writes = 100
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
	if c.Work == "" {
		w, err := os.MkdirTemp("", "ferry-bench-watch-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(w)
		c.Work = w
	}
	rep := &Report{Title: "ferry watch latency (server on 127.0.0.1)", Date: time.Now(), Machine: Machine(), Tools: map[string]string{"ferry": version(ctx, c.Ferry)}}
	peer, err := NewFerryPeer(ctx, c.Ferry, c.Work, Net{})
	if err != nil {
		return nil, err
	}
	defer peer.Close()
	fp := peer.(*ferryPeer)
	if err := fp.Fresh(ctx); err != nil {
		return nil, err
	}
	a, b := filepath.Join(c.Work, "a"), filepath.Join(c.Work, "b")
	os.MkdirAll(a, 0o755)
	os.WriteFile(filepath.Join(a, "start"), []byte("start"), 0o644)
	if _, _, err := fp.Send(ctx, a); err != nil {
		return nil, err
	}
	if _, err := fp.Receive(ctx, b); err != nil {
		return nil, err
	}
	for _, dir := range []string{a, b} {
		cmd := exec.CommandContext(ctx, c.Ferry, "--json", "watch", dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
		sc := bufio.NewScanner(out)
		if !sc.Scan() { // the first round: the watch is up
			return nil, fmt.Errorf("ferry watch %s did not start", dir)
		}
		go func() {
			for sc.Scan() {
			}
		}()
	}
	c.Log(fmt.Sprintf("%d writes", c.Writes))
	var lat []time.Duration
	for i := range c.Writes {
		name := fmt.Sprintf("w%03d.txt", i)
		want := fmt.Sprintf("write %d at %d", i, time.Now().UnixNano())
		start := time.Now()
		if err := os.WriteFile(filepath.Join(a, name), []byte(want), 0o644); err != nil {
			return nil, err
		}
		deadline := start.Add(30 * time.Second)
		for {
			if got, err := os.ReadFile(filepath.Join(b, name)); err == nil && string(got) == want {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("write %d did not arrive in 30s", i)
			}
			time.Sleep(2 * time.Millisecond) // the sampling step: 2 ms of resolution
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	rep.Rows = append(rep.Rows, Row{Workload: fmt.Sprintf("%d writes of one small file", c.Writes), Step: "write on A to file on B", Tool: "ferry watch",
		Median: Measure{Wall: p50}, Runs: c.Writes, Note: fmt.Sprintf("p50 %s, p99 %s, max %s", Dur(p50), Dur(p99), Dur(lat[len(lat)-1]))})
	rep.Ratios = append(rep.Ratios,
		Ratio{What: "watch latency p50 (ms)", Value: float64(p50.Milliseconds()), Target: "< 300 (Syncthing's default delay: 10 s)"},
		Ratio{What: "watch latency p99 (ms)", Value: float64(p99.Milliseconds()), Target: "< 1000"})
	return rep, nil
}
