package restore

import (
	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"golang.org/x/sys/unix"
)

func (w *writer) cachePut(fd int, dir, name string, ref cas.Ref) error {
	if w.upd == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	return w.cacheStat(&st, dir, name, ref)
}

// cachePutAt is cachePut for the entry name (disk on disk) of the
// directory pfd, without opening it.
func (w *writer) cachePutAt(pfd int, dir, name, disk string, ref cas.Ref) error {
	if w.upd == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, disk, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil // replaced since the rename: nothing to promise
	}
	return w.cacheStat(&st, dir, name, ref)
}

func (w *writer) cacheStat(st *unix.Stat_t, dir, name string, ref cas.Ref) error {
	_, s := state.FromSys(st)
	s.Ref = ref
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.upd.Put(dir, name, s)
}

func (w *writer) cacheDelete(dir, name string) {
	if w.upd == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.upd.Delete(dir, name)
	_ = w.upd.DeleteTree(index.JoinPath(dir, name))
}

func (w *writer) commitCache() error {
	if w.upd == nil {
		return nil
	}
	err := w.upd.Commit()
	w.upd = nil
	return err
}
