package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
	// IdleFiles is the burst written before the idle CPU is measured over
	// Idle (defaults 100,000 and 30 s).
	IdleFiles int
	Idle      time.Duration
	Log       func(string)
}

// RunWatchLatency measures write-to-appearance latency, p50 and p99.
func RunWatchLatency(ctx context.Context, c WatchConfig) (*Report, error) {
	if c.Writes == 0 {
		c.Writes = 100
	}
	if c.IdleFiles == 0 {
		c.IdleFiles = 100_000
	}
	if c.Idle == 0 {
		c.Idle = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
	cleanup, err := scratch(&c.Work, "ferry-bench-watch-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
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
	var watchers []*exec.Cmd
	for _, dir := range []string{a, b} {
		cmd := exec.CommandContext(ctx, c.Ferry, "--json", "watch", dir)
		watchers = append(watchers, cmd)
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

	// A burst of IdleFiles files, then the CPU the two watchers use while
	// nothing happens.
	c.Log(fmt.Sprintf("burst of %d files", c.IdleFiles))
	start := time.Now()
	if err := writeSmallFiles(filepath.Join(a, "many"), c.IdleFiles); err != nil {
		return nil, err
	}
	for countFiles(filepath.Join(b, "many")) < c.IdleFiles {
		if time.Since(start) > 10*time.Minute {
			return nil, fmt.Errorf("the burst of %d files did not arrive in 10 minutes", c.IdleFiles)
		}
		time.Sleep(50 * time.Millisecond) // sampling, not synchronisation
	}
	burst := time.Since(start)
	rep.Rows = append(rep.Rows, Row{Workload: fmt.Sprintf("%d new files at once", c.IdleFiles), Step: "written on A to all on B", Tool: "ferry watch",
		Median: Measure{Wall: burst}, Runs: 1})
	// Idle means nothing left to do: wait (at most 3 minutes) until a
	// 2-second window passes with both watchers nearly still.
	c.Log("waiting for the watchers to settle")
	for settle := time.Now(); time.Since(settle) < 3*time.Minute; {
		var cpu0 []time.Duration
		for _, w := range watchers {
			cpu0 = append(cpu0, procCPU(w.Process.Pid))
		}
		time.Sleep(2 * time.Second) // the sampling window
		still := true
		for i, w := range watchers {
			if procCPU(w.Process.Pid)-cpu0[i] > 40*time.Millisecond {
				still = false
			}
		}
		if still {
			break
		}
	}
	c.Log(fmt.Sprintf("idle for %s", c.Idle))
	var before []time.Duration
	for _, w := range watchers {
		before = append(before, procCPU(w.Process.Pid))
	}
	idleStart := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(c.Idle): // the measured idle window
	}
	window := time.Since(idleStart)
	var worst float64
	for i, w := range watchers {
		used := procCPU(w.Process.Pid) - before[i]
		worst = max(worst, 100*used.Seconds()/window.Seconds())
	}
	rep.Rows = append(rep.Rows, Row{Workload: fmt.Sprintf("watching a folder of %d files", c.IdleFiles+c.Writes+1), Step: "idle", Tool: "ferry watch",
		Median: Measure{Wall: window}, Runs: 1, Note: fmt.Sprintf("busier watcher: %.2f%% of a core", worst)})
	rep.Ratios = append(rep.Ratios, Ratio{What: fmt.Sprintf("idle watcher CPU on %d files (%% of a core)", c.IdleFiles), Value: worst, Target: "< 1 at 100k files"})
	return rep, nil
}

// countFiles counts the regular files under dir.
func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// procCPU is the user+system CPU time a process has used so far.
func procCPU(pid int) time.Duration { return procTicks(pid, false) }

// procTreeCPU is procCPU with that of the children it has reaped (an
// rsync daemon's per-connection children).
func procTreeCPU(pid int) time.Duration { return procTicks(pid, true) }

func procTicks(pid int, children bool) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" that ends the command name: utime is the 12th,
	// stime the 13th, cutime and cstime the 14th and 15th, in clock
	// ticks (100 per second on Linux).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 15 {
		return 0
	}
	n := 2
	if children {
		n = 4
	}
	var total int64
	for _, f := range fields[11 : 11+n] {
		var v int64
		fmt.Sscan(f, &v)
		total += v
	}
	return time.Duration(total) * 10 * time.Millisecond
}
