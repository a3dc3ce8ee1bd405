package state

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-sync/ferry/internal/casefoldfs"
)

// TestCaseFoldProbe (A8): init records whether the folder's filesystem
// folds case; a folder found elsewhere (copied to a filesystem that
// does) is probed again.
func TestCaseFoldProbe(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "f")
	f, err := Init(plain, Config{Remote: "x", Root: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Config.CaseFold || f.Config.Probed == "" {
		t.Fatalf("a plain Linux directory probed as folding case (%+v)", f.Config)
	}
	f.Close()
	// The folder copied onto a case-folding filesystem, config and all.
	moved := filepath.Join(casefoldfs.MountT(t), "f")
	if err := os.MkdirAll(filepath.Join(moved, ".ferry"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(plain, ".ferry", "config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(moved, ".ferry", "config"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := Open(moved)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !g.Config.CaseFold {
		t.Fatal("the folder copied onto a case-folding filesystem was not probed again")
	}
}
