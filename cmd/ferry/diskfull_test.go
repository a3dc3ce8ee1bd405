package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// smallFS mounts a fresh ext4 filesystem of size bytes on a loop device
// and returns its mount point; it is unmounted when the test ends. It
// needs root, mkfs.ext4 (e2fsprogs) and a loop device, which CI has: a
// machine without them fails the test, saying which is missing.
func smallFS(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("mounting a loop device needs root (CI runs as root)")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (Debian: e2fsprogs, mount): %v", tool, err)
		}
	}
	tmp := t.TempDir()
	img, mnt := filepath.Join(tmp, "fs.img"), filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop (is there a free loop device?): %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	return mnt
}

func freeBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// TestServerDiskFull (F4): the server's data directory on a real 64 MiB
// ext4 filesystem. A push larger than the filesystem is refused with
// "server storage is full" (exit 13) before the disk itself fills; the
// server keeps serving reads; what was acknowledged survives intact; and
// once gc has freed the refused push's leftovers, a smaller push is taken
// without a restart.
func TestServerDiskFull(t *testing.T) {
	mnt := smallFS(t, 64<<20)
	data := filepath.Join(mnt, "data")
	srv := startServeArgs(t, data, "127.0.0.1:0", nil, "--min-free", "12MiB", "--ballast", "4MiB", "--gc-every", "0")
	env := []string{"FERRY_TOKEN=" + srv.token("alice", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	admin := []string{"FERRY_TOKEN=" + readAdminToken(t, data), "FERRY_FINGERPRINT=" + srv.fp}
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("alice"), "--root", "r"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	kept := randomFile(t, filepath.Join(a, "kept.bin"), 8<<20)
	if out, err := ferryRun(t, env, "push", a); err != nil {
		t.Fatalf("first push: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(data, "store", "ballast")); err != nil {
		t.Fatalf("no ballast: %v", err)
	}

	// Larger than the whole filesystem.
	randomFile(t, filepath.Join(a, "huge.bin"), 80<<20)
	out, err := ferryRun(t, env, "push", a)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFull || !strings.Contains(out, "server storage is full") {
		t.Fatalf("push larger than the disk: %v (want exit %d, \"server storage is full\")\n%s", err, exitFull, out)
	}
	m := regexp.MustCompile(`(\d+) bytes free, and the store keeps (\d+) free`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the refusal does not give the free space:\n%s", out)
	}
	free := freeBytes(t, mnt)
	t.Logf("refused at %s bytes free (mark %s); %d bytes free now on the 64 MiB filesystem", m[1], m[2], free)
	if free <= 0 {
		t.Fatalf("the disk filled up: %d bytes free", free)
	}
	if strings.Contains(srv.logs.String(), "no space left") {
		t.Fatalf("the server met ENOSPC:\n%s", srv.logs)
	}

	// Reads go on: another device pulls the acknowledged version.
	if out, err := ferryRun(t, env, "init", b, "--remote", srv.url("alice"), "--root", "r"); err != nil {
		t.Fatalf("init b: %v\n%s", err, out)
	}
	if out, err := ferryRun(t, env, "pull", b); err != nil {
		t.Fatalf("pull while the disk is full: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(b, "kept.bin")); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("pulled kept.bin differs: %v", err)
	}
	if out, err := ferryRun(t, admin, "check", "--read-data", "--remote", "quic://"+srv.addr); err != nil {
		t.Fatalf("check while the disk is full: %v\n%s", err, out)
	}

	// Something else fills the disk to the last MiB: gc gives up the
	// ballast for its own writes, and frees what the refused push left.
	filler := filepath.Join(mnt, "filler")
	fill, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(fill.Fd()), 0, 0, freeBytes(t, mnt)-(1<<20)); err != nil {
		t.Fatalf("fallocate filler: %v", err)
	}
	fill.Close()
	out, err = ferryRun(t, admin, "gc", "--data", data, "--grace", "0s")
	if err != nil {
		t.Fatalf("gc on a full disk: %v\n%s\nserver:\n%s", err, out, srv.logs)
	}
	t.Logf("gc with %d bytes free:\n%s", freeBytes(t, mnt), out)
	if !strings.Contains(srv.logs.String(), "released the ballast") {
		t.Errorf("gc on a full disk did not release the ballast:\n%s", srv.logs)
	}
	os.Remove(filler)
	// A smaller push then succeeds, on the same server process.
	os.Remove(filepath.Join(a, "huge.bin"))
	randomFile(t, filepath.Join(a, "small.bin"), 4<<20)
	if out, err := ferryRun(t, env, "push", a); err != nil {
		t.Fatalf("smaller push after gc: %v\n%s\nserver:\n%s", err, out, srv.logs)
	}
	if srv.cmd.ProcessState != nil {
		t.Fatal("the server exited")
	}
	if out, err := ferryRun(t, admin, "check", "--read-data", "--remote", "quic://"+srv.addr); err != nil {
		t.Fatalf("check after the smaller push: %v\n%s", err, out)
	}
	t.Logf("after gc and the smaller push: %d bytes free", freeBytes(t, mnt))
}
