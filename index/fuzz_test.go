package index

import (
	"bytes"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"golang.org/x/text/unicode/norm"
)

// FuzzDecodeTree: never panics; whatever decodes re-encodes to the same
// bytes, and every name in it obeys the name rule.
func FuzzDecodeTree(f *testing.F) {
	f.Add(EncodeTree(sampleTree()))
	f.Add(EncodeTree(&Tree{}))
	f.Add(EncodeTree(&Tree{Entries: []Entry{{Name: "..", Kind: KindFile, Ref: ref("x")}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := DecodeTree(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeTree(tr), b) {
			t.Fatalf("decoded tree re-encodes differently")
		}
		for i, e := range tr.Entries {
			if ValidName(e.Name) != nil || (i > 0 && tr.Entries[i-1].Name >= e.Name) {
				t.Fatalf("decoder accepted entry %q", e.Name)
			}
		}
	})
}

func FuzzDecodeFile(f *testing.F) {
	f.Add(EncodeFile(&File{Size: 30, Chunks: []ChunkRef{{ref("c1"), 10}, {ref("c2"), 20}}}))
	f.Add(EncodeFile(&File{Size: 30, Parts: []Part{{ref("p1"), 10}, {ref("p2"), 20}}}))
	f.Add(EncodeFile(&File{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := DecodeFile(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeFile(fl), b) {
			t.Fatalf("decoded file re-encodes differently")
		}
		var sum int64
		for _, c := range fl.Chunks {
			sum += int64(c.Len)
		}
		for _, p := range fl.Parts {
			sum += p.Size
		}
		if sum != fl.Size || fl.Size < 0 {
			t.Fatalf("file of size %d lists %d bytes", fl.Size, sum)
		}
	})
}

func FuzzDecodeVersion(f *testing.F) {
	f.Add(EncodeVersion(&Version{Root: ref("r"), Parents: []cas.Ref{ref("p")}, Time: time.Unix(5, 6), Device: "D", Message: "m"}))
	f.Add(EncodeVersion(&Version{Root: ref("r")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeVersion(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeVersion(v), b) {
			t.Fatalf("decoded version re-encodes differently")
		}
	})
}

// FuzzValidName is differential: an accepted name is local, clean, one
// component, NFC, and never aliases another spelling.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", "..", "../x", "a/b", "e\u0301", "é", ".ferry", "a\x00", `a\b`, "C:x", " ", "CON"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName(name) != nil {
			return
		}
		if !filepath.IsLocal(name) || path.Clean(name) != name || strings.ContainsAny(name, "/\\\x00") {
			t.Fatalf("accepted %q, which is not one clean local component", name)
		}
		if norm.NFC.String(name) != name {
			t.Fatalf("accepted non-NFC %q", name)
		}
		if name == "." || name == ".." || strings.HasPrefix(name, TempPrefix) {
			t.Fatalf("accepted %q", name)
		}
	})
}

// FuzzTypeOf: never panics, and whatever type it names is the decoder
// that accepts the bytes, if any does: no object decodes as two types.
func FuzzTypeOf(f *testing.F) {
	f.Add(EncodeTree(sampleTree()))
	f.Add(EncodeFile(&File{Size: 1, Chunks: []ChunkRef{{ref("c"), 1}}}))
	f.Add(EncodeVersion(&Version{Root: ref("r"), Time: time.Unix(1, 0)}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, err := TypeOf(b)
		_, terr := DecodeTree(b)
		_, ferr := DecodeFile(b)
		_, verr := DecodeVersion(b)
		ok := map[int]bool{TypeTree: terr == nil, TypeFile: ferr == nil, TypeVersion: verr == nil}
		for other, decodes := range ok {
			if decodes && (err != nil || other != typ) {
				t.Fatalf("bytes decode as %v but TypeOf says %v, %v", other, typ, err)
			}
		}
	})
}
