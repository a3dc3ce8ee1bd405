// Package scan turns a folder into a tree: it walks the folder, reuses the
// file refs of files the stat cache knows unchanged (without reading
// them), reads every other file once, chunking and hashing on all cores,
// and hands new chunks and objects to a destination store with bounded
// memory. The result is the root tree's ref.
//
// Special files (FIFOs, sockets, devices) are skipped with a warning and
// never opened; symlinks are recorded as links and never followed; names
// that break the name rule are skipped with a warning; .ferryignore files
// (gitignore syntax, one per directory, each applying below its own
// directory) exclude paths.
package scan

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"golang.org/x/sync/errgroup"
)

// Dest is where new chunks and objects go. A nil Dest makes Scan only
// compute refs (for status).
type Dest interface {
	cas.Haser
	cas.Putter
}

// Options tune a scan. The zero value (with Params set) works.
type Options struct {
	Params chunk.Params
	// Workers read and chunk files in parallel (default GOMAXPROCS).
	Workers int
	// Uploaders put chunks into Dest in parallel (default GOMAXPROCS).
	Uploaders int
	// Objects, if set, receives a copy of every tree and file object (the
	// folder's cache).
	Objects cas.Putter
	// PutObjects skips asking Dest whether it has a tree or file object
	// before putting it: for a Dest that deduplicates on Put at no cost (a
	// local store, or a client that asks the server itself).
	PutObjects bool
	// PutChunks does the same for chunks. ChunksSent and BytesSent then
	// count what was handed to Dest, not what was new to it; Dest counts
	// that itself.
	PutChunks bool
	// DryRun says Dest stores nothing (it only counts): the scan records
	// nothing in the stat cache, whose entries promise content at Dest.
	DryRun bool
	// Retries is how often a file that changes while it is read is read
	// again before it is left as it was (default 3).
	Retries int
	// Now is the clock (default time.Now). A file modified within
	// RacyWindow before the scan began is not cached as clean, since a
	// change within the same timestamp tick could go unseen (git's "racy
	// clean" problem). The window covers the timestamp granularity: 100 ms
	// for nanosecond timestamps, 2 s for a file whose mtime has no
	// sub-second part (FAT, ext3 and their like).
	Now        func() time.Time
	RacyWindow time.Duration // default 100ms
	// CutWorkers is how many cores cut one file of 64 MiB or more
	// (chunk.ParallelCuts; the cut is the sequential one either way).
	// 0 chooses: every core on a machine of 4 or more, else one. On 2
	// cores the other stages (hash, compression, the transport, often a
	// server on the same machine) already take the second core, and the
	// parallel cut's extra work (its overlaps, the second read of each
	// chunk) cost more than it saved: see docs/ARCHITECTURE.md.
	CutWorkers int
	// Hold, if set, names files a writer still has open: they keep their
	// last scanned state (or stay out, if new) until they are closed.
	Hold func(path string) bool
	// RemoveTemps deletes temporary files a killed restore left behind
	// more than TempMaxAge ago; younger ones are kept for a rerun to
	// resume from (as Syncthing keeps its temporary files for a day).
	// Only a caller that holds the folder's lock may set it.
	RemoveTemps bool
	// Names, if set, maps the folder's disk names to version names (NFD
	// spellings, aliases on a case-folding filesystem) and learns new
	// ones; see state.Names.
	Names *state.Names
	// Progress, if set, is called from many goroutines as work is done.
	Progress func(Event)
	Logger   *slog.Logger
}

func (o *Options) applyDefaults() {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Uploaders <= 0 {
		o.Uploaders = runtime.GOMAXPROCS(0)
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RacyWindow == 0 {
		o.RacyWindow = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Event reports progress: counts to add to running totals.
type Event struct {
	Files     int64 // files looked at
	FilesRead int64 // files whose content was read
	BytesRead int64
	// ToReadFiles and ToReadBytes grow as the walk finds files whose
	// content must be read (the stat cache cannot vouch for them): the
	// total the reads are heading for.
	ToReadFiles, ToReadBytes int64
	ChunksSent               int64
	BytesSent                int64
	CurrentPath              string
	// Action is set on a file's FilesRead event: "new" (the last scan did
	// not have it) or "modified".
	Action string
}

// Result is what a scan found and did.
type Result struct {
	Root    cas.Ref
	Summary index.Summary
	// FilesRead and BytesRead count content read (stat cache misses).
	FilesRead, BytesRead int64
	// ChunksSent, BytesSent, ObjectsSent count what Dest did not have.
	ChunksSent, BytesSent, ObjectsSent int64
	// Held counts files kept at their previous state because a writer
	// had them open (Options.Hold).
	Held int64
	// Warnings name what was skipped and why.
	Warnings []string
	// CacheUpdate holds what the scan learnt for the stat cache. The caller
	// commits it once what the scan put in Dest is durable there (a cache
	// entry promises that the file's content is at the remote), or
	// discards it (a scan that stored nothing: status, diff).
	CacheUpdate *state.Update
}

// Scan walks dir and returns its root tree. The stat cache changes it
// found are returned, not applied: see Result.CacheUpdate.
func Scan(ctx context.Context, dir string, cache *state.StatCache, dst Dest, opts Options) (*Result, error) {
	opts.applyDefaults()
	if err := opts.Params.Validate(); err != nil {
		return nil, err
	}
	s := &scanner{
		dir:    dir,
		cache:  cache,
		dst:    dst,
		opts:   opts,
		start:  opts.Now(),
		update: cache.Update(),
		files:  make(chan *fileJob, opts.Workers*4),
		chunks: make(chan chunkJob, opts.Workers),
		// Buffers bound the chunks in flight: enough to keep the cutters and
		// a has-many round trip busy, whatever the number of uploaders.
		bufs:    make(chan []byte, 2*opts.Workers+4),
		walkers: make(chan struct{}, 2*opts.Workers),
	}
	for range cap(s.bufs) {
		s.bufs <- nil // allocated on first use, at most cap(bufs) of them
	}
	if opts.Names != nil {
		var err error
		if s.names, err = opts.Names.Any(); err != nil {
			return nil, err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	sctx, cancel := context.WithCancelCause(gctx)
	defer cancel(nil)
	var aborted atomic.Pointer[error]
	s.ctx = sctx
	s.abort = func(err error) {
		aborted.CompareAndSwap(nil, &err)
		cancel(err)
	}
	var readers, uploaders sync.WaitGroup
	for range opts.Workers {
		readers.Add(1)
		g.Go(func() error { defer readers.Done(); return s.readFiles() })
	}
	for range opts.Uploaders {
		uploaders.Add(1)
		g.Go(func() error { defer uploaders.Done(); return s.upload() })
	}
	g.Go(func() error {
		defer func() {
			close(s.files)
			readers.Wait()
			close(s.chunks)
		}()
		root, err := s.walkRoot()
		s.rootDir = root
		return err
	})
	err := g.Wait()
	uploaders.Wait()
	if p := aborted.Load(); p != nil {
		err = *p
	}
	if err != nil {
		s.update.Discard()
		return nil, err
	}
	res := &s.res
	res.CacheUpdate = s.update
	res.Root = s.rootDir.ref
	res.Summary = index.Summary{Files: s.nFiles.Load(), Dirs: s.nDirs.Load(), Symlinks: s.nLinks.Load(), Bytes: s.rootDir.size.Load()}
	return res, nil
}

type scanner struct {
	ctx    context.Context
	abort  func(error) // fails the scan from any goroutine
	dir    string
	cache  *state.StatCache
	dst    Dest
	opts   Options
	start  time.Time
	files  chan *fileJob
	chunks chan chunkJob
	bufs   chan []byte

	mu      sync.Mutex // guards res.Warnings, update
	res     Result
	update  *state.Update
	rootDir *dirNode
	// walkers bounds the goroutines walking directories beside the first.
	walkers chan struct{}
	walking sync.WaitGroup

	nFiles, nDirs, nLinks atomic.Int64
	// names: the folder has mapped names to look up per directory.
	names bool
}

func (s *scanner) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.opts.Logger.Warn(msg)
	s.mu.Lock()
	s.res.Warnings = append(s.res.Warnings, msg)
	s.mu.Unlock()
}

func (s *scanner) progress(e Event) {
	if s.opts.Progress != nil {
		s.opts.Progress(e)
	}
}
