package casefoldfs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFoldsCase: the mount behaves as a case-insensitive, case-preserving
// filesystem.
func TestFoldsCase(t *testing.T) {
	mnt := MountT(t)
	if err := os.WriteFile(filepath.Join(mnt, "README"), []byte("upper"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(mnt, "readme"))
	if err != nil || string(b) != "upper" {
		t.Fatalf("readme = %q, %v; want README's content", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "ReadMe"), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(mnt)
	if len(entries) != 1 || entries[0].Name() != "README" {
		t.Fatalf("listing %v, want only README (the first spelling)", entries)
	}
	// rename(2) between two spellings of one name is a no-op on Linux
	// (the kernel sees one file), as on ext4's casefold: a case-only
	// rename goes through another name.
	if err := os.Rename(filepath.Join(mnt, "README"), filepath.Join(mnt, "tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "tmp"), filepath.Join(mnt, "readme")); err != nil {
		t.Fatal(err)
	}
	entries, _ = os.ReadDir(mnt)
	if len(entries) != 1 || entries[0].Name() != "readme" {
		t.Fatalf("after a case-only rename: %v, want readme", entries)
	}
	if f, err := os.OpenFile(filepath.Join(mnt, "README"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
		f.Close()
		t.Fatal("O_EXCL create of another spelling succeeded")
	}
	if err := os.Mkdir(filepath.Join(mnt, "Dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "DIR", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "dir", "X")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "READme")); err != nil {
		t.Fatal(err)
	}
}
