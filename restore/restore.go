// Package restore writes trees into folders: a whole version into an empty
// target, or the changes between two versions into a folder that holds
// the first.
//
// Every filesystem operation is relative to a directory file descriptor
// opened component by component with O_NOFOLLOW from the target itself, so
// no symlink, planted or raced, can send a write outside the target or onto
// a path the tree does not name. A file is written under a temporary name
// in its final directory, fsynced, given its mode and mtime through its own
// descriptor, and renamed over the old name; directories are fsynced before
// Apply returns. A crash leaves only temporary files, which the next scan
// removes.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Options tune a restore. The zero value works.
type Options struct {
	// Workers write files in parallel (default GOMAXPROCS).
	Workers int
	// Cache, if set, learns the stat of every file written, so the next
	// scan does not read them back.
	Cache *state.StatCache
	// Chunks, if set, is where file data is read; objects (trees, file
	// lists) are read through the getter passed to Apply. A folder passes
	// its object cache there and the remote here.
	Chunks cas.Getter
	// Seeds, if set, offers chunks from other files of the folder.
	Seeds Seeds
	// VerifyLocal checks, before a file or link is replaced or removed,
	// that it is still what the tree `from` says (size and mtime, or
	// target); one that changed since is left alone, with a warning. For
	// folders in use: a concurrent edit is never overwritten.
	VerifyLocal bool
	// Names, if set, maps the version's names to the folder's disk
	// names (NFD spellings, aliases) and learns the aliases this restore
	// makes; see names.go.
	Names *state.Names
	// CaseFold says the target's filesystem folds case: names that
	// collide there get aliases (see names.go), named for Device at Now.
	CaseFold bool
	Device   string
	Now      func() time.Time
	// Skip, if set, is asked about each file and link the target is not
	// known to hold (from has no entry at its path): true leaves what is
	// on disk there alone. restore --to --overwrite never|if-changed.
	Skip func(path string, e *index.Entry) bool
	// DryRun, if set, makes Apply write nothing: each change it would make
	// is passed here instead, in the diff's order (see plan.go), and the
	// Result counts them.
	DryRun func(Planned)
	// Progress, if set, is called from many goroutines as files are done.
	Progress func(Event)
	Logger   *slog.Logger
}

func (o *Options) applyDefaults() {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Event reports progress: counts to add to running totals.
type Event struct {
	Files int64
	Bytes int64
	Path  string
	// TotalFiles and TotalBytes are the files and bytes the restore is
	// about to write, sent once before it starts.
	TotalFiles, TotalBytes int64
}

// Result is what a restore did.
type Result struct {
	FilesWritten, BytesWritten int64
	DirsMade, Removed          int64
	// ChunksFetched came from the chunk getter; ChunksSeeded from other
	// files of the folder.
	ChunksFetched, ChunksSeeded int64
	// Skipped counts entries left alone because they changed on disk.
	Skipped  int64
	Warnings []string
	// Aliases are the names a folding filesystem could not hold, and the
	// names they were given on disk instead.
	Aliases []Alias
}

// Seeds finds chunks in files already in the folder. Paths must come from
// the folder's own walk (the stat cache), never from a peer: the restorer
// opens them without following links and checks every chunk's hash.
type Seeds interface {
	Find(ctx context.Context, ref cas.Ref) (path string, off int64, ok bool)
}

// Apply changes the folder at dir from tree from (the zero Ref: nothing is
// assumed there) to tree to, reading objects and chunks through g. With a
// prefix, from and to are the trees of that subdirectory of dir.
func Apply(ctx context.Context, dir string, g cas.Getter, from, to cas.Ref, opts Options) (*Result, error) {
	return ApplyAt(ctx, dir, "", g, from, to, opts)
}

// ApplyAt is Apply below the slash-separated subdirectory prefix of dir,
// which it makes when missing.
func ApplyAt(ctx context.Context, dir, prefix string, g cas.Getter, from, to cas.Ref, opts Options) (*Result, error) {
	opts.applyDefaults()
	if prefix != "" {
		if err := index.ValidPath(prefix); err != nil {
			return nil, err
		}
	}
	if opts.DryRun != nil {
		return plan(ctx, dir, prefix, g, from, to, opts)
	}
	if opts.Progress != nil {
		if err := announce(ctx, g, from, to, opts.Progress); err != nil {
			return nil, err
		}
	}
	w, err := newWriter(dir, opts)
	if err != nil {
		return nil, err
	}
	defer w.close()
	w.g, w.to = g, to
	if prefix != "" {
		// Sibling names are looked up from the top of the version.
		w.to = cas.Ref{}
	}
	if prefix != "" {
		_, release, err := w.dir(prefix, true)
		if err != nil {
			return nil, err
		}
		release()
	}
	chunks := opts.Chunks
	if chunks == nil {
		chunks = g
	}
	grp, gctx := errgroup.WithContext(ctx)
	grp.SetLimit(opts.Workers + 1)
	var dirModes []index.Change // set after their contents are in place
	skipped := map[string]bool{}
	var group smallGroup
	writeGroup := func() {
		if files := group.take(); len(files) > 0 {
			grp.Go(func() error { return w.writeGroup(gctx, g, chunks, files) })
		}
	}
	err = index.Diff(gctx, g, from, to, func(c index.Change) error {
		c.Path = index.JoinPath(prefix, c.Path)
		if skipped[c.Path] {
			return nil // the second half of a kind change left alone
		}
		if opts.VerifyLocal && c.Old != nil && c.Old.Kind != index.KindDir && !w.matches(c.Path, c.Old, c.New == nil) {
			w.warn("%q changed on disk during the sync; left as it is (the next sync takes it up)", c.Path)
			skipped[c.Path] = true
			atomic.AddInt64(&w.res.Skipped, 1)
			return nil
		}
		if opts.Skip != nil && c.Old == nil && c.New.Kind != index.KindDir && opts.Skip(c.Path, c.New) {
			atomic.AddInt64(&w.res.Skipped, 1)
			return nil
		}
		switch {
		case c.New == nil:
			return w.remove(gctx, c.Path, c.Old)
		case c.New.Kind == index.KindDir:
			if c.Old == nil {
				if err := w.mkdir(gctx, c.Path, c.New); err != nil {
					return err
				}
			}
			dirModes = append(dirModes, c)
			return nil
		case c.New.Kind == index.KindSymlink:
			return w.symlink(gctx, c.Path, c.New)
		default:
			if c.Old != nil && c.Old.Ref == c.New.Ref && c.Old.Kind == index.KindFile {
				return w.setMeta(c.Path, c.New) // mode or mtime only
			}
			e := *c.New
			var old *index.Entry
			if c.Old != nil && c.Old.Kind == index.KindFile {
				old = c.Old
			}
			if old == nil {
				// Before the worker: aliases are decided in the diff's order.
				if err := w.foldAlias(gctx, c.Path); err != nil {
					return err
				}
				if e.Size > 0 && e.Size <= groupFileMax {
					if group.add(groupFile{path: c.Path, e: e}) {
						writeGroup()
					}
					return nil
				}
			}
			grp.Go(func() error { return w.writeFile(gctx, g, chunks, c.Path, &e, old) })
			return nil
		}
	})
	if err == nil {
		writeGroup()
	}
	if werr := grp.Wait(); err == nil {
		err = werr
	}
	if err == nil {
		err = w.commitBatch()
	}
	if err != nil {
		return nil, err
	}
	for i := len(dirModes) - 1; i >= 0; i-- {
		if err := w.setDirMode(dirModes[i].Path, dirModes[i].New); err != nil {
			return nil, err
		}
	}
	if err := w.syncDirs(); err != nil {
		return nil, err
	}
	if err := w.commitCache(); err != nil {
		return nil, err
	}
	return &w.res, nil
}

// writer holds the target's descriptor and what has been done.
type writer struct {
	opts  Options
	root  int
	g     cas.Getter
	to    cas.Ref // the tree being restored (for sibling names)
	nm    names
	mu    sync.Mutex // guards dirs, dirty, res.Warnings, upd
	dirs  map[string]*dirFD
	dirty map[string]bool
	res   Result
	upd   *state.Update

	batchMu   sync.Mutex // guards batch, batchSize
	batch     []pendingFile
	batchSize int64
	commitMu  sync.Mutex // one batch commit at a time
}

func newWriter(dir string, opts Options) (*writer, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("restore: open %s: %w", dir, err)
	}
	w := &writer{opts: opts, root: fd, dirs: map[string]*dirFD{}, dirty: map[string]bool{}}
	if opts.Cache != nil {
		w.upd = opts.Cache.Update()
	}
	if opts.Names != nil {
		mapped, err := opts.Names.Any()
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		w.nm.mapped.Store(mapped)
	}
	return w, nil
}

func (w *writer) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, d := range w.dirs {
		w.dropLocked(p, d)
	}
	unix.Close(w.root)
	if w.upd != nil {
		w.upd.Discard()
	}
}

func (w *writer) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.opts.Logger.Warn(msg)
	w.mu.Lock()
	w.res.Warnings = append(w.res.Warnings, msg)
	w.mu.Unlock()
}

func split(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

func (w *writer) markDirty(dir string) {
	w.mu.Lock()
	w.dirty[dir] = true
	w.mu.Unlock()
}

// matches reports whether the entry at p on disk is still old (for a
// removal, being gone already counts).
func (w *writer) matches(p string, old *index.Entry, removal bool) bool {
	d, _, name := w.at(p)
	pfd, release, err := w.dir(d, false)
	if err != nil {
		return removal
	}
	defer release()
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return removal && errors.Is(err, unix.ENOENT)
	}
	switch old.Kind {
	case index.KindFile:
		return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == old.Size && st.Mtim.Nano() == old.MTime
	case index.KindSymlink:
		buf := make([]byte, index.MaxTargetLen+1)
		n, err := unix.Readlinkat(pfd, name, buf)
		return err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK && string(buf[:n]) == old.Target
	}
	return false
}

// mkdir makes the directory at p. Whatever else is there (a file, a
// symlink) is removed first: the tree says a directory goes there.
func (w *writer) mkdir(ctx context.Context, p string, e *index.Entry) error {
	if err := w.foldAlias(ctx, p); err != nil {
		return err
	}
	d, _, name := w.at(p)
	pfd, release, err := w.dir(d, true)
	if err != nil {
		return err
	}
	defer release()
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil
		}
		if err := unix.Unlinkat(pfd, name, 0); err != nil {
			return fmt.Errorf("restore: replace %q with a directory: %w", p, err)
		}
	}
	if err := unix.Mkdirat(pfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("restore: mkdir %q: %w", p, err)
	}
	w.markDirty(d)
	atomic.AddInt64(&w.res.DirsMade, 1)
	return nil
}

// setDirMode gives a directory its mode, through its own descriptor.
func (w *writer) setDirMode(p string, e *index.Entry) error {
	fd, release, err := w.dir(p, false)
	if err != nil {
		return err
	}
	defer release()
	if err := unix.Fchmod(fd, modeBits(e.Mode)); err != nil {
		return fmt.Errorf("restore: chmod %q: %w", p, err)
	}
	return nil
}

func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		b |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		b |= unix.S_ISVTX
	}
	return b
}

// remove deletes the entry at p. A directory that still holds something
// (ignored files, say) is left with a warning.
func (w *writer) remove(ctx context.Context, p string, e *index.Entry) error {
	d, name, disk := w.at(p)
	if w.sharesDisk(ctx, d, name, disk) {
		// A case-only rename on a folder that folds case: the new name is
		// this very file, in place already.
		w.cacheDelete(d, name)
		return nil
	}
	pfd, release, err := w.dir(d, false)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer release()
	flags := 0
	if e.Kind == index.KindDir {
		flags = unix.AT_REMOVEDIR
		w.forgetDir(p)
	}
	err = unix.Unlinkat(pfd, disk, flags)
	switch {
	case err == nil:
		w.markDirty(d)
		atomic.AddInt64(&w.res.Removed, 1)
		w.cacheDelete(d, name)
		w.forgetName(d, name, disk)
	case errors.Is(err, unix.ENOENT):
	case errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST):
		w.warn("%q: not removed: it holds files that are not in the version (ignored ones?)", p)
	case errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("restore: remove %q: it is not a %s here", p, e.Kind)
	default:
		return fmt.Errorf("restore: remove %q: %w", p, err)
	}
	return nil
}

var tmpSeq atomic.Uint64

func tmpName() string {
	return fmt.Sprintf("%s%d-%d", index.TempPrefix, unix.Getpid(), tmpSeq.Add(1))
}

// symlink makes the link at p through a temporary name and a rename, so a
// reader sees the old entry or the new.
func (w *writer) symlink(ctx context.Context, p string, e *index.Entry) error {
	if err := w.foldAlias(ctx, p); err != nil {
		return err
	}
	d, _, name := w.at(p)
	pfd, release, err := w.dir(d, true)
	if err != nil {
		return err
	}
	defer release()
	tmp := tmpName()
	if err := unix.Symlinkat(e.Target, pfd, tmp); err != nil {
		return fmt.Errorf("restore: symlink %q: %w", p, err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
	if err := unix.UtimesNanoAt(pfd, tmp, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		w.opts.Logger.Debug("symlink mtime not set", "path", p, "err", err)
	}
	if err := w.rename(pfd, tmp, name, p); err != nil {
		return err
	}
	w.markDirty(d)
	return nil
}

func (w *writer) rename(pfd int, tmp, name, p string) error {
	if err := unix.Renameat(pfd, tmp, pfd, name); err != nil {
		unix.Unlinkat(pfd, tmp, 0)
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("restore: %q: a directory is in the way", p)
		}
		return fmt.Errorf("restore: rename into %q: %w", p, err)
	}
	return nil
}

// setMeta gives an existing file its mode and mtime when only they changed.
func (w *writer) setMeta(p string, e *index.Entry) error {
	d, name, disk := w.at(p)
	pfd, release, err := w.dir(d, false)
	if err != nil {
		return err
	}
	defer release()
	fd, err := unix.Openat(pfd, disk, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("restore: open %q: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("restore: %q is not a regular file", p)
	}
	if err := w.finishFile(fd, p, e); err != nil {
		return err
	}
	return w.cachePut(fd, d, name, e.Ref)
}

// finishFile gives the open file its mode and mtime, through its fd.
func (w *writer) finishFile(fd int, p string, e *index.Entry) error {
	if err := unix.Fchmod(fd, modeBits(e.Mode)); err != nil {
		return fmt.Errorf("restore: chmod %q: %w", p, err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
	if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("restore: set mtime of %q: %w", p, err)
	}
	return nil
}
