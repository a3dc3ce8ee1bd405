package engine

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-sync/ferry/index"
	"golang.org/x/sys/unix"
)

// TestSpecialEntries (A12, B6, A4): a folder holding a FIFO, a socket, a
// character device (a copy of /dev/zero, made with mknod: CI runs as
// root) and a symlink to /dev/zero pushes without blocking or reading any
// of them: the link is kept as a link, the others are skipped with a
// warning each. Hardlinked files are two files, restored as two. A name
// with a newline is refused, and its warning stays on one line.
func TestSpecialEntries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mknod of a device node needs root (CI runs as root)")
	}
	e := newEnv(t)
	a := e.folder("a", "r")
	write(t, filepath.Join(a, "plain.txt"), []byte("plain"), 0o644)
	if err := mkfifo(filepath.Join(a, "fifo")); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(a, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := unix.Mknod(filepath.Join(a, "zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatalf("mknod: %v", err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(a, "zero-link")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(a, "hard1"), []byte("one inode, two names"), 0o644)
	if err := os.Link(filepath.Join(a, "hard1"), filepath.Join(a, "hard2")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(a, "evil\nname"), []byte("x"), 0o644)

	res := e.push(a)
	warned := strings.Join(res.Warnings, "\n")
	for _, name := range []string{"fifo", "sock", "zero\"", `evil\nname`} {
		if !strings.Contains(warned, name) {
			t.Errorf("no warning names %s: %q", name, res.Warnings)
		}
	}
	for _, w := range res.Warnings {
		if strings.Contains(w, "\n") {
			t.Errorf("a warning spans lines: %q", w)
		}
	}
	to := filepath.Join(e.tmp, "restored")
	if _, err := Restore(e.ctx, a, RestoreOptions{Version: "head", To: to}); err != nil {
		t.Fatal(err)
	}
	if got := names(t, to); strings.Join(got, " ") != "hard1 hard2 plain.txt zero-link" {
		t.Fatalf("restored %v", got)
	}
	if target, err := os.Readlink(filepath.Join(to, "zero-link")); err != nil || target != "/dev/zero" {
		t.Fatalf("zero-link restored as %q, %v", target, err)
	}
	var s1, s2 unix.Stat_t
	unix.Stat(filepath.Join(to, "hard1"), &s1)
	unix.Stat(filepath.Join(to, "hard2"), &s2)
	if s1.Ino == s2.Ino || readString(t, filepath.Join(to, "hard2")) != "one inode, two names" {
		t.Fatal("hardlinks are not restored as two files with the content")
	}
	if _, err := os.Lstat(filepath.Join(to, index.StateDir)); err == nil {
		t.Fatal("the folder's state was restored")
	}
}
