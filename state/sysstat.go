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

// ReadDirNames lists the directory open as fd (without "." and ".."),
// through a descriptor of its own: fd's offset is shared with whoever
// else holds it, and stays where it was.
func ReadDirNames(fd int) ([]string, error) {
	own, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(own)
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(own, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
