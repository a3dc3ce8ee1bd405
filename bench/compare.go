package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CompareConfig is the peer comparison: ferry, rsync and restic over the
// same corpora in the same run.
type CompareConfig struct {
	Ferry string
	Work  string
	// Corpora default to DefaultCorpora.
	Corpora []Corpus
	// Net is where the server side runs (zero: loopback).
	Net  Net
	Runs int
	// Title names the report (default "ferry vs rsync and restic").
	Title string
	Log   func(string)
}

// DefaultCorpora is the full comparison's set.
func DefaultCorpora() []Corpus {
	return []Corpus{SmallFiles(100_000), SourceTree(5000), LargeFile(1<<30, false), LargeFile(1<<30, true)}
}

// QuickCorpora is a set small enough for CI (under two minutes).
func QuickCorpora() []Corpus {
	return []Corpus{SmallFiles(3000), SourceTree(500), LargeFile(32<<20, false)}
}

// SelectCorpora keeps the corpora named by keyword: small, source, random
// or compressible.
func SelectCorpora(all []Corpus, only []string) ([]Corpus, error) {
	if all == nil {
		all = DefaultCorpora()
	}
	words := map[string]string{"small": "small files", "source": "source tree", "random": "random file", "compressible": "compressible file"}
	var out []Corpus
	for _, w := range only {
		sub, ok := words[w]
		if !ok {
			return nil, fmt.Errorf("corpus %q: want small, source, random or compressible", w)
		}
		for _, c := range all {
			if strings.Contains(c.Name, sub) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func (c *CompareConfig) applyDefaults() {
	if c.Corpora == nil {
		c.Corpora = DefaultCorpora()
	}
	if c.Runs == 0 {
		c.Runs = 3
	}
	if c.Title == "" {
		c.Title = "ferry vs rsync and restic"
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
}

type peerFactory struct {
	name string
	make func(ctx context.Context, work string) (Peer, error)
}

// RunCompare runs every peer over every corpus: initial copy (fresh state
// each run), no-op rerun, the corpus's edit, and a restore into an empty
// directory.
func RunCompare(ctx context.Context, c CompareConfig) (*Report, error) {
	return runPeers(ctx, c, nil, nil)
}

// runPeers is RunCompare for some peers and steps (nil: all).
func runPeers(ctx context.Context, c CompareConfig, only, steps []string) (*Report, error) {
	c.applyDefaults()
	want := func(list []string, s string) bool {
		if list == nil {
			return true
		}
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	cleanup, err := scratch(&c.Work, "ferry-bench-cmp-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	EnsurePeers(ctx, c.Log)
	rep := &Report{Title: c.Title, Date: time.Now(), Machine: Machine(), Tools: map[string]string{}}
	factories := []peerFactory{
		{"ferry", func(ctx context.Context, w string) (Peer, error) { return NewFerryPeer(ctx, c.Ferry, w, c.Net) }},
		{"rsync", func(ctx context.Context, w string) (Peer, error) { return NewRsyncPeer(ctx, w, c.Net) }},
		{"restic", func(ctx context.Context, w string) (Peer, error) { return NewResticPeer(ctx, w, c.Net) }},
	}
	for ci, corpus := range c.Corpora {
		src := filepath.Join(c.Work, fmt.Sprintf("corpus%d", ci))
		c.Log("writing " + corpus.Name)
		size, err := corpus.Make(src)
		if err != nil {
			return nil, err
		}
		work := fmt.Sprintf("%s (%s)", corpus.Name, Human(size))
		var peers []Peer
		for _, f := range factories {
			if !want(only, f.name) {
				continue
			}
			pw := filepath.Join(c.Work, fmt.Sprintf("%s-%d", f.name, ci))
			os.MkdirAll(pw, 0o755)
			p, err := f.make(ctx, pw)
			if err != nil {
				rep.Rows = append(rep.Rows, Row{Workload: work, Step: "all", Tool: f.name, Note: "skipped: " + err.Error()})
				continue
			}
			defer p.Close()
			rep.Tools[p.Name()] = p.Version(ctx)
			peers = append(peers, p)
		}
		results := map[string]map[string]Measure{}
		record := func(p Peer, step string, m Measure, runs int, bytes int64, note string) {
			if results[p.Name()] == nil {
				results[p.Name()] = map[string]Measure{}
			}
			results[p.Name()][step] = m
			rep.Rows = append(rep.Rows, Row{Workload: work, Step: step, Tool: p.Name(), Median: m, Runs: runs, Bytes: bytes, Size: size, Note: note})
		}
		for _, p := range peers {
			c.Log(fmt.Sprintf("%s: %s initial", corpus.Name, p.Name()))
			var bytes int64
			m, err := median(c.Runs, func() (Measure, error) {
				if err := p.Fresh(ctx); err != nil {
					return Measure{}, err
				}
				m, b, err := p.Send(ctx, src)
				bytes = b
				return m, err
			})
			if err != nil {
				return nil, fmt.Errorf("%s %s initial: %w", p.Name(), corpus.Name, err)
			}
			record(p, "initial", m, c.Runs, bytes, fmt.Sprintf("%.1f MB/s", float64(size)/m.Wall.Seconds()/1e6))
			if !want(steps, "no-op") {
				continue
			}
			c.Log(fmt.Sprintf("%s: %s no-op", corpus.Name, p.Name()))
			m, err = median(c.Runs, func() (Measure, error) {
				m, b, err := p.Send(ctx, src)
				bytes = b
				return m, err
			})
			if err != nil {
				return nil, fmt.Errorf("%s %s no-op: %w", p.Name(), corpus.Name, err)
			}
			record(p, "no-op", m, c.Runs, bytes, "")
			dst := filepath.Join(c.Work, fmt.Sprintf("restore-%s-%d", p.Name(), ci))
			m, err = p.Receive(ctx, dst)
			if err != nil {
				return nil, fmt.Errorf("%s %s restore: %w", p.Name(), corpus.Name, err)
			}
			record(p, "restore into an empty dir", m, 1, 0, "")
			os.RemoveAll(dst)
		}
		c.Log(fmt.Sprintf("%s: edit", corpus.Name))
		what, err := corpus.Edit(src)
		if err != nil {
			return nil, err
		}
		for _, p := range peers {
			if !want(steps, "incremental") {
				break
			}
			m, b, err := p.Send(ctx, src)
			if err != nil {
				return nil, fmt.Errorf("%s %s incremental: %w", p.Name(), corpus.Name, err)
			}
			record(p, "incremental", m, 1, b, what)
		}
		for _, step := range []string{"initial", "incremental", "no-op", "restore into an empty dir"} {
			f, ok := results["ferry"][step]
			if !ok {
				continue
			}
			for _, peer := range []string{"rsync", "restic"} {
				if m, ok := results[peer][step]; ok && f.Wall > 0 {
					rep.Ratios = append(rep.Ratios, Ratio{What: fmt.Sprintf("%s, %s: ferry / %s wall time", corpus.Name, step, peer), Value: f.Wall.Seconds() / m.Wall.Seconds(), Target: target(step, peer, corpus.Name)})
				}
			}
		}
		os.RemoveAll(src)
	}
	return rep, nil
}

// target is what the issue asks of a ratio.
func target(step, peer, corpus string) string {
	switch {
	case step == "initial" && peer == "restic":
		return "< 1"
	case step == "initial" && peer == "rsync":
		return "<= 1.2"
	case step == "incremental" && peer == "rsync":
		return "<= 1"
	case step == "no-op" && peer == "rsync":
		return "<= 0.2"
	}
	return ""
}
