package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"golang.org/x/sys/unix"
)

// readFiles is one reader worker. After an error it goes on draining the
// queue, so that every job gives back its directory's descriptor.
func (s *scanner) readFiles() error {
	sp := chunk.NewSplitter(nil, s.opts.Params)
	var first error
	for job := range s.files {
		if first == nil {
			first = s.readFile(sp, job)
			if first == nil {
				first = s.childDone(job.dir)
			}
			if first != nil {
				s.abort(first)
			}
		}
		job.dir.release()
	}
	return first
}

// readFile reads one file until it reads the same state from start to end.
func (s *scanner) readFile(sp *chunk.Splitter, job *fileJob) error {
	for attempt := 0; ; attempt++ {
		ref, st, err := s.readOnce(sp, job)
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

// readOnce opens the file relative to its directory's descriptor, without
// following a link or blocking (a FIFO swapped in is never waited on),
// checks with fstat that it is a regular file, chunks it, and checks that
// its stat did not change while it was read. It returns the file object's
// ref.
func (s *scanner) readOnce(sp *chunk.Splitter, job *fileJob) (cas.Ref, state.Stat, error) {
	fd, err := unix.Openat(job.dir.fd, job.disk, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP {
			return cas.Ref{}, state.Stat{}, &changedError{gone: true}
		}
		return cas.Ref{}, state.Stat{}, err
	}
	f := os.NewFile(uintptr(fd), job.path)
	defer f.Close()
	var sys unix.Stat_t
	if err := unix.Fstat(fd, &sys); err != nil {
		return cas.Ref{}, state.Stat{}, err
	}
	mode, before := state.FromSys(&sys)
	if !mode.IsRegular() {
		return cas.Ref{}, state.Stat{}, &changedError{gone: true}
	}
	var (
		chunks []*index.ChunkRef
		wg     sync.WaitGroup
		uerr   atomic.Pointer[error]
		read   int64
	)
	getBuf := func() ([]byte, error) {
		select {
		case buf := <-s.bufs:
			if buf == nil {
				buf = make([]byte, 0, s.opts.Params.Max)
			}
			return buf, nil
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		}
	}
	// send hands one chunk (data, in buf) to the hashers and uploaders.
	send := func(data, buf []byte) error {
		read += int64(len(data))
		s.progress(Event{BytesRead: int64(len(data))})
		cr := &index.ChunkRef{Len: uint32(len(data))}
		chunks = append(chunks, cr)
		wg.Add(1)
		job := chunkJob{ref: &cr.Ref, data: data, buf: buf, wg: &wg, errp: &uerr}
		select {
		case s.chunks <- job:
			return nil
		case <-s.ctx.Done():
			s.bufs <- buf
			wg.Done()
			return s.ctx.Err()
		}
	}
	if w := s.cutWorkers(); before.Size >= parallelCutMin && w > 1 {
		err = s.cutParallel(f, before.Size, w, getBuf, send)
	} else {
		err = s.cutSequential(sp, f, getBuf, send)
	}
	if err != nil {
		wg.Wait()
		return cas.Ref{}, state.Stat{}, err
	}
	wg.Wait()
	if p := uerr.Load(); p != nil {
		return cas.Ref{}, state.Stat{}, *p
	}
	atomic.AddInt64(&s.res.FilesRead, 1)
	atomic.AddInt64(&s.res.BytesRead, read)
	action := "new"
	if job.had {
		action = "modified"
	}
	s.progress(Event{FilesRead: 1, CurrentPath: job.path, Action: action})
	// The name, looked up again in the same directory, must still be the
	// file that was read, unchanged.
	_, after, err := lstatAt(job.dir.fd, job.disk)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return cas.Ref{}, state.Stat{}, &changedError{gone: true}
		}
		return cas.Ref{}, state.Stat{}, err
	}
	if !after.Unchanged(before) || read != before.Size {
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

// cutWorkers is how many cores cut one large file (Options.CutWorkers).
func (s *scanner) cutWorkers() int {
	if s.opts.CutWorkers > 0 {
		return s.opts.CutWorkers
	}
	if n := runtime.GOMAXPROCS(0); n >= 4 {
		return n
	}
	return 1
}

// parallelCutMin is the size from which a file is cut on every core
// (chunk.ParallelCuts): two of its segments.
const parallelCutMin = 64 << 20

// cutSequential cuts f as it reads it, on this goroutine.
func (s *scanner) cutSequential(sp *chunk.Splitter, f *os.File, getBuf func() ([]byte, error), send func(data, buf []byte) error) error {
	sp.Reset(f)
	for {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		buf, err := getBuf()
		if err != nil {
			return err
		}
		c, err := sp.Cut(buf)
		if err == io.EOF {
			s.bufs <- buf
			return nil
		}
		if err != nil {
			s.bufs <- buf
			return err
		}
		if err := send(c.Data, buf); err != nil {
			return err
		}
	}
}

// cutParallel cuts a large file on every core, with the boundaries of the
// sequential cut, then reads each chunk into its buffer (again: the page
// cache has it) in order. A file that shrinks meanwhile ends short: it
// changed, and is read again.
func (s *scanner) cutParallel(f *os.File, size int64, workers int, getBuf func() ([]byte, error), send func(data, buf []byte) error) error {
	return chunk.ParallelCuts(s.ctx, f, size, s.opts.Params, chunk.ParallelOptions{Workers: workers}, func(off, n int64) error {
		buf, err := getBuf()
		if err != nil {
			return err
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, off); err != nil {
			s.bufs <- buf[:0]
			if errors.Is(err, io.EOF) {
				return &changedError{}
			}
			return err
		}
		return send(buf, buf)
	})
}
