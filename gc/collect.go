package gc

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/internal/failpoint"
)

// DefaultGrace spares blobs put within the last hour: an upload that
// began before a collection, whose commit has not come yet, keeps its
// chunks.
const DefaultGrace = time.Hour

// Options tune a collection.
type Options struct {
	// Grace spares blobs put (or put again) within this long of Now.
	Grace  time.Duration
	DryRun bool
	Now    func() time.Time
	// Pause, if set, holds head moves while the collection starts: it
	// returns once no commit is between its check and its head move, and
	// none starts until resume is called. A server passes its commit
	// lock; an offline store has no commits to hold.
	Pause func() (resume func())
	// Pins returns refs a namespace keeps beyond its roots (shares).
	Pins   func(ctx context.Context, ns string) ([]cas.Ref, error)
	Logger *slog.Logger
}

// Stats is what a collection found and did.
type Stats struct {
	DryRun     bool      `json:"dry_run"`
	Namespaces int       `json:"namespaces"`
	Mark       MarkStats `json:"mark"`
	Live       int       `json:"live_blobs"`
	cas.SweepStats
	MarkMS     int64  `json:"mark_ms"`
	SweepMS    int64  `json:"sweep_ms"`
	HeapPeakMB uint64 `json:"heap_mb"`
	// Policies counts the namespaces whose retention policy a server
	// applied before collecting, and Forgotten the versions they dropped.
	Policies  int `json:"policies_applied"`
	Forgotten int `json:"policy_forgotten"`
}

// Collect runs one garbage collection of every namespace of db: it starts
// protecting what writers touch (cas.DB.BeginGC), marks what each
// namespace keeps, and sweeps the rest that is older than the grace.
//
// Why no push can lose a chunk to it: a blob put, reported present or read
// after BeginGC is protected; a commit checks that everything its new
// version adds is present (reading and asking for it, so protecting it)
// and moves the head under the commit lock that Pause holds around
// BeginGC, so a commit either finished before the mark could see its head,
// or checked under protection; and what the new version shares with the
// head it replaces is live through that head.
func Collect(ctx context.Context, db *cas.DB, o Options) (*Stats, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	st := &Stats{DryRun: o.DryRun}
	start := o.Now()
	cutoff := start.Add(-o.Grace)
	if db.Shared() {
		// A cluster: one collector at a time (the lease), and every
		// server protects what it reports present until the end.
		var cancel func()
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		end, err := db.BeginClusterGC(ctx, o.Pause, cancel)
		if err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		defer end()
	} else {
		resume := func() {}
		if o.Pause != nil {
			resume = o.Pause()
		}
		db.BeginGC()
		resume()
		defer db.EndGC()
	}
	failpoint.Hit("gc-begun")

	names, err := db.Namespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	t0 := time.Now()
	live := map[string]*Live{}
	for _, name := range names {
		ns, err := db.Namespace(name)
		if err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		var pins []cas.Ref
		if o.Pins != nil {
			if pins, err = o.Pins(ctx, name); err != nil {
				return nil, fmt.Errorf("gc %s: %w", name, err)
			}
		}
		set, ms, err := Mark(ctx, ns, pins)
		if err != nil {
			return nil, fmt.Errorf("gc %s: %w", name, err)
		}
		live[name] = set
		st.Namespaces++
		st.Live += set.Len()
		st.Mark.Roots += ms.Roots
		st.Mark.Versions += ms.Versions
		st.Mark.Objects += ms.Objects
		st.Mark.Chunks += ms.Chunks
	}
	st.MarkMS = time.Since(t0).Milliseconds()
	st.HeapPeakMB = heapMB()
	failpoint.Hit("gc-marked")

	t0 = time.Now()
	sw, err := db.Sweep(ctx, cas.SweepOptions{
		// A namespace the mark did not cover (one made during the
		// collection) keeps everything.
		Live: func(ns string, r cas.Ref) bool {
			set, marked := live[ns]
			return !marked || set.Has(r)
		},
		Before: cutoff,
		DryRun: o.DryRun,
	})
	st.SweepStats = sw
	st.SweepMS = time.Since(t0).Milliseconds()
	st.HeapPeakMB = max(st.HeapPeakMB, heapMB())
	if err != nil {
		return st, fmt.Errorf("gc: sweep: %w", err)
	}
	o.Logger.Info("gc done", "dry_run", o.DryRun, "live", st.Live, "blobs_deleted", sw.Blobs, "bytes_freed", sw.DiskFreed,
		"mark_ms", st.MarkMS, "sweep_ms", st.SweepMS)
	return st, nil
}

func heapMB() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse >> 20
}
