package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPortableNamespace (A9): a namespace an admin marks portable refuses
// a push of names Windows cannot hold, naming the path, and nothing is
// committed; without the mark they are pushed with a warning.
func TestPortableNamespace(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	srv := startServe(t, data)
	admin := []string{"FERRY_TOKEN=" + readAdminToken(t, data), "FERRY_FINGERPRINT=" + srv.fp}
	for _, tc := range []struct {
		ns       string
		portable bool
	}{{"lax", false}, {"strict", true}} {
		t.Run(tc.ns, func(t *testing.T) {
			if tc.portable {
				out, err := ferryRun(t, admin, "admin", "namespace", tc.ns, "--portable", "--data", data)
				if err != nil || !strings.Contains(out, "portable true") {
					t.Fatalf("admin namespace --portable: %v\n%s", err, out)
				}
			}
			env := []string{"FERRY_TOKEN=" + srv.token(tc.ns, "write"), "FERRY_FINGERPRINT=" + srv.fp}
			dir := filepath.Join(tmp, tc.ns)
			if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url(tc.ns), "--root", "r"); err != nil {
				t.Fatalf("init: %v\n%s", err, out)
			}
			os.WriteFile(filepath.Join(dir, "fine.txt"), []byte("ok"), 0o644)
			if out, err := ferryRun(t, env, "push", dir); err != nil {
				t.Fatalf("push: %v\n%s", err, out)
			}
			os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
			os.WriteFile(filepath.Join(dir, "sub", "nul.txt"), []byte("device name"), 0o644)
			os.WriteFile(filepath.Join(dir, "a:b"), []byte("colon"), 0o644)
			out, err := ferryRun(t, env, "push", dir)
			if !tc.portable {
				if err != nil || !strings.Contains(out, "warning") || !strings.Contains(out, "nul.txt") || !strings.Contains(out, "a:b") {
					t.Fatalf("push of Windows-hostile names to a lax namespace: %v\n%s", err, out)
				}
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !strings.Contains(out, "portable") || !(strings.Contains(out, "sub/nul.txt") || strings.Contains(out, "a:b")) {
				t.Fatalf("push of Windows-hostile names to a portable namespace: %v\n%s", err, out)
			}
			logOut, err := ferryCmd(env, "--json", "log", dir).Output()
			var versions []map[string]any
			if err != nil || json.Unmarshal(logOut, &versions) != nil || len(versions) != 1 {
				t.Fatalf("after the refused push the history is %s (%v); want the first version only", logOut, err)
			}
			// Renamed to portable names, it pushes.
			os.Rename(filepath.Join(dir, "sub", "nul.txt"), filepath.Join(dir, "sub", "null.txt"))
			os.Rename(filepath.Join(dir, "a:b"), filepath.Join(dir, "a-b"))
			if out, err := ferryRun(t, env, "push", dir); err != nil {
				t.Fatalf("push after renaming: %v\n%s", err, out)
			}
		})
	}
}
