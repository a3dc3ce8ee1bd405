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
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
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
	// Hold, if set, names files a writer still has open: they keep their
	// last scanned state (or stay out, if new) until they are closed.
	Hold func(path string) bool
	// RemoveTemps deletes temporary files a killed restore left behind
	// more than TempMaxAge ago; younger ones are kept for a rerun to
	// resume from (as Syncthing keeps its temporary files for a day).
	// Only a caller that holds the folder's lock may set it.
	RemoveTemps bool
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
	Files       int64 // files looked at
	FilesRead   int64 // files whose content was read
	BytesRead   int64
	ChunksSent  int64
	BytesSent   int64
	CurrentPath string
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

// dirNode is a directory whose tree is being built. Entries fill in as
// children finish; when the last does, the tree is encoded and stored and
// the node reports to its parent.
type dirNode struct {
	path    string
	parent  *dirNode
	slot    int // index in parent's entries
	mu      sync.Mutex
	entries []index.Entry
	skip    []bool // entries dropped after all (a file that vanished)
	pending int
	size    atomic.Int64
	ref     cas.Ref
	done    chan struct{} // closed when ref is set (root only)
	// tree is what the stat cache remembers of this directory's tree.
	tree    state.TreeStat
	hasTree bool
}

// fileJob is one file to read.
type fileJob struct {
	dir  *dirNode
	slot int
	path string // relative, slash-separated
	name string
	st   state.Stat
	old  state.Stat
	had  bool // old is valid
}

// chunkJob is one chunk to hash and upload; buf returns to the pool after.
// The uploader writes the chunk's ref into ref, which the reader reads
// after the file's wait group is done.
type chunkJob struct {
	ref  *cas.Ref
	data []byte
	buf  []byte
	wg   *sync.WaitGroup
	errp *atomic.Pointer[error]
}

func statOf(fi fs.FileInfo) state.Stat {
	st := state.Stat{Size: fi.Size(), MTime: fi.ModTime().UnixNano(), Mode: uint32(fi.Mode())}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.CTime = sys.Ctim.Nano()
		st.Inode = sys.Ino
	}
	return st
}

func (s *scanner) walkRoot() (*dirNode, error) {
	root := &dirNode{done: make(chan struct{})}
	// No walker may still queue files once this returns: the files
	// channel closes after.
	defer s.walking.Wait()
	if err := s.walkDir(root, nil); err != nil {
		return nil, err
	}
	select {
	case <-root.done:
		return root, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

// walkDir lists one directory, queues its files, walks its subdirectories
// (on another goroutine while a walker is free: a no-op scan is bound by
// lstat, and lstats of different directories overlap) and finishes the
// node once nothing is pending.
func (s *scanner) walkDir(d *dirNode, ign *ignorer) error {
	if depth := strings.Count(d.path, "/"); d.path != "" && depth+1 >= index.MaxDepth {
		return fmt.Errorf("scan: %s is deeper than %d levels", d.path, index.MaxDepth)
	}
	abs := filepath.Join(s.dir, filepath.FromSlash(d.path))
	// The directory is opened without following a link (one swapped in
	// since the parent's listing is not walked), and its entries are
	// lstat'ed relative to it: no path resolution per file.
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("scan: open %s: %w", abs, err)
	}
	dirf := os.NewFile(uintptr(fd), abs)
	defer dirf.Close()
	names, err := dirf.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	slices.Sort(names)
	if _, found := slices.BinarySearch(names, IgnoreFile); found {
		if ign, err = ign.enter(abs, d.path); err != nil {
			s.warn("%s: %v", index.JoinPath(d.path, IgnoreFile), err)
		}
	}
	cached, err := s.cache.Dir(d.path, len(names))
	if err != nil {
		return err
	}
	d.tree, d.hasTree = s.cache.Tree(d.path)
	d.mu.Lock()
	d.pending = 1 // the listing itself
	d.entries = make([]index.Entry, 0, len(names))
	d.skip = make([]bool, 0, len(names))
	d.mu.Unlock()
	// cached and names are both sorted: the cursor c walks cached beside
	// the listing; keep marks the entries still present.
	keep := make([]bool, len(cached))
	c := 0
	lookup := func(name string) (state.Stat, bool) {
		for c < len(cached) && cached[c].Name < name {
			c++
		}
		if c < len(cached) && cached[c].Name == name {
			keep[c] = true
			return cached[c].Stat, true
		}
		return state.Stat{}, false
	}
	var subdirs []*dirNode
	for _, name := range names {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		p := index.JoinPath(d.path, name)
		if d.path == "" && name == index.StateDir {
			continue
		}
		if strings.HasPrefix(name, index.TempPrefix) {
			if s.opts.RemoveTemps {
				if mode, st, err := lstatAt(fd, name); err == nil && mode.IsRegular() && s.start.Sub(time.Unix(0, st.MTime)) > TempMaxAge {
					s.removeTemp(abs, p)
				}
			}
			continue
		}
		if err := index.ValidName(name); err != nil {
			s.warn("%q: skipped: %v", p, err)
			continue
		}
		mode, st, err := lstatAt(fd, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // vanished since the listing
		}
		if err != nil {
			return fmt.Errorf("scan: lstat %s: %w", filepath.Join(abs, name), err)
		}
		isDir := mode.IsDir()
		if ign.match(p, isDir) {
			continue
		}
		entry := index.Entry{Name: name, Mode: mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)}
		switch {
		case mode.IsRegular():
			s.nFiles.Add(1)
			entry.Kind, entry.Size, entry.MTime = index.KindFile, st.Size, st.MTime
			slot := d.add(entry)
			old, had := lookup(name)
			had = had && old.Mode&uint32(fs.ModeDir) == 0
			s.progress(Event{Files: 1, CurrentPath: p})
			if s.opts.Hold != nil && s.opts.Hold(p) {
				atomic.AddInt64(&s.res.Held, 1)
				if !had {
					d.mu.Lock()
					d.skip[slot] = true
					d.mu.Unlock()
					continue
				}
				d.mu.Lock()
				e := &d.entries[slot]
				e.Size, e.MTime, e.Ref = old.Size, old.MTime, old.Ref
				d.mu.Unlock()
				d.size.Add(old.Size)
				continue
			}
			if had && old.Unchanged(st) {
				d.setRef(slot, old.Ref)
				d.size.Add(st.Size)
				continue
			}
			job := &fileJob{dir: d, slot: slot, path: p, name: name, st: st, old: old, had: had}
			d.mu.Lock()
			d.pending++
			d.mu.Unlock()
			select {
			case s.files <- job:
			case <-s.ctx.Done():
				return s.ctx.Err()
			}
		case mode&fs.ModeSymlink != 0:
			target, err := readlinkAt(fd, name)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("scan: readlink %s: %w", filepath.Join(abs, name), err)
			}
			if target == "" || len(target) > index.MaxTargetLen {
				s.warn("%q: skipped: symlink target of %d bytes or more", p, len(target))
				continue
			}
			s.nLinks.Add(1)
			entry.Kind, entry.Target, entry.Size, entry.MTime = index.KindSymlink, target, int64(len(target)), st.MTime
			d.add(entry)
		case isDir:
			s.nDirs.Add(1)
			if _, ok := lookup(name); !ok {
				// A marker, so that the directory's entries are forgotten
				// when it goes.
				if err := s.cachePut(d.path, name, state.Stat{Mode: uint32(fs.ModeDir)}); err != nil {
					return err
				}
			}
			// Directory mtimes change with every create and delete inside,
			// so they are not kept: they would make versions of noise.
			entry.Kind = index.KindDir
			slot := d.add(entry)
			d.mu.Lock()
			d.pending++
			d.mu.Unlock()
			subdirs = append(subdirs, &dirNode{path: p, parent: d, slot: slot})
		default:
			s.warn("%q: skipped: not a regular file, directory or symlink (%s)", p, mode.Type())
		}
	}
	dirf.Close()
	// Forget cache entries of names that are gone, and everything below
	// directories that are gone.
	s.mu.Lock()
	for i, old := range cached {
		if keep[i] {
			continue
		}
		err := s.update.Delete(d.path, old.Name)
		if err == nil && old.Mode&uint32(fs.ModeDir) != 0 {
			err = s.update.DeleteTree(index.JoinPath(d.path, old.Name))
		}
		if err != nil {
			s.mu.Unlock()
			return err
		}
	}
	s.mu.Unlock()
	for _, child := range subdirs {
		select {
		case s.walkers <- struct{}{}:
			s.walking.Add(1)
			go func() {
				defer s.walking.Done()
				defer func() { <-s.walkers }()
				if err := s.walkDir(child, ign); err != nil {
					s.abort(err)
				}
			}()
		default:
			if err := s.walkDir(child, ign); err != nil {
				return err
			}
		}
	}
	return s.childDone(d)
}

// lstatAt lstats name in the directory open as dirfd.
func lstatAt(dirfd int, name string) (fs.FileMode, state.Stat, error) {
	var sys unix.Stat_t
	for {
		err := unix.Fstatat(dirfd, name, &sys, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, state.Stat{}, err
		}
		mode, st := state.FromSys(&sys)
		return mode, st, nil
	}
}

// readlinkAt reads the target of the link name in dirfd. A target longer
// than index.MaxTargetLen comes back cut at MaxTargetLen+1 bytes, for the
// caller to refuse.
func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, index.MaxTargetLen+1)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// cachePut records a stat cache entry. A large update is applied in
// pieces, each after a flush of Dest, so that memory stays bounded and
// every applied entry's content is durable at Dest. A scan without a Dest
// records nothing: there is nothing its entries could promise.
func (s *scanner) cachePut(dir, name string, st state.Stat) error {
	return s.record(func(u *state.Update) error { return u.Put(dir, name, st) })
}

// record applies one change to the pending stat cache update: see
// cachePut.
func (s *scanner) record(change func(*state.Update) error) error {
	if s.dst == nil || s.opts.DryRun {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := change(s.update); err != nil {
		return err
	}
	if s.update.Size() < maxCacheUpdate {
		return nil
	}
	if err := s.dst.Flush(s.ctx); err != nil {
		return err
	}
	if err := s.update.Commit(); err != nil {
		return err
	}
	s.update = s.cache.Update()
	return nil
}

// maxCacheUpdate bounds the stat cache changes held in memory.
const maxCacheUpdate = 8 << 20

// TempMaxAge is how long a leftover temporary file is kept.
const TempMaxAge = 24 * time.Hour

// removeTemp deletes a leftover temporary file, relative to a descriptor
// of its directory opened without following links.
func (s *scanner) removeTemp(abs, p string) {
	dfd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, filepath.Base(filepath.FromSlash(p)), 0); err == nil {
		s.opts.Logger.Info("removed a leftover temporary file", "path", p)
	}
}

func (d *dirNode) add(e index.Entry) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.entries = append(d.entries, e)
	d.skip = append(d.skip, false)
	return len(d.entries) - 1
}

func (d *dirNode) setRef(slot int, ref cas.Ref) {
	d.mu.Lock()
	d.entries[slot].Ref = ref
	d.mu.Unlock()
}

// childDone counts one pending child of d as finished, and finishes d
// when it was the last.
func (s *scanner) childDone(d *dirNode) error {
	d.mu.Lock()
	d.pending--
	last := d.pending == 0
	d.mu.Unlock()
	if !last {
		return nil
	}
	entries := d.entries
	if slices.Contains(d.skip, true) {
		entries = make([]index.Entry, 0, len(d.entries))
		for i, e := range d.entries {
			if !d.skip[i] {
				entries = append(entries, e)
			}
		}
	}
	fp := fingerprint(entries)
	var ref cas.Ref
	if d.hasTree && d.tree.Fingerprint == fp {
		// The same entries as a scan whose objects are at Dest: the same
		// tree, stored already.
		ref = d.tree.Ref
	} else {
		t, err := index.NewTree(entries)
		if err != nil {
			return fmt.Errorf("scan %q: %w", d.path, err)
		}
		b := index.EncodeTree(t)
		if len(b) > cas.MaxBlobSize {
			return fmt.Errorf("scan %q: directory has too many entries (%d) for one tree object", d.path, len(entries))
		}
		ref = cas.Sum(b)
		if err := s.putObject(ref, b); err != nil {
			return err
		}
		if err := s.record(func(u *state.Update) error {
			return u.PutTree(d.path, state.TreeStat{Fingerprint: fp, Ref: ref})
		}); err != nil {
			return err
		}
	}
	d.ref = ref
	if d.parent == nil {
		close(d.done)
		return nil
	}
	d.parent.mu.Lock()
	d.parent.entries[d.slot].Ref = ref
	d.parent.entries[d.slot].Size = d.size.Load()
	d.parent.mu.Unlock()
	d.parent.size.Add(d.size.Load())
	return s.childDone(d.parent)
}

// fingerprintVersion names the tree encoding that fingerprint stands for:
// bump it when index encodes trees differently, so that no cached ref of
// the old encoding is reused.
const fingerprintVersion = 1

// fingerprint hashes exactly what index.NewTree encodes, in the order it
// encodes it (entries come from a sorted listing), at a fraction of the
// cost of encoding: equal fingerprints mean equal trees.
func fingerprint(entries []index.Entry) [32]byte {
	h := blake3.New()
	bp := fingerprintBufs.Get().(*[]byte)
	defer fingerprintBufs.Put(bp)
	b := (*bp)[:0]
	b = append(b, "ferry tree fingerprint"...)
	b = binary.LittleEndian.AppendUint32(b, fingerprintVersion)
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(len(e.Name)))
		b = append(b, e.Name...)
		b = append(b, byte(e.Kind))
		b = binary.LittleEndian.AppendUint32(b, uint32(e.Mode))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.MTime))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Size))
		b = append(b, e.Ref[:]...)
		b = binary.AppendUvarint(b, uint64(len(e.Target)))
		b = append(b, e.Target...)
		if len(b) > 32<<10 {
			h.Write(b)
			b = b[:0]
		}
	}
	h.Write(b)
	*bp = b
	var out [32]byte
	h.Sum(out[:0])
	return out
}

var fingerprintBufs = sync.Pool{New: func() any { b := make([]byte, 0, 40<<10); return &b }}

// putObject stores an object in Dest (when missing) and in the cache.
func (s *scanner) putObject(ref cas.Ref, b []byte) error {
	if s.opts.Objects != nil {
		if err := s.opts.Objects.Put(s.ctx, ref, b); err != nil {
			return fmt.Errorf("scan: cache: %w", err)
		}
	}
	if s.dst == nil {
		return nil
	}
	if !s.opts.PutObjects {
		if has, err := s.has(ref); err != nil || has {
			return err
		}
	}
	if err := s.dst.Put(s.ctx, ref, b); err != nil {
		return fmt.Errorf("scan: put object %s: %w", ref.Short(), err)
	}
	atomic.AddInt64(&s.res.ObjectsSent, 1)
	return nil
}

// readFiles is one reader worker.
func (s *scanner) readFiles() error {
	sp := chunk.NewSplitter(nil, s.opts.Params)
	for job := range s.files {
		if err := s.readFile(sp, job); err != nil {
			return err
		}
		if err := s.childDone(job.dir); err != nil {
			return err
		}
	}
	return nil
}

// readFile reads one file until it reads the same state from start to end.
func (s *scanner) readFile(sp *chunk.Splitter, job *fileJob) error {
	abs := filepath.Join(s.dir, filepath.FromSlash(job.path))
	for attempt := 0; ; attempt++ {
		ref, st, err := s.readOnce(sp, abs, job)
		var changed *changedError
		switch {
		case err == nil:
			job.dir.setRef(job.slot, ref)
			job.dir.mu.Lock()
			e := &job.dir.entries[job.slot]
			e.Size, e.MTime = st.Size, st.MTime
			e.Mode = fs.FileMode(st.Mode).Perm() | fs.FileMode(st.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
			job.dir.mu.Unlock()
			job.dir.size.Add(st.Size)
			st.Ref = ref
			if !s.racy(st.MTime) {
				err = s.cachePut(job.dir.path, job.name, st)
			}
			return err
		case errors.Is(err, fs.ErrNotExist) || errors.As(err, &changed) && changed.gone:
			job.dir.mu.Lock()
			job.dir.skip[job.slot] = true
			job.dir.mu.Unlock()
			return nil
		case errors.As(err, &changed) && attempt < s.opts.Retries:
			s.opts.Logger.Debug("file changed while read; reading again", "path", job.path)
			continue
		case errors.As(err, &changed):
			// It keeps changing: keep what the last scan saw, or leave a new
			// file out, and let the next scan try again.
			if job.had {
				s.warn("%q: changes while it is read; kept its previous version", job.path)
				job.dir.setRef(job.slot, job.old.Ref)
				job.dir.mu.Lock()
				e := &job.dir.entries[job.slot]
				e.Size, e.MTime = job.old.Size, job.old.MTime
				job.dir.mu.Unlock()
				job.dir.size.Add(job.old.Size)
			} else {
				s.warn("%q: changes while it is read; left out of this version", job.path)
				job.dir.mu.Lock()
				job.dir.skip[job.slot] = true
				job.dir.mu.Unlock()
			}
			return nil
		case errors.Is(err, context.Canceled):
			return err
		default:
			return fmt.Errorf("scan %q: %w", job.path, err)
		}
	}
}

// racy reports whether a file with this mtime may still change within its
// timestamp tick, unseen.
func (s *scanner) racy(mtime int64) bool {
	window := s.opts.RacyWindow
	if mtime%int64(time.Second) == 0 {
		window = max(window, 2*time.Second)
	}
	return s.start.Sub(time.Unix(0, mtime)) <= window
}

// changedError says the file changed between the stat before its read and
// the stat after.
type changedError struct{ gone bool }

func (e *changedError) Error() string { return "file changed while it was read" }

// readOnce opens the file without following links or blocking, checks it
// is the regular file the walk saw, chunks it, and checks that its stat did
// not change while it was read. It returns the file object's ref.
func (s *scanner) readOnce(sp *chunk.Splitter, abs string, job *fileJob) (cas.Ref, state.Stat, error) {
	f, err := os.OpenFile(abs, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return cas.Ref{}, state.Stat{}, &changedError{gone: true}
		}
		return cas.Ref{}, state.Stat{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return cas.Ref{}, state.Stat{}, err
	}
	if !fi.Mode().IsRegular() {
		return cas.Ref{}, state.Stat{}, &changedError{gone: true}
	}
	before := statOf(fi)
	var (
		chunks []*index.ChunkRef
		wg     sync.WaitGroup
		uerr   atomic.Pointer[error]
		read   int64
	)
	sp.Reset(f)
	for {
		if err := s.ctx.Err(); err != nil {
			wg.Wait()
			return cas.Ref{}, state.Stat{}, err
		}
		var buf []byte
		select {
		case buf = <-s.bufs:
		case <-s.ctx.Done():
			wg.Wait()
			return cas.Ref{}, state.Stat{}, s.ctx.Err()
		}
		if buf == nil {
			buf = make([]byte, 0, s.opts.Params.Max)
		}
		c, err := sp.Cut(buf)
		if err == io.EOF {
			s.bufs <- buf
			break
		}
		if err != nil {
			s.bufs <- buf
			wg.Wait()
			return cas.Ref{}, state.Stat{}, err
		}
		read += int64(len(c.Data))
		cr := &index.ChunkRef{Len: uint32(len(c.Data))}
		chunks = append(chunks, cr)
		wg.Add(1)
		job := chunkJob{ref: &cr.Ref, data: c.Data, buf: buf, wg: &wg, errp: &uerr}
		select {
		case s.chunks <- job:
		case <-s.ctx.Done():
			s.bufs <- buf
			wg.Done()
			wg.Wait()
			return cas.Ref{}, state.Stat{}, s.ctx.Err()
		}
	}
	wg.Wait()
	if p := uerr.Load(); p != nil {
		return cas.Ref{}, state.Stat{}, *p
	}
	atomic.AddInt64(&s.res.FilesRead, 1)
	atomic.AddInt64(&s.res.BytesRead, read)
	s.progress(Event{FilesRead: 1, BytesRead: read})
	after, err := os.Lstat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return cas.Ref{}, state.Stat{}, &changedError{gone: true}
		}
		return cas.Ref{}, state.Stat{}, err
	}
	if st := statOf(after); !st.Unchanged(before) || read != before.Size {
		return cas.Ref{}, state.Stat{}, &changedError{}
	}
	list := make([]index.ChunkRef, len(chunks))
	for i, c := range chunks {
		list[i] = *c
	}
	top, parts := index.FileObjects(list)
	for _, p := range parts {
		if err := s.putObject(cas.Sum(p), p); err != nil {
			return cas.Ref{}, state.Stat{}, err
		}
	}
	ref := cas.Sum(top)
	if err := s.putObject(ref, top); err != nil {
		return cas.Ref{}, state.Stat{}, err
	}
	return ref, before, nil
}

// has asks Dest whether it holds ref.
func (s *scanner) has(ref cas.Ref) (bool, error) {
	has, err := s.dst.Has(s.ctx, []cas.Ref{ref})
	if err != nil {
		return false, fmt.Errorf("scan: %w", err)
	}
	return has[0], nil
}

// upload is one uploader worker: it puts chunks Dest lacks. It drains the
// queue even after an error, since readers wait for every chunk they sent.
//
// The reader waits only for the chunk's hash (it needs the ref for the
// file object), not for the upload: a has-many round trip to a server
// never holds up reading. An upload error cancels the scan.
func (s *scanner) upload() error {
	var first error
	for job := range s.chunks {
		err := s.putChunk(job)
		s.bufs <- job.buf[:0]
		if err != nil {
			job.errp.CompareAndSwap(nil, &err)
			if first == nil {
				first = err
				s.abort(err)
			}
		}
	}
	return first
}

func (s *scanner) putChunk(job chunkJob) error {
	hashed := false
	defer func() {
		if !hashed {
			job.wg.Done()
		}
	}()
	if err := s.ctx.Err(); err != nil {
		return err
	}
	ref := cas.Sum(job.data)
	*job.ref = ref
	hashed = true
	job.wg.Done()
	if s.dst == nil {
		return nil
	}
	if !s.opts.PutChunks {
		if has, err := s.has(ref); err != nil || has {
			return err
		}
	}
	if err := s.dst.Put(s.ctx, ref, job.data); err != nil {
		return fmt.Errorf("scan: put chunk %s: %w", ref.Short(), err)
	}
	atomic.AddInt64(&s.res.ChunksSent, 1)
	atomic.AddInt64(&s.res.BytesSent, int64(len(job.data)))
	s.progress(Event{ChunksSent: 1, BytesSent: int64(len(job.data))})
	return nil
}
