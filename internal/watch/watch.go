// Package watch reports changes under a folder, from inotify on every
// directory (new directories are added as they appear), batched: a batch
// comes once the writes settle, and files still open for writing are
// reported as busy, so a sync never reads a file half-written.
//
// It uses inotify directly rather than fsnotify: fsnotify does not expose
// IN_CLOSE_WRITE, and "closed after writing" is what tells a finished file
// from one a slow writer is still filling.
package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options tune a Watcher. The zero value works.
type Options struct {
	// Settle is the quiet time after the last event before a batch fires
	// (default 50ms), when no file is open for writing.
	Settle time.Duration
	// Debounce bounds how long a burst is coalesced after its first
	// event (default 200ms); a batch then fires even if events go on.
	Debounce time.Duration
	// HoldMax is how long a file open for writing is held back (default
	// 1m); after it, it is synced as it is (the scan still never reads a
	// torn state: it checks the file did not change while it read it).
	HoldMax time.Duration
	// Ignore, if set, says which relative paths to leave unwatched.
	Ignore func(rel string, isDir bool) bool
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) applyDefaults() {
	if o.Settle <= 0 {
		o.Settle = 50 * time.Millisecond
	}
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	if o.HoldMax <= 0 {
		o.HoldMax = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Batch is a set of changes. Overflow means events were lost (the kernel
// queue overflowed, or the batch grew too big): rescan everything.
type Batch struct {
	Paths    []string
	Overflow bool
}

// maxPaths bounds a batch's paths; beyond it the batch is an overflow.
const maxPaths = 4096

// Watcher watches a folder tree.
type Watcher struct {
	root string
	opts Options
	fd   int
	file *os.File
	out  chan Batch
	done chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	dirs  map[int]string       // watch descriptor -> relative dir
	busy  map[string]time.Time // files written and not yet closed -> since
	paths map[string]bool
	over  bool
	first time.Time // first event of the pending batch
	last  time.Time // last event
	kick  chan struct{}
}

const mask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM |
	unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_DONT_FOLLOW | unix.IN_ONLYDIR

// New starts watching root and everything below it.
func New(root string, opts Options) (*Watcher, error) {
	opts.applyDefaults()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watch: inotify: %w", err)
	}
	w := &Watcher{
		root: root, opts: opts, fd: fd, file: os.NewFile(uintptr(fd), "inotify"),
		out: make(chan Batch, 1), done: make(chan struct{}), kick: make(chan struct{}, 1),
		dirs: map[int]string{}, busy: map[string]time.Time{}, paths: map[string]bool{},
	}
	if err := w.addTree(""); err != nil {
		w.file.Close()
		return nil, err
	}
	w.wg.Add(2)
	go w.read()
	go w.batcher()
	return w, nil
}

// Batches delivers batches; it is closed by Close.
func (w *Watcher) Batches() <-chan Batch { return w.out }

// Busy reports whether the relative path is a file written and not yet
// closed (for less than HoldMax): a sync should keep its previous state.
func (w *Watcher) Busy(rel string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	since, ok := w.busy[rel]
	return ok && w.opts.Now().Sub(since) < w.opts.HoldMax
}

// Close stops watching.
func (w *Watcher) Close() error {
	select {
	case <-w.done:
		return nil
	default:
	}
	close(w.done)
	err := w.file.Close()
	w.wg.Wait()
	close(w.out)
	return err
}

// addTree watches dir (relative) and every directory below it.
func (w *Watcher) addTree(rel string) error {
	abs := filepath.Join(w.root, filepath.FromSlash(rel))
	return filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		r, _ := filepath.Rel(w.root, p)
		r = filepath.ToSlash(r)
		if r == "." {
			r = ""
		}
		if r == ".ferry" || (r != "" && w.opts.Ignore != nil && w.opts.Ignore(r, true)) {
			return filepath.SkipDir
		}
		wd, err := unix.InotifyAddWatch(w.fd, p, mask)
		if err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return fmt.Errorf("watch: out of inotify watches (raise fs.inotify.max_user_watches): %w", err)
			}
			return nil // vanished, or not ours to read
		}
		w.mu.Lock()
		w.dirs[wd] = r
		w.mu.Unlock()
		return nil
	})
}

// read turns inotify events into pending changes.
func (w *Watcher) read() {
	defer w.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			select {
			case <-w.done:
			default:
				w.opts.Logger.Error("watch: read", "err", err)
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := ""
			if ev.Len > 0 {
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				name = strings.TrimRight(string(raw), "\x00")
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.handle(int(ev.Wd), ev.Mask, name)
		}
	}
}

func (w *Watcher) handle(wd int, m uint32, name string) {
	now := w.opts.Now()
	w.mu.Lock()
	if m&unix.IN_Q_OVERFLOW != 0 {
		w.over = true
		w.touch(now)
		w.mu.Unlock()
		w.opts.Logger.Warn("watch: inotify queue overflowed; a full rescan follows")
		return
	}
	dir, ok := w.dirs[wd]
	if m&unix.IN_IGNORED != 0 {
		delete(w.dirs, wd)
		w.mu.Unlock()
		return
	}
	if !ok {
		w.mu.Unlock()
		return
	}
	rel := dir
	if name != "" {
		rel = joinRel(dir, name)
	}
	if name == ".ferry" && dir == "" || strings.HasPrefix(name, ".ferry-tmp-") {
		w.mu.Unlock()
		return // our own state and temporary files
	}
	isDir := m&unix.IN_ISDIR != 0
	if w.opts.Ignore != nil && name != "" && w.opts.Ignore(rel, isDir) {
		w.mu.Unlock()
		return
	}
	switch {
	case m&unix.IN_MODIFY != 0 && !isDir:
		if _, ok := w.busy[rel]; !ok {
			w.busy[rel] = now
		}
	case m&(unix.IN_CLOSE_WRITE|unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
		delete(w.busy, rel)
	}
	if len(w.paths) < maxPaths {
		w.paths[rel] = true
	} else {
		w.over = true
	}
	w.touch(now)
	w.mu.Unlock()
	if isDir && m&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
		// A new directory: watch it, and count what is already in it
		// (it may have filled before the watch was in place).
		if err := w.addTree(rel); err != nil {
			w.opts.Logger.Warn("watch: add", "dir", rel, "err", err)
		}
	}
}

// touch records an event; the caller holds mu.
func (w *Watcher) touch(now time.Time) {
	if w.first.IsZero() {
		w.first = now
	}
	w.last = now
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// batcher fires batches when the writes settle.
func (w *Watcher) batcher() {
	defer w.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-w.kick:
		case <-timer.C:
		}
		w.mu.Lock()
		if w.first.IsZero() {
			w.mu.Unlock()
			continue
		}
		now := w.opts.Now()
		settled := now.Sub(w.last) >= w.opts.Settle
		long := now.Sub(w.first) >= w.opts.Debounce
		if !(settled || long) {
			wait := min(w.opts.Settle-now.Sub(w.last), w.opts.Debounce-now.Sub(w.first))
			w.mu.Unlock()
			timer.Reset(wait)
			continue
		}
		b := Batch{Overflow: w.over}
		for p := range w.paths {
			b.Paths = append(b.Paths, p)
		}
		w.paths, w.over, w.first = map[string]bool{}, false, time.Time{}
		w.mu.Unlock()
		select {
		case w.out <- b:
		case <-w.done:
			return
		}
	}
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
