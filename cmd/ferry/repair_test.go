package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// healFolder writes a folder whose damage the tests inflict: a 3 MB file
// (its chunks live in packs) and a directory of 120 files with long
// random names, whose tree object is large enough to be packed too.
func healFolder(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{"big.bin": randomFile(t, filepath.Join(dir, "big.bin"), 3<<20)}
	for i := range 120 {
		name := fmt.Sprintf("docs/%03d-%x.txt", i, randomBytes(24))
		files[name] = randomFile(t, filepath.Join(dir, filepath.FromSlash(name)), 64)
	}
	return files
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// damageTargets opens a store (not in use) and returns the first chunk of
// big.bin and the tree of docs in the root's head.
func damageTargets(t *testing.T, store, namespace, root string) (chunk, tree cas.Ref) {
	t.Helper()
	ctx := context.Background()
	db, err := cas.Open(store, cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ns, _ := db.Namespace(namespace)
	head, err := ns.Head(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	v, err := index.LoadVersion(ctx, ns, head)
	if err != nil {
		t.Fatal(err)
	}
	big, err := index.Lookup(ctx, ns, v.Root, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	chunks, _, err := index.Chunks(ctx, ns, big.Ref)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := index.Lookup(ctx, ns, v.Root, "docs")
	if err != nil {
		t.Fatal(err)
	}
	return chunks[0].Ref, docs.Ref
}

// flipInPack flips 4 bytes in the middle of the pack entry of ref, as rot
// on the disk would (the pack format is in cas/layout.go).
func flipInPack(t *testing.T, store string, ref cas.Ref) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(store, "packs", "*.pack"))
	for _, p := range packs {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for off := 8; off+41 <= len(raw); {
			stored := int(binary.LittleEndian.Uint32(raw[off+37:]))
			if off+41+stored > len(raw) {
				break
			}
			if cas.Ref(raw[off:off+32]) == ref {
				mid := off + 41 + stored/2
				for i := range 4 {
					raw[mid+i] ^= 0xA5
				}
				if err := os.WriteFile(p, raw, 0o600); err != nil {
					t.Fatal(err)
				}
				return
			}
			off += 41 + stored
		}
	}
	t.Fatalf("no pack holds %s (kept inline?)", ref.Short())
}

// TestSelfHealingStore (C10): a flipped byte in a chunk's pack entry and
// a corrupted tree object are found by check and recorded; repair says
// both paths are healable; one push from the folder, with nothing changed
// in it, sends them again; check --read-data is then clean and the
// version restores bit-exact. For a local store and through a server, and
// healed from the folder itself and from a freshly made folder holding
// the same files.
func TestSelfHealingStore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server bool
		fresh  bool // heal from a new folder with a copy of the files
	}{
		{"local", false, false},
		{"local-fresh-folder", false, true},
		{"server", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			a := filepath.Join(tmp, "a")
			var store, remote, namespace string
			var env []string
			var srv *serverProc
			if tc.server {
				data := filepath.Join(tmp, "data")
				srv = startServe(t, data)
				store, remote, namespace = filepath.Join(data, "store"), srv.url("alice"), "alice"
				env = []string{"FERRY_TOKEN=" + srv.token("alice", "write"), "FERRY_FINGERPRINT=" + srv.fp}
			} else {
				store = filepath.Join(tmp, "store")
				remote, namespace = store, "default"
			}
			if out, err := ferryRun(t, env, "init", a, "--remote", remote, "--root", "r"); err != nil {
				t.Fatalf("init: %v\n%s", err, out)
			}
			files := healFolder(t, a)
			if out, err := ferryRun(t, env, "push", a); err != nil {
				t.Fatalf("push: %v\n%s", err, out)
			}
			if srv != nil {
				srv.kill()
			}
			chunk, tree := damageTargets(t, store, namespace, "r")
			flipInPack(t, store, chunk)
			flipInPack(t, store, tree)
			adminArgs := []string{"--remote", store}
			if srv != nil {
				srv = startServeAt(t, filepath.Dir(store), srv.addr)
				adminArgs = []string{"--data", srv.data}
			}
			checkArgs := []string{"check", "--read-data", "--remote", store}
			if srv != nil {
				checkArgs = []string{"check", "--read-data", "--remote", "quic://" + srv.addr}
			}
			adminEnv := env
			if srv != nil {
				adminEnv = append(append([]string(nil), env...), "FERRY_TOKEN="+readAdminToken(t, srv.data))
			}
			out, err := ferryRun(t, adminEnv, checkArgs...)
			if err == nil || !strings.Contains(out, "big.bin") || !strings.Contains(out, "docs") {
				t.Fatalf("check of the damaged store: %v\n%s", err, out)
			}
			if out, err := ferryRun(t, env, "status", a); err != nil || !strings.Contains(out, "'ferry push' sends them again") {
				t.Fatalf("status does not say the folder can heal the store: %v\n%s", err, out)
			}
			var rep struct {
				Paths []struct {
					Path, Status string
					Versions     []string
				}
				Healable int `json:"healable_paths"`
				Lost     int `json:"lost_paths"`
			}
			out, err = ferryRun(t, adminEnv, append([]string{"--json", "repair"}, adminArgs...)...)
			if err == nil || json.Unmarshal([]byte(firstLine(out)), &rep) != nil {
				t.Fatalf("repair of the damaged store: %v\n%s", err, out)
			}
			if rep.Healable != 2 || rep.Lost != 0 || len(rep.Paths) != 2 || rep.Paths[0].Path != "big.bin" || rep.Paths[1].Path != "docs" ||
				rep.Paths[0].Status != "healable" || len(rep.Paths[0].Versions) != 1 {
				t.Fatalf("repair report: %+v\n%s", rep, out)
			}

			healer := a
			if tc.fresh {
				healer = filepath.Join(tmp, "b")
				if out, err := ferryRun(t, env, "init", healer, "--remote", remote, "--root", "r"); err != nil {
					t.Fatalf("init b: %v\n%s", err, out)
				}
				// A copy that keeps modification times (cp -a), so that
				// its trees are the store's.
				for name, b := range files {
					p := filepath.Join(healer, filepath.FromSlash(name))
					os.MkdirAll(filepath.Dir(p), 0o755)
					os.WriteFile(p, b, 0o644)
					fi, err := os.Stat(filepath.Join(a, filepath.FromSlash(name)))
					if err != nil {
						t.Fatal(err)
					}
					os.Chtimes(p, fi.ModTime(), fi.ModTime())
				}
			}
			out, err = ferryRun(t, env, "push", healer)
			if err != nil {
				t.Fatalf("healing push: %v\n%s", err, out)
			}
			if !tc.fresh && !strings.Contains(out, "sent again") {
				t.Errorf("the healing push does not say what it sent again:\n%s", out)
			}
			if out, err := ferryRun(t, adminEnv, checkArgs...); err != nil || !strings.Contains(out, "no damage found") {
				t.Fatalf("check after the healing push: %v\n%s", err, out)
			}
			target := filepath.Join(tmp, "restored")
			if out, err := ferryRun(t, env, "restore", a, "--version", "head", "--to", target); err != nil {
				t.Fatalf("restore: %v\n%s", err, out)
			}
			for name, want := range files {
				got, err := os.ReadFile(filepath.Join(target, filepath.FromSlash(name)))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("restored %s differs: %v", name, err)
				}
			}
		})
	}
}

func readAdminToken(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func firstLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "{") {
			return line
		}
	}
	return ""
}
