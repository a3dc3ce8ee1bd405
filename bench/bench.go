// Package bench holds ferry's benchmark workloads as code: each is a
// Config and a Run function that drives real processes (the ferry binary,
// and peers such as cp, rsync and restic) on generated data and measures
// them in the same run, so figures can be given as ratios on a shared,
// noisy machine. `ferry bench` binds flags to the Configs; results are
// written as markdown and JSON under bench/results/.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Measure is one run of one command.
type Measure struct {
	Wall time.Duration `json:"wall_ns"`
	CPU  time.Duration `json:"cpu_ns"` // user + system
	// ServerCPU is what the server side spent meanwhile, for peers that
	// have one (ferry serve, the rsync daemon and its children).
	ServerCPU time.Duration `json:"server_cpu_ns,omitempty"`
	MaxRSS    int64         `json:"max_rss_bytes"`
	Stdout    string        `json:"-"`
}

// Exec runs a command to completion and measures it. A non-zero exit is
// an error that includes the command's stderr.
func Exec(ctx context.Context, env []string, name string, args ...string) (Measure, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	// ferry's --json status lines would sit before the summary the
	// benchmarks read; their cost is not what is measured.
	cmd.Env = append(append(os.Environ(), "FERRY_PROGRESS_FPS=0"), env...)
	// ferry reports its own peak RSS: the rusage of a child counts pages
	// of the parent's from before the exec.
	rss, _ := os.CreateTemp("", "ferry-rss-")
	if rss != nil {
		rss.Close()
		defer os.Remove(rss.Name())
		cmd.Env = append(cmd.Env, "FERRY_RSS_FILE="+rss.Name())
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	m := Measure{Wall: time.Since(start), Stdout: out.String()}
	if ps := cmd.ProcessState; ps != nil {
		m.CPU = ps.UserTime() + ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			m.MaxRSS = ru.Maxrss * 1024
		}
	}
	if rss != nil {
		if b, err := os.ReadFile(rss.Name()); err == nil && len(b) > 0 {
			var kb int64
			if _, err := fmt.Sscanf(string(b), "%d", &kb); err == nil {
				m.MaxRSS = kb * 1024
			}
		}
	}
	if err != nil {
		return m, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return m, nil
}

// Row is one line of a results table: a step, ferry's figures, a peer's,
// and their ratio.
type Row struct {
	Workload string  `json:"workload"`
	Step     string  `json:"step"`
	Tool     string  `json:"tool"`
	Median   Measure `json:"median"`
	Runs     int     `json:"runs"`
	// Bytes is what the step moved (to the store or over the wire).
	Bytes int64 `json:"bytes,omitempty"`
	// Size is the workload's bytes, for the CPU-seconds per GB column.
	Size int64 `json:"size,omitempty"`
	// Note says what a figure means or why it is missing.
	Note string `json:"note,omitempty"`
}

// Report is a set of rows with the machine they were measured on.
type Report struct {
	Title   string            `json:"title"`
	Date    time.Time         `json:"date"`
	Machine string            `json:"machine"`
	Tools   map[string]string `json:"tools"`
	Rows    []Row             `json:"rows"`
	Ratios  []Ratio           `json:"ratios"`
}

// Ratio compares two rows' wall times: Value = ferry / peer (below 1 is
// ferry faster).
type Ratio struct {
	What   string  `json:"what"`
	Value  float64 `json:"value"`
	Target string  `json:"target,omitempty"`
}

// median runs fn n times and returns the run with the median wall time
// (and the median peak RSS).
func median(n int, fn func() (Measure, error)) (Measure, error) {
	var ms []Measure
	for range n {
		m, err := fn()
		if err != nil {
			return Measure{}, err
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Measure) int { return int(a.Wall - b.Wall) })
	mid := ms[len(ms)/2]
	rss := make([]int64, len(ms))
	for i, m := range ms {
		rss[i] = m.MaxRSS
	}
	slices.Sort(rss)
	mid.MaxRSS = rss[len(rss)/2]
	return mid, nil
}

// Machine describes where the figures were taken.
func Machine() string {
	host, _ := os.Hostname()
	cpu := "unknown cpu"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores (%s), %s/%s, %s", host, runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n%s, on %s\n\n", r.Title, r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Machine)
	var tools []string
	for t, v := range r.Tools {
		tools = append(tools, fmt.Sprintf("%s %s", t, v))
	}
	slices.Sort(tools)
	fmt.Fprintf(&b, "Tools: %s\n\n", strings.Join(tools, "; "))
	server := slices.ContainsFunc(r.Rows, func(row Row) bool { return row.Median.ServerCPU > 0 })
	if server {
		b.WriteString("| workload | step | tool | wall (median) | CPU | server CPU | CPU-s/GB client / server | peak RSS | bytes moved | runs | note |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	} else {
		b.WriteString("| workload | step | tool | wall (median) | CPU | peak RSS | bytes moved | runs | note |\n|---|---|---|---|---|---|---|---|---|\n")
	}
	for _, row := range r.Rows {
		bytes := ""
		if row.Bytes > 0 {
			bytes = Human(row.Bytes)
		}
		cpu := Dur(row.Median.CPU)
		if server {
			perGB := ""
			if row.Size > 0 && row.Median.CPU > 0 {
				gb := float64(row.Size) / 1e9
				perGB = fmt.Sprintf("%.2f / %.2f", row.Median.CPU.Seconds()/gb, row.Median.ServerCPU.Seconds()/gb)
			}
			cpu += " | " + Dur(row.Median.ServerCPU) + " | " + perGB
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", row.Workload, row.Step, row.Tool,
			Dur(row.Median.Wall), cpu, Human(row.Median.MaxRSS), bytes, row.Runs, row.Note)
	}
	if len(r.Ratios) > 0 {
		b.WriteString("\n| ratio | value | target |\n|---|---|---|\n")
		for _, q := range r.Ratios {
			fmt.Fprintf(&b, "| %s | %.2f | %s |\n", q.What, q.Value, q.Target)
		}
	}
	return b.String()
}

// Save writes the report as NAME.md and NAME.json in dir.
func (r *Report) Save(dir, name string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".md"), []byte(r.Markdown()), 0o644)
}

// Human prints a byte count.
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Dur prints a duration with 3 significant digits.
func Dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return d.String()
}

// writeRandom writes n pseudo-random bytes (seeded: the same on every
// machine) to path, with an mtime an hour old.
func writeRandom(path string, seed uint64, n int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7})
	if _, err := io.CopyN(f, r, n); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	old := time.Now().Add(-time.Hour)
	return os.Chtimes(path, old, old)
}

// writeSmallFiles writes n small files, 100 to a directory, with mtimes an
// hour old.
func writeSmallFiles(dir string, n int) error {
	old := time.Now().Add(-time.Hour)
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("d%04d", i/1000), fmt.Sprintf("e%02d", i/100%10))
		if i%100 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		p := filepath.Join(d, fmt.Sprintf("file-%07d.txt", i))
		if err := os.WriteFile(p, fmt.Appendf(nil, "small file number %d\n", i), 0o644); err != nil {
			return err
		}
		if err := os.Chtimes(p, old, old); err != nil {
			return err
		}
	}
	return nil
}

// scratch makes a temporary directory for *work when it is empty; cleanup
// removes what it made (and nothing the caller named).
func scratch(work *string, prefix string) (cleanup func(), err error) {
	if *work != "" {
		return func() {}, nil
	}
	w, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	*work = w
	return func() { os.RemoveAll(w) }, nil
}
