package index

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

var update = flag.Bool("update", false, "rewrite golden files")

func store(t testing.TB) *cas.Namespace {
	t.Helper()
	db, err := cas.Open(t.TempDir(), cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	n, err := db.Namespace("test")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func putObj(t testing.TB, s cas.Putter, b []byte) cas.Ref {
	t.Helper()
	r := cas.Sum(b)
	if err := s.Put(context.Background(), r, b); err != nil {
		t.Fatal(err)
	}
	return r
}

func ref(s string) cas.Ref { return cas.Sum([]byte(s)) }

func sampleTree() *Tree {
	return &Tree{Entries: []Entry{
		{Name: "a file.txt", Kind: KindFile, Mode: 0o644, MTime: 1_700_000_000_123_456_789, Size: 11, Ref: ref("f")},
		{Name: "bin", Kind: KindDir, Mode: 0o755, MTime: 1_700_000_000_000_000_000, Size: 42, Ref: ref("d")},
		{Name: "link", Kind: KindSymlink, Mode: 0o777, MTime: 5, Size: 9, Target: "../target"},
		{Name: "ünïcødé", Kind: KindFile, Mode: 0o755, MTime: -1, Size: 0, Ref: ref("e")},
	}}
}

// TestGolden freezes format 1: the same objects must encode to the same
// bytes forever (or every ref in every store would change).
func TestGolden(t *testing.T) {
	objs := map[string][]byte{
		"file":       EncodeFile(&File{Size: 30, Chunks: []ChunkRef{{ref("c1"), 10}, {ref("c2"), 20}}}),
		"file-parts": EncodeFile(&File{Size: 30, Parts: []Part{{ref("p1"), 10}, {ref("p2"), 20}}}),
		"empty-file": EncodeFile(&File{}),
		"tree":       EncodeTree(sampleTree()),
		"empty-tree": EncodeTree(&Tree{}),
		"version": EncodeVersion(&Version{Root: ref("root"), Parents: []cas.Ref{ref("p")},
			Time: time.Unix(1_763_700_000, 5), Device: "ABCDEF7", Message: "push", Summary: Summary{3, 2, 1, 99}}),
	}
	for name, b := range objs {
		path := filepath.Join("testdata", name+".golden")
		text := hex.EncodeToString(b) + "\n"
		if *update {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if text != string(want) {
			t.Errorf("%s encodes to\n%s want\n%s", name, text, want)
		}
	}
	// And they decode back to what was encoded.
	if tr, err := DecodeTree(objs["tree"]); err != nil || len(tr.Entries) != 4 || tr.Entries[2].Target != "../target" || tr.Entries[0] != sampleTree().Entries[0] {
		t.Errorf("DecodeTree(golden) = %+v, %v", tr, err)
	}
	if v, err := DecodeVersion(objs["version"]); err != nil || v.Device != "ABCDEF7" || v.Summary.Bytes != 99 || v.Time.UnixNano() != 1_763_700_000_000_000_005 {
		t.Errorf("DecodeVersion(golden) = %+v, %v", v, err)
	}
	if f, err := DecodeFile(objs["file"]); err != nil || f.Size != 30 || len(f.Chunks) != 2 {
		t.Errorf("DecodeFile(golden) = %+v, %v", f, err)
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"a b.txt", true}, {"ünïcødé", true}, {".hidden", true}, {"...", true}, {strings.Repeat("x", 255), true},
		{"", false}, {".", false}, {"..", false}, {"../x", false}, {"a/b", false}, {"/etc/passwd", false},
		{`C:\x`, false}, {`\\server\share`, false}, {"a\x00b", false}, {"line\nbreak", false}, {"cr\r", false},
		{"del\x7f", false}, {"\xff\xfe", false}, {"e\u0301", false}, {strings.Repeat("x", 256), false},
		{".ferry", false}, {".ferry-tmp-123", false},
	}
	for _, tt := range tests {
		if err := ValidName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		} else if err != nil && !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ValidName(%q) error %v is not ErrInvalidPath", tt.name, err)
		}
	}
	for _, p := range []string{"a/../b", "a//b", "a/./b", "a/", "/a", ""} {
		if ValidPath(p) == nil {
			t.Errorf("ValidPath(%q) accepted", p)
		}
	}
	if err := ValidPath("a/b/c d"); err != nil {
		t.Errorf("ValidPath(a/b/c d) = %v", err)
	}
}

// TestDecodeTreeRefuses is catalogue rows A1, A4, A5, A10, A11 and B1: the
// decoder alone refuses every tree that names something it must not.
func TestDecodeTreeRefuses(t *testing.T) {
	good := func() []Entry { return append([]Entry(nil), sampleTree().Entries...) }
	tests := []struct {
		name string
		mod  func([]Entry) []Entry
	}{
		{"dotdot", func(e []Entry) []Entry { e[0].Name = ".."; return e }},
		{"dotdot slash", func(e []Entry) []Entry { e[0].Name = "../x"; return e }},
		{"slash", func(e []Entry) []Entry { e[0].Name = "a/b"; return e }},
		{"absolute", func(e []Entry) []Entry { e[0].Name = "/etc"; return e }},
		{"nul", func(e []Entry) []Entry { e[0].Name = "a\x00b"; return e }},
		{"empty", func(e []Entry) []Entry { e[0].Name = ""; return e }},
		{"dot", func(e []Entry) []Entry { e[0].Name = "."; return e }},
		{"duplicate", func(e []Entry) []Entry { e[1].Name = e[0].Name; return e }},
		{"unsorted", func(e []Entry) []Entry { e[0], e[1] = e[1], e[0]; return e }},
		{"symlink and dir of one name", func(e []Entry) []Entry {
			return append(e, Entry{Name: "link", Kind: KindDir, Mode: 0o755, Ref: ref("x")})
		}},
		{"reserved", func(e []Entry) []Entry { e[0].Name = ".ferry"; return e }},
		{"non-NFC", func(e []Entry) []Entry { e[3].Name = "e\u0301"; return e }},
		{"symlink with ref", func(e []Entry) []Entry { e[2].Ref = ref("x"); return e }},
		{"file without ref", func(e []Entry) []Entry { e[0].Ref = cas.Ref{}; return e }},
		{"symlink without target", func(e []Entry) []Entry { e[2].Target, e[2].Size = "", 0; return e }},
		{"bad kind", func(e []Entry) []Entry { e[0].Kind = 9; return e }},
	}
	for _, tt := range tests {
		b := EncodeTree(&Tree{Entries: tt.mod(good())})
		if _, err := DecodeTree(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeTree = %v, want ErrMalformed", tt.name, err)
		}
	}
}

func TestDecodeRefusesNonCanonical(t *testing.T) {
	tree := EncodeTree(sampleTree())
	// The same tree with a longer-than-needed length prefix is the same
	// CBOR value but not canonical: refused, so one tree has one ref.
	long := append([]byte{tree[0]}, tree[1:]...)
	long[0] = 0x98 // array with a one-byte length follows
	long = append(long[:1], append([]byte{0x03}, tree[1:]...)...)
	if _, err := DecodeTree(long); !errors.Is(err, ErrMalformed) {
		t.Errorf("non-canonical tree: %v", err)
	}
	if _, err := DecodeTree(append(tree, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
	if _, err := DecodeFile(tree); !errors.Is(err, ErrMalformed) {
		t.Errorf("a tree decoded as a file: %v", err)
	}
	bad := EncodeFile(&File{Size: 31, Chunks: []ChunkRef{{ref("c"), 30}}})
	if _, err := DecodeFile(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("file whose chunks do not add up: %v", err)
	}
}

func TestLargeFileParts(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	n := MaxChunksPerNode*2 + 7
	chunks := make([]ChunkRef, n)
	for i := range chunks {
		chunks[i] = ChunkRef{Ref: ref(fmt.Sprint(i)), Len: uint32(100 + i%50)}
	}
	top, parts := FileObjects(chunks)
	if len(parts) != 3 {
		t.Fatalf("%d chunks made %d parts, want 3", n, len(parts))
	}
	for _, p := range parts {
		putObj(t, s, p)
	}
	got, size, err := Chunks(ctx, s, putObj(t, s, top))
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for i, c := range chunks {
		want += int64(c.Len)
		if got[i] != c {
			t.Fatalf("chunk %d = %v, want %v", i, got[i], c)
		}
	}
	if len(got) != n || size != want {
		t.Fatalf("got %d chunks, %d bytes; want %d, %d", len(got), size, n, want)
	}
}

// mkTree stores a tree described as path -> content ("" ends in / for a
// dir, "->x" for a symlink) and returns its ref.
func mkTree(t *testing.T, s *cas.Namespace, files map[string]string) cas.Ref {
	t.Helper()
	type node struct{ entries []Entry }
	dirs := map[string]*node{"": {}}
	var ensure func(string)
	ensure = func(dir string) {
		if _, ok := dirs[dir]; ok {
			return
		}
		dirs[dir] = &node{}
		parent, _ := splitPath(dir)
		ensure(parent)
	}
	for p := range files {
		dir, _ := splitPath(strings.TrimSuffix(p, "/"))
		ensure(dir)
		if strings.HasSuffix(p, "/") {
			ensure(strings.TrimSuffix(p, "/"))
		}
	}
	var build func(dir string) cas.Ref
	build = func(dir string) cas.Ref {
		var entries []Entry
		for p, content := range files {
			d, name := splitPath(strings.TrimSuffix(p, "/"))
			if d != dir || strings.HasSuffix(p, "/") {
				continue
			}
			if target, ok := strings.CutPrefix(content, "->"); ok {
				entries = append(entries, Entry{Name: name, Kind: KindSymlink, Mode: 0o777, Size: int64(len(target)), Target: target})
				continue
			}
			top, _ := FileObjects([]ChunkRef{{Ref: putObj(t, s, []byte(content)), Len: uint32(len(content))}})
			if content == "" {
				top, _ = FileObjects(nil)
			}
			entries = append(entries, Entry{Name: name, Kind: KindFile, Mode: 0o644, Size: int64(len(content)), Ref: putObj(t, s, top)})
		}
		for d := range dirs {
			if d == "" {
				continue
			}
			if parent, name := splitPath(d); parent == dir {
				entries = append(entries, Entry{Name: name, Kind: KindDir, Mode: 0o755, Ref: build(d)})
			}
		}
		tr, err := NewTree(entries)
		if err != nil {
			t.Fatal(err)
		}
		return putObj(t, s, EncodeTree(tr))
	}
	return build("")
}

func splitPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func TestDiff(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	a := mkTree(t, s, map[string]string{"same": "1", "changed": "old", "gone": "x", "dir/keep": "k", "dir/sub/deep": "d", "kind": "file", "empty/": ""})
	b := mkTree(t, s, map[string]string{"same": "1", "changed": "new", "new": "n", "dir/keep": "k", "dir/sub/deep": "D", "kind/inside": "i", "empty/": ""})
	var got []string
	err := Diff(ctx, s, a, b, func(c Change) error {
		got = append(got, c.Op()+" "+c.Path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"modified changed",
		"modified dir/sub/deep",
		"modified dir/sub",
		"modified dir",
		"removed gone",
		"removed kind",
		"added kind",
		"added kind/inside",
		"added new",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Diff =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Removing a directory lists its contents first.
	got = nil
	Diff(ctx, s, a, cas.Ref{}, func(c Change) error { got = append(got, c.Op()+" "+c.Path); return nil })
	if i, j := indexOf(got, "removed dir/sub/deep"), indexOf(got, "removed dir"); i < 0 || j < i {
		t.Errorf("removal order: %v", got)
	}
	if err := Diff(ctx, s, a, a, func(Change) error { return errors.New("called") }); err != nil {
		t.Errorf("Diff of a tree with itself: %v", err)
	}
}

// TestDiffDescendsOnlyIntoChanges counts object reads: a one-file change
// deep in a wide tree reads only the trees on its path.
func TestDiffDescendsOnlyIntoChanges(t *testing.T) {
	s := store(t)
	files := map[string]string{}
	for i := range 50 {
		for j := range 20 {
			files[fmt.Sprintf("d%02d/f%02d", i, j)] = fmt.Sprint(i, j)
		}
	}
	a := mkTree(t, s, files)
	files["d07/f03"] = "changed"
	b := mkTree(t, s, files)
	cg := &countingGetter{g: s}
	n := 0
	if err := Diff(context.Background(), cg, a, b, func(Change) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 2 || cg.gets != 4 {
		t.Errorf("Diff made %d changes with %d reads; want 2 changes (file, dir) with 4 reads (2 roots, 2 d07)", n, cg.gets)
	}
}

type countingGetter struct {
	g    cas.Getter
	gets int
}

func (c *countingGetter) Get(ctx context.Context, r cas.Ref) ([]byte, error) {
	c.gets++
	return c.g.Get(ctx, r)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestResolve(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	root := mkTree(t, s, map[string]string{"a": "1"})
	var refs []cas.Ref
	var prev []cas.Ref
	for i := range 4 {
		v := putObj(t, s, EncodeVersion(&Version{Root: root, Parents: prev, Time: time.Unix(int64(1000+i), 0), Message: fmt.Sprint(i)}))
		old := cas.Ref{}
		if len(refs) > 0 {
			old = refs[len(refs)-1]
		}
		if err := s.SwapHead(ctx, "r", old, v); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, v)
		prev = []cas.Ref{v}
	}
	if err := s.SetTag(ctx, "r", "first", refs[0]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want cas.Ref
		err  error
	}{
		{"head", refs[3], nil},
		{"", refs[3], nil},
		{"head~0", refs[3], nil},
		{"head~2", refs[1], nil},
		{"head~4", cas.Ref{}, cas.ErrNotFound},
		{"first", refs[0], nil},
		{refs[2].String()[:8], refs[2], nil},
		{refs[2].String(), refs[2], nil},
		{"0000000000", cas.Ref{}, cas.ErrNotFound},
		{"nope", cas.Ref{}, cas.ErrNotFound},
		{"@2100-01-01", refs[3], nil},
		{"@1970-01-01", cas.Ref{}, cas.ErrNotFound},
	}
	for _, tt := range tests {
		got, err := Resolve(ctx, s, s, "r", tt.name)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Resolve(%q) = %v, want %v", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Resolve(%q) = %s, %v; want %s", tt.name, got.Short(), err, tt.want.Short())
		}
	}
}
