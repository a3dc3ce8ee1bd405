package index

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

var mergeNow = time.Date(2026, 11, 21, 10, 30, 0, 0, time.UTC)

// listing renders a tree as "path content" lines (dirs end in /).
func listing(t *testing.T, s *cas.Namespace, root cas.Ref) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := Walk(context.Background(), s, root, func(p string, e Entry) error {
		switch e.Kind {
		case KindDir:
			out[p+"/"] = ""
		case KindSymlink:
			out[p] = "->" + e.Target
		default:
			chunks, _, err := Chunks(context.Background(), s, e.Ref)
			if err != nil {
				return err
			}
			var b []byte
			for _, c := range chunks {
				d, err := s.Get(context.Background(), c.Ref)
				if err != nil {
					return err
				}
				b = append(b, d...)
			}
			out[p] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMerge(t *testing.T) {
	copyOf := func(name string) string { return ConflictName(name, mergeNow, "DEV1234") }
	tests := []struct {
		name                string
		base, local, remote map[string]string
		want                map[string]string
		conflicts           int
	}{
		{"local change wins", map[string]string{"f": "1"}, map[string]string{"f": "2"}, map[string]string{"f": "1"}, map[string]string{"f": "2"}, 0},
		{"remote change wins", map[string]string{"f": "1"}, map[string]string{"f": "1"}, map[string]string{"f": "3"}, map[string]string{"f": "3"}, 0},
		{"same change both", map[string]string{"f": "1"}, map[string]string{"f": "2"}, map[string]string{"f": "2"}, map[string]string{"f": "2"}, 0},
		{"both modified", map[string]string{"a.txt": "1"}, map[string]string{"a.txt": "local"}, map[string]string{"a.txt": "remote"},
			map[string]string{"a.txt": "remote", copyOf("a.txt"): "local"}, 1},
		{"delete here, modify there", map[string]string{"f": "1"}, map[string]string{}, map[string]string{"f": "2"}, map[string]string{"f": "2"}, 0},
		{"modify here, delete there", map[string]string{"f": "1"}, map[string]string{"f": "2"}, map[string]string{}, map[string]string{"f": "2"}, 0},
		{"both delete", map[string]string{"f": "1", "g": "k"}, map[string]string{"g": "k"}, map[string]string{"g": "k"}, map[string]string{"g": "k"}, 0},
		{"added on both, different", map[string]string{}, map[string]string{"n": "L"}, map[string]string{"n": "R"}, map[string]string{"n": "R", copyOf("n"): "L"}, 1},
		{"added on both, same", map[string]string{}, map[string]string{"n": "S"}, map[string]string{"n": "S"}, map[string]string{"n": "S"}, 0},
		{"different files of one dir", map[string]string{"d/a": "1", "d/b": "1"}, map[string]string{"d/a": "2", "d/b": "1"}, map[string]string{"d/a": "1", "d/b": "3"},
			map[string]string{"d/": "", "d/a": "2", "d/b": "3"}, 0},
		{"dir against file", map[string]string{}, map[string]string{"x": "file"}, map[string]string{"x/y": "in dir"},
			map[string]string{"x/": "", "x/y": "in dir", copyOf("x"): "file"}, 1},
		{"deep", map[string]string{"a/b/c/d": "1", "a/b/e": "1"}, map[string]string{"a/b/c/d": "2", "a/b/e": "1"}, map[string]string{"a/b/c/d": "1", "a/b/e": "2", "a/new": "n"},
			map[string]string{"a/": "", "a/b/": "", "a/b/c/": "", "a/b/c/d": "2", "a/b/e": "2", "a/new": "n"}, 0},
		{"symlinks", map[string]string{"l": "->a"}, map[string]string{"l": "->b"}, map[string]string{"l": "->c"}, map[string]string{"l": "->c", copyOf("l"): "->b"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := store(t)
			b, l, r := mkTree(t, s, tt.base), mkTree(t, s, tt.local), mkTree(t, s, tt.remote)
			root, conflicts, err := Merge(context.Background(), s, b, l, r, MergeOptions{Device: "DEV1234", Now: mergeNow})
			if err != nil {
				t.Fatal(err)
			}
			got := listing(t, s, root)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("merged to %v, want %v", got, tt.want)
			}
			if len(conflicts) != tt.conflicts {
				t.Errorf("%d conflicts (%v), want %d", len(conflicts), conflicts, tt.conflicts)
			}
		})
	}
}

// TestMergeGolden freezes one merge with every kind of case in one tree:
// the merged listing and the conflict records.
func TestMergeGolden(t *testing.T) {
	s := store(t)
	base := map[string]string{"docs/plan.md": "v1", "docs/old.txt": "old", "img/a.png": "A", "notes": "n1", "keep": "k", "gone": "g"}
	local := map[string]string{"docs/plan.md": "v2 local", "docs/old.txt": "old", "img/a.png": "A", "img/b.png": "B", "notes": "n2", "keep": "k", "x": "local file"}
	remote := map[string]string{"docs/plan.md": "v2 remote", "img/a.png": "A2", "notes": "n1", "keep": "k", "gone": "g edited", "x/inside": "remote dir"}
	root, conflicts, err := Merge(context.Background(), s, mkTree(t, s, base), mkTree(t, s, local), mkTree(t, s, remote), MergeOptions{Device: "ABCDEF7", Now: mergeNow})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for p, c := range listing(t, s, root) {
		lines = append(lines, fmt.Sprintf("%s %q", p, c))
	}
	sort.Strings(lines)
	for _, c := range conflicts {
		lines = append(lines, fmt.Sprintf("conflict %s -> %s (%s)", c.Path, c.Copy, c.Kind))
	}
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", "merge.golden")
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("merge:\n%s\nwant:\n%s", got, want)
	}
}

func TestConflictName(t *testing.T) {
	for name, want := range map[string]string{
		"report.docx": "report.sync-conflict-20261121-103000-DEV.docx",
		".bashrc":     ".bashrc.sync-conflict-20261121-103000-DEV",
		"Makefile":    "Makefile.sync-conflict-20261121-103000-DEV",
		"a.tar.gz":    "a.tar.sync-conflict-20261121-103000-DEV.gz",
	} {
		if got := ConflictName(name, mergeNow, "DEV"); got != want {
			t.Errorf("ConflictName(%q) = %q, want %q", name, got, want)
		}
	}
	long := strings.Repeat("é", 120) + ".txt"
	if got := ConflictName(long, mergeNow, "DEV"); ValidName(got) != nil || !IsConflictCopy(got) {
		t.Errorf("ConflictName of a long name = %q: %v", got, ValidName(got))
	}
}
