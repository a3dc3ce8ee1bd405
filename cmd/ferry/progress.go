package main

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress draws one bar for a long command, on a terminal only.
type progress struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func newProgress(w io.Writer, what string) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSpinnerType(14),
	)
	return &progress{bar: bar}
}

func (p *progress) event(e engine.Progress) {
	if e.Bytes == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Describe(e.Phase)
	_ = p.bar.Add64(e.Bytes)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bar.Finish()
}
