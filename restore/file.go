package restore

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/failpoint"
	"golang.org/x/sys/unix"
)

// writeFile writes the file e at p: a temporary file in the final
// directory, every chunk verified as it is read, fsync, mode and mtime
// through the descriptor, then a rename over whatever had the name.
//
// When the file replaces an old version of itself that is still on disk
// as the stat cache last saw it, chunks the two share are copied from the
// old file (and verified) instead of fetched.
func (w *writer) writeFile(ctx context.Context, g, chunkSrc cas.Getter, p string, e *index.Entry, old *index.Entry) error {
	chunks, size, err := index.Chunks(ctx, g, e.Ref)
	if err != nil {
		return fmt.Errorf("restore %q: %w", p, err)
	}
	if size != e.Size {
		return fmt.Errorf("restore %q: %w: entry says %d bytes, file object %d", p, index.ErrMalformed, e.Size, size)
	}
	d, name := split(p)
	pfd, release, err := w.dir(d, true)
	if err != nil {
		return err
	}
	defer release()
	tmp := tmpName()
	fd, err := unix.Openat(pfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("restore %q: create: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	local := w.localChunks(ctx, g, pfd, d, name, old)
	defer local.close()
	done := false
	defer func() {
		if !done {
			f.Close()
			unix.Unlinkat(pfd, tmp, 0)
		}
	}()
	for _, c := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, ok := local.get(c)
		if !ok {
			data, err = chunkSrc.Get(ctx, c.Ref)
		}
		if err != nil {
			return fmt.Errorf("restore %q: chunk %s: %w", p, c.Ref.Short(), err)
		}
		if len(data) != int(c.Len) {
			return fmt.Errorf("restore %q: %w: chunk %s is %d bytes, listed as %d", p, cas.ErrCorrupt, c.Ref.Short(), len(data), c.Len)
		}
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("restore %q: write: %w", p, err)
		}
		failpoint.Hit("restore-chunk-written")
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("restore %q: fsync: %w", p, err)
	}
	if err := w.finishFile(fd, p, e); err != nil {
		return err
	}
	if err := w.rename(pfd, tmp, name, p); err != nil {
		return err
	}
	done = true
	defer f.Close()
	w.markDirty(d)
	atomic.AddInt64(&w.res.FilesWritten, 1)
	atomic.AddInt64(&w.res.BytesWritten, size)
	if w.opts.Progress != nil {
		w.opts.Progress(Event{Files: 1, Bytes: size, Path: p})
	}
	return w.cachePut(fd, d, name, e.Ref)
}

// localSource serves chunks from a file already on disk.
type localSource struct {
	f    *os.File
	offs map[cas.Ref]int64
	buf  []byte
}

// localChunks opens the old copy of a file when it is what the stat cache
// says it is (so its chunk list is known without reading it), and maps
// its chunks to their offsets. Any doubt gives an empty source.
func (w *writer) localChunks(ctx context.Context, g cas.Getter, pfd int, dir, name string, old *index.Entry) *localSource {
	if old == nil || w.opts.Cache == nil {
		return nil
	}
	cached, ok := w.opts.Cache.Lookup(index.JoinPath(dir, name))
	if !ok || cached.Ref != old.Ref {
		return nil
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), name)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG ||
		st.Size != cached.Size || st.Mtim.Nano() != cached.MTime || st.Ino != cached.Inode {
		f.Close()
		return nil
	}
	chunks, _, err := index.Chunks(ctx, g, old.Ref)
	if err != nil {
		f.Close()
		return nil
	}
	src := &localSource{f: f, offs: make(map[cas.Ref]int64, len(chunks))}
	var off int64
	for _, c := range chunks {
		src.offs[c.Ref] = off
		off += int64(c.Len)
	}
	return src
}

// get returns chunk c from the old file if it is there and still hashes
// to its ref.
func (s *localSource) get(c index.ChunkRef) ([]byte, bool) {
	if s == nil {
		return nil, false
	}
	off, ok := s.offs[c.Ref]
	if !ok {
		return nil, false
	}
	if cap(s.buf) < int(c.Len) {
		s.buf = make([]byte, c.Len)
	}
	b := s.buf[:c.Len]
	if _, err := s.f.ReadAt(b, off); err != nil || cas.Sum(b) != c.Ref {
		return nil, false
	}
	return b, true
}

func (s *localSource) close() {
	if s != nil {
		s.f.Close()
	}
}
