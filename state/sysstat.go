package state

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// FromSys turns a raw lstat into the file's mode and its Stat, exactly as
// os.Lstat's FileInfo would give them, so that the stat cache entries a
// scan and a restore record compare equal.
func FromSys(sys *unix.Stat_t) (fs.FileMode, Stat) {
	mode := fs.FileMode(sys.Mode & 0o777)
	switch sys.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if sys.Mode&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if sys.Mode&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if sys.Mode&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode, Stat{
		Size:  sys.Size,
		MTime: sys.Mtim.Nano(),
		CTime: sys.Ctim.Nano(),
		Inode: sys.Ino,
		Mode:  uint32(mode),
	}
}
