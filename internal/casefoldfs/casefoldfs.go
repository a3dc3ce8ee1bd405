// Package casefoldfs is a test filesystem: a FUSE mount over a directory
// that folds case the way macOS, Windows and ext4's casefold do. "README"
// and "readme" name one file; a name keeps the spelling it was created
// with (or last renamed to), and that is what a listing shows. The kernel
// here has no casefold support, so tests of how ferry behaves on such a
// filesystem mount this one.
//
// Each name is stored in the backing directory under its folded form
// (Unicode case folding, then NFC); the spellings live in memory for the
// mount's life. Only what a synced folder needs is implemented: files,
// directories and symlinks.
package casefoldfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Fold is the form under which this filesystem stores and matches names.
func Fold(name string) string { return norm.NFC.String(cases.Fold().String(name)) }

// Mount mounts a case-folding view of backing at mnt (root only: it mounts
// with mount(2) directly) and returns a function that unmounts it.
func Mount(backing, mnt string) (unmount func() error, err error) {
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, err
	}
	root := &node{fsys: &filesystem{backing: backing, spelling: map[string]string{}}}
	zero := time.Duration(0)
	srv, err := fs.Mount(mnt, root, &fs.Options{
		// No caching of names in the kernel: it would answer lookups of
		// one spelling with what it learnt of another.
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "casefold", Name: "casefold"},
	})
	if err != nil {
		return nil, fmt.Errorf("casefoldfs: mount %s: %w", mnt, err)
	}
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return nil, err
	}
	return srv.Unmount, nil
}

// filesystem holds the spellings of the names.
type filesystem struct {
	backing  string
	mu       sync.Mutex
	spelling map[string]string // folded relative path -> name as spelt
}

func (f *filesystem) spell(rel, name string) {
	f.mu.Lock()
	f.spelling[rel] = name
	f.mu.Unlock()
}

func (f *filesystem) forget(rel string) {
	f.mu.Lock()
	delete(f.spelling, rel)
	f.mu.Unlock()
}

func (f *filesystem) spelt(rel, stored string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.spelling[rel]; ok {
		return s
	}
	return stored
}

// node is one file, directory or link.
type node struct {
	fs.Inode
	fsys *filesystem
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeReaddirer      = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeFsyncer        = (*node)(nil)
)

// Fsync syncs a file through its handle, or a directory by its path.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if s, ok := f.(fs.FileFsyncer); ok {
		return s.Fsync(ctx, flags)
	}
	d, err := os.Open(n.backing(n.rel()))
	if err != nil {
		return fs.ToErrno(err)
	}
	defer d.Close()
	return fs.ToErrno(d.Sync())
}

// rel is the node's path in the backing directory: each component of its
// path in the mount, folded.
func (n *node) rel() string {
	p := n.Path(n.Root())
	if p == "" {
		return ""
	}
	parts := strings.Split(p, "/")
	for i, c := range parts {
		parts[i] = Fold(c)
	}
	return strings.Join(parts, "/")
}

func (n *node) backing(rel string) string { return filepath.Join(n.fsys.backing, rel) }

// child is the backing path of name in directory n, and its key.
func (n *node) child(name string) (rel, path string) {
	rel = filepath.ToSlash(filepath.Join(n.rel(), Fold(name)))
	return rel, n.backing(rel)
}

func (n *node) newChild(ctx context.Context, path string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	out.Attr.FromStat(&st)
	ch := n.NewInode(ctx, &node{fsys: n.fsys}, fs.StableAttr{Mode: st.Mode, Ino: st.Ino, Gen: 1})
	return ch, 0
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	_, path := n.child(name)
	return n.newChild(ctx, path, out)
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	rel, path := n.child(name)
	_, existed := os.Lstat(path)
	fd, err := syscall.Open(path, int(flags&^syscall.O_APPEND)|syscall.O_CREAT, mode)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	if existed != nil {
		n.fsys.spell(rel, name)
	}
	ch, errno := n.newChild(ctx, path, out)
	if errno != 0 {
		syscall.Close(fd)
		return nil, nil, 0, errno
	}
	return ch, fs.NewLoopbackFile(fd), 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	rel, path := n.child(name)
	if err := syscall.Mkdir(path, mode); err != nil {
		return nil, fs.ToErrno(err)
	}
	n.fsys.spell(rel, name)
	return n.newChild(ctx, path, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	rel, path := n.child(name)
	if err := syscall.Symlink(target, path); err != nil {
		return nil, fs.ToErrno(err)
	}
	n.fsys.spell(rel, name)
	return n.newChild(ctx, path, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	rel, path := n.child(name)
	if err := syscall.Unlink(path); err != nil {
		return fs.ToErrno(err)
	}
	n.fsys.forget(rel)
	return 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	rel, path := n.child(name)
	if err := syscall.Rmdir(path); err != nil {
		return fs.ToErrno(err)
	}
	n.fsys.forget(rel)
	return 0
}

// Rename keeps the new spelling, as a case-preserving filesystem does; a
// rename to another spelling of the same name only changes the spelling.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	srel, spath := n.child(name)
	drel, dpath := np.child(newName)
	if srel != drel {
		if err := unix.Renameat2(unix.AT_FDCWD, spath, unix.AT_FDCWD, dpath, uint(flags)); err != nil {
			return fs.ToErrno(err)
		}
		n.fsys.forget(srel)
	} else if _, err := os.Lstat(spath); err != nil {
		return fs.ToErrno(err)
	}
	n.fsys.spell(drel, newName)
	return 0
}

func (n *node) listing() ([]fuse.DirEntry, syscall.Errno) {
	rel := n.rel()
	entries, err := os.ReadDir(n.backing(rel))
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	out := make([]fuse.DirEntry, 0, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue
		}
		st := info.Sys().(*syscall.Stat_t)
		crel := filepath.ToSlash(filepath.Join(rel, e.Name()))
		out = append(out, fuse.DirEntry{Name: n.fsys.spelt(crel, e.Name()), Mode: st.Mode, Ino: st.Ino})
	}
	return out, 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	entries, errno := n.listing()
	if errno != 0 {
		return nil, errno
	}
	return fs.NewListDirStream(entries), 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	entries, errno := n.listing()
	if errno != 0 {
		return nil, 0, errno
	}
	return fs.NewListDirStream(entries), 0, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fd, err := syscall.Open(n.backing(n.rel()), int(flags&^(syscall.O_APPEND|fuse.FMODE_EXEC)), 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	return fs.NewLoopbackFile(fd), 0, 0
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if g, ok := f.(fs.FileGetattrer); ok {
		return g.Getattr(ctx, out)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(n.backing(n.rel()), &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if s, ok := f.(fs.FileSetattrer); ok {
		return s.Setattr(ctx, in, out)
	}
	path := n.backing(n.rel())
	if m, ok := in.GetMode(); ok {
		if err := syscall.Chmod(path, m); err != nil {
			return fs.ToErrno(err)
		}
	}
	if sz, ok := in.GetSize(); ok {
		if err := syscall.Truncate(path, int64(sz)); err != nil {
			return fs.ToErrno(err)
		}
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fs.ToErrno(err)
		}
	}
	return n.Getattr(ctx, nil, out)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	buf := make([]byte, 4097)
	sz, err := syscall.Readlink(n.backing(n.rel()), buf)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return buf[:sz], 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.fsys.backing, &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

// MountT mounts a case-folding view of a fresh directory for a test and
// returns its mount point, unmounted when the test ends. A machine that
// cannot mount FUSE (no /dev/fuse, not root) fails the test, saying so.
func MountT(t testing.TB) string {
	t.Helper()
	backing, mnt := t.TempDir(), t.TempDir()
	unmount, err := Mount(backing, mnt)
	if err != nil {
		t.Fatalf("cannot mount the case-folding test filesystem (it needs /dev/fuse and root; CI has both): %v", err)
	}
	t.Cleanup(func() {
		if err := unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}
