package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows a long command's progress: a bar on a terminal (total,
// percent, rate and ETA, in IEC units), restic's "status" lines with
// --json, and with -v a line per file moved. The percentage follows the
// command's main work: the bytes a push reads, or a pull, restore or get
// writes; totals grow while a push's walk is still finding files.
type progress struct {
	mu       sync.Mutex
	start    time.Time
	bar      *progressbar.ProgressBar // nil: no bar
	status   io.Writer                // --json status lines; nil: none
	interval time.Duration
	last     time.Time
	verbose  io.Writer // -v file list; nil: none
	json     bool

	phase                  string
	totalFiles, totalBytes int64
	files, bytes           int64
	current                string
}

// statusLine is restic's status message (075_scripting.rst), with the
// phase ferry is in.
type statusLine struct {
	MessageType      string   `json:"message_type"` // "status"
	Phase            string   `json:"phase"`
	SecondsElapsed   int64    `json:"seconds_elapsed"`
	SecondsRemaining int64    `json:"seconds_remaining,omitempty"`
	PercentDone      float64  `json:"percent_done"`
	TotalFiles       int64    `json:"total_files"`
	FilesDone        int64    `json:"files_done"`
	TotalBytes       int64    `json:"total_bytes"`
	BytesDone        int64    `json:"bytes_done"`
	CurrentFiles     []string `json:"current_files,omitempty"`
}

// verboseLine is restic's verbose_status message: one file moved.
type verboseLine struct {
	MessageType string `json:"message_type"` // "verbose_status"
	Action      string `json:"action"`
	Item        string `json:"item"`
}

// progressInterval is how often progress is shown: FERRY_PROGRESS_FPS
// times a second (restic's RESTIC_PROGRESS_FPS), default def; 0 shows
// none (with --json: no status lines).
func progressInterval(def time.Duration) time.Duration {
	v := getenv("FERRY_PROGRESS_FPS")
	if v == "" {
		return def
	}
	fps, err := strconv.ParseFloat(v, 64)
	if err != nil || fps <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / fps)
}

// newProgress returns the reporter for a command doing what, or nil when
// there is nothing to show. moves says the command moves files: it then
// prints --json status lines and -v's file list too.
func (g *globals) newProgress(what string, moves bool) *progress {
	if g.quiet {
		return nil
	}
	p := &progress{start: time.Now(), json: g.json, phase: what}
	p.last = p.start
	if g.verbose >= 1 && moves {
		p.verbose = g.stdout
	}
	if g.json && moves {
		if p.interval = progressInterval(time.Second); p.interval > 0 {
			p.status = g.stdout
		}
	} else if g.showBar() {
		throttle := progressInterval(100 * time.Millisecond)
		if throttle == 0 {
			throttle = 100 * time.Millisecond
		}
		p.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(g.stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionThrottle(throttle),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionFullWidth(),
		)
	}
	if p.bar == nil && p.status == nil && p.verbose == nil {
		return nil
	}
	return p
}

// showBar: --progress forces the bar, --no-progress hides it; otherwise
// it shows when stderr is a terminal.
func (g *globals) showBar() bool {
	switch {
	case g.noProgress:
		return false
	case g.progress:
		return true
	}
	f, ok := g.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progress) event(e engine.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Phase == "upload" {
		return // a push's figure is what it read; the summary says what it sent
	}
	if e.Phase != p.phase {
		p.phase = e.Phase
		if p.bar != nil {
			p.bar.Describe(e.Phase)
		}
	}
	p.totalFiles += e.TotalFiles
	p.totalBytes += e.TotalBytes
	p.files += e.Files
	p.bytes += e.Bytes
	if e.Path != "" {
		p.current = e.Path
	}
	if p.verbose != nil && e.Action != "" && e.Path != "" {
		p.printVerbose(e)
	}
	if p.bar != nil {
		if e.TotalBytes > 0 {
			p.bar.ChangeMax64(max(p.totalBytes, p.bytes))
		}
		if e.Bytes > 0 {
			_ = p.bar.Add64(e.Bytes)
		}
	}
	if p.status != nil {
		if now := time.Now(); now.Sub(p.last) >= p.interval {
			p.last = now
			p.printStatus(now)
		}
	}
}

func (p *progress) printVerbose(e engine.Progress) {
	if p.json {
		b, _ := json.Marshal(verboseLine{MessageType: "verbose_status", Action: e.Action, Item: e.Path})
		fmt.Fprintf(p.verbose, "%s\n", b)
		return
	}
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintf(p.verbose, "%-8s %s\n", e.Action, e.Path)
}

func (p *progress) printStatus(now time.Time) {
	elapsed := now.Sub(p.start)
	st := statusLine{MessageType: "status", Phase: p.phase, SecondsElapsed: int64(elapsed.Seconds()),
		TotalFiles: p.totalFiles, FilesDone: p.files, TotalBytes: p.totalBytes, BytesDone: p.bytes}
	if p.totalBytes > 0 {
		st.PercentDone = min(1, float64(p.bytes)/float64(p.totalBytes))
		if p.bytes > 0 && p.bytes < p.totalBytes {
			st.SecondsRemaining = int64(elapsed.Seconds() * float64(p.totalBytes-p.bytes) / float64(p.bytes))
		}
	}
	if p.current != "" {
		st.CurrentFiles = []string{p.current}
	}
	b, _ := json.Marshal(st)
	fmt.Fprintf(p.status, "%s\n", b)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
