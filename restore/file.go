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
func (w *writer) writeFile(ctx context.Context, g, chunkSrc cas.Getter, p string, e *index.Entry) error {
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
		data, err := chunkSrc.Get(ctx, c.Ref)
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
