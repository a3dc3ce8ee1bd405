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
// directory, every chunk verified, fsync, mode and mtime through the
// descriptor, then a rename over whatever had the name.
//
// Chunks come from the cheapest place that has them, each checked against
// its ref: the temporary file a killed restore of the same content left
// (so a rerun resumes mid-file), the old copy of this file when the stat
// cache vouches for it, other files of the folder (Options.Seeds), and only
// then the chunk getter, in batches when it can.
func (w *writer) writeFile(ctx context.Context, g, chunkSrc cas.Getter, p string, e *index.Entry, old *index.Entry) error {
	chunks, size, err := index.Chunks(ctx, g, e.Ref)
	if err != nil {
		return fmt.Errorf("restore %q: %w", p, err)
	}
	if size != e.Size {
		return fmt.Errorf("restore %q: %w: entry says %d bytes, file object %d", p, index.ErrMalformed, e.Size, size)
	}
	d, name, disk := w.at(p)
	pfd, release, err := w.dir(d, true)
	if err != nil {
		return err
	}
	defer release()
	tmp := resumeName(name, e.Ref)
	fd, err := unix.Openat(pfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("restore %q: create: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	done := false
	defer func() {
		if !done {
			f.Close()
			// A partial file stays for a rerun to resume from, unless the
			// restore was refused for its content.
			if ctx.Err() == nil {
				unix.Unlinkat(pfd, tmp, 0)
			}
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("restore %q: temporary file is not a regular file", p)
	}
	have := st.Size // bytes a killed run left; checked chunk by chunk
	local := w.localChunks(ctx, g, pfd, d, name, disk, old)
	defer local.close()

	var off int64
	var fetch []index.ChunkRef
	var fetchOff []int64
	for _, c := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(c.Len)
		switch {
		case off+n <= have && w.verifyAt(f, c, off):
			// Already there from the killed run.
		case w.copyLocal(f, local, c, off), w.copySeed(ctx, f, c, off):
		default:
			fetch = append(fetch, c)
			fetchOff = append(fetchOff, off)
		}
		off += n
	}
	// A large file's bytes show as they arrive; placed adds the rest.
	var shown atomic.Int64
	var onWrite func(int64)
	if w.opts.Progress != nil && size >= smallFile {
		onWrite = func(n int64) {
			shown.Add(n)
			w.opts.Progress(Event{Bytes: n})
		}
	}
	if err := fetchInto(ctx, chunkSrc, f, fetch, fetchOff, onWrite); err != nil {
		return fmt.Errorf("restore %q: %w", p, err)
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("restore %q: %w", p, err)
	}
	if err := w.finishFile(fd, p, e); err != nil {
		return err
	}
	atomic.AddInt64(&w.res.ChunksFetched, int64(len(fetch)))
	if size < smallFile {
		// Small files are made durable together: one syncfs for a batch,
		// then their renames. An fsync each would cost more than the write.
		done = true
		if err := f.Close(); err != nil {
			return fmt.Errorf("restore %q: %w", p, err)
		}
		return w.deferRename(pendingFile{dir: d, tmp: tmp, name: name, disk: disk, path: p, size: size, ref: e.Ref})
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("restore %q: fsync: %w", p, err)
	}
	if err := w.rename(pfd, tmp, disk, p); err != nil {
		return err
	}
	done = true
	defer f.Close()
	w.placed(d, p, size, shown.Load())
	return w.cachePut(fd, d, name, e.Ref)
}

// placed counts a file that reached its final name; shown of its bytes
// were reported to Progress already.
func (w *writer) placed(dir, p string, size, shown int64) {
	w.markDirty(dir)
	atomic.AddInt64(&w.res.FilesWritten, 1)
	atomic.AddInt64(&w.res.BytesWritten, size)
	if w.opts.Progress != nil {
		w.opts.Progress(Event{Files: 1, Bytes: size - shown, Path: p})
	}
}

// smallFile is the size below which files are synced in batches.
const smallFile = 4 << 20

// Bounds on a batch of small files waiting for their sync and rename.
const (
	batchFiles = 4096
	batchBytes = 256 << 20
)

// pendingFile is a small file written under its temporary name, waiting
// for the batch's sync before its rename.
type pendingFile struct {
	dir, tmp, name, disk, path string
	size                       int64
	ref                        cas.Ref
}

func (w *writer) deferRename(pf pendingFile) error {
	w.batchMu.Lock()
	w.batch = append(w.batch, pf)
	w.batchSize += pf.size
	full := len(w.batch) >= batchFiles || w.batchSize >= batchBytes
	w.batchMu.Unlock()
	if full {
		return w.commitBatch()
	}
	return nil
}

// commitBatch makes the waiting small files durable with one syncfs of
// the target's filesystem, then gives each its final name. The order is
// the one an fsync per file gives: no final name ever holds bytes a crash
// could lose.
func (w *writer) commitBatch() error {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	w.batchMu.Lock()
	batch := w.batch
	w.batch, w.batchSize = nil, 0
	w.batchMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := unix.Syncfs(w.root); err != nil {
		return fmt.Errorf("restore: syncfs: %w", err)
	}
	for _, pf := range batch {
		pfd, release, err := w.dir(pf.dir, false)
		if err != nil {
			return err
		}
		err = w.rename(pfd, pf.tmp, pf.disk, pf.path)
		if err == nil {
			err = w.cachePutAt(pfd, pf.dir, pf.name, pf.disk, pf.ref)
		}
		release()
		if err != nil {
			return err
		}
		w.placed(pf.dir, pf.path, pf.size, 0)
	}
	return nil
}

// resumeName is the temporary name for writing content ref under name: the
// same across runs, so a rerun finds what a killed run wrote.
func resumeName(name string, ref cas.Ref) string {
	h := cas.Sum(append([]byte(name+"\x00"), ref[:]...))
	return index.TempPrefix + h.String()[:24]
}

// verifyAt reports whether f holds chunk c at off.
func (w *writer) verifyAt(f *os.File, c index.ChunkRef, off int64) bool {
	buf := make([]byte, c.Len)
	_, err := f.ReadAt(buf, off)
	return err == nil && cas.Sum(buf) == c.Ref
}

func (w *writer) copyLocal(f *os.File, local *localSource, c index.ChunkRef, off int64) bool {
	data, ok := local.get(c)
	if !ok {
		return false
	}
	_, err := f.WriteAt(data, off)
	return err == nil
}

// copySeed copies chunk c from another file of the folder that has it.
func (w *writer) copySeed(ctx context.Context, f *os.File, c index.ChunkRef, off int64) bool {
	if w.opts.Seeds == nil {
		return false
	}
	path, at, ok := w.opts.Seeds.Find(ctx, c.Ref)
	if !ok {
		return false
	}
	d, _, name := w.at(path)
	pfd, release, err := w.dir(d, false)
	if err != nil {
		return false
	}
	defer release()
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	buf := make([]byte, c.Len)
	if n, err := unix.Pread(fd, buf, at); err != nil || n != len(buf) || cas.Sum(buf) != c.Ref {
		return false
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		return false
	}
	atomic.AddInt64(&w.res.ChunksSeeded, 1)
	return true
}

// batchGetter fetches many blobs in one exchange (the QUIC client).
type batchGetter interface {
	GetMany(ctx context.Context, refs []cas.Ref, fn func(cas.Ref, []byte) error) error
}

// fetchInto fetches chunks and writes each at its offset, in batches of at
// most 32 MiB when src can batch; onWrite, if set, is told each chunk's
// bytes as they are written.
func fetchInto(ctx context.Context, src cas.Getter, f *os.File, chunks []index.ChunkRef, offs []int64, onWrite func(int64)) error {
	bg, batches := src.(batchGetter)
	for i := 0; i < len(chunks); {
		j, bytes := i, 0
		for j < len(chunks) && (j == i || (batches && bytes+int(chunks[j].Len) <= 32<<20 && j-i < 256)) {
			bytes += int(chunks[j].Len)
			j++
		}
		write := func(k int, data []byte) error {
			c := chunks[k]
			if len(data) != int(c.Len) {
				return fmt.Errorf("%w: chunk %s is %d bytes, listed as %d", cas.ErrCorrupt, c.Ref.Short(), len(data), c.Len)
			}
			if _, err := f.WriteAt(data, offs[k]); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if onWrite != nil {
				onWrite(int64(len(data)))
			}
			failpoint.Hit("restore-chunk-written")
			return nil
		}
		if batches {
			refs := make([]cas.Ref, j-i)
			for k := range refs {
				refs[k] = chunks[i+k].Ref
			}
			k := i
			if err := bg.GetMany(ctx, refs, func(_ cas.Ref, data []byte) error {
				err := write(k, data)
				k++
				return err
			}); err != nil {
				return fmt.Errorf("chunk: %w", err)
			}
		} else {
			data, err := src.Get(ctx, chunks[i].Ref)
			if err != nil {
				return fmt.Errorf("chunk %s: %w", chunks[i].Ref.Short(), err)
			}
			if err := write(i, data); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
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
func (w *writer) localChunks(ctx context.Context, g cas.Getter, pfd int, dir, name, disk string, old *index.Entry) *localSource {
	if old == nil || w.opts.Cache == nil {
		return nil
	}
	cached, ok := w.opts.Cache.Lookup(index.JoinPath(dir, name))
	if !ok || cached.Ref != old.Ref {
		return nil
	}
	fd, err := unix.Openat(pfd, disk, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
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
