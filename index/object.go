package index

import (
	"fmt"
	"io/fs"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// Kind is what a tree entry is.
type Kind uint8

const (
	KindFile    Kind = 1
	KindDir     Kind = 2
	KindSymlink Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ChunkRef is one chunk of a file: its ref and length.
type ChunkRef struct {
	Ref cas.Ref
	Len uint32
}

// Part is one child file object of a large file.
type Part struct {
	Ref  cas.Ref
	Size int64
}

// File is a file's content: either its chunks in order, or (for a large
// file) the parts that list them.
type File struct {
	Size   int64
	Chunks []ChunkRef
	Parts  []Part
}

// Entry is one name in a tree.
type Entry struct {
	Name   string
	Kind   Kind
	Mode   fs.FileMode // permission bits only
	MTime  int64       // Unix nanoseconds
	Size   int64
	Ref    cas.Ref // file or tree; zero for a symlink
	Target string  // symlink target
}

// Tree is one directory: entries sorted by name.
type Tree struct {
	Entries []Entry
}

// Find returns the entry named name.
func (t *Tree) Find(name string) (Entry, bool) {
	lo, hi := 0, len(t.Entries)
	for lo < hi {
		m := (lo + hi) / 2
		switch n := t.Entries[m].Name; {
		case n == name:
			return t.Entries[m], true
		case n < name:
			lo = m + 1
		default:
			hi = m
		}
	}
	return Entry{}, false
}

// Summary counts what a version holds.
type Summary struct {
	Files, Dirs, Symlinks, Bytes int64
}

// Version is one state of a root.
type Version struct {
	Root    cas.Ref
	Parents []cas.Ref
	Time    time.Time
	Device  string
	Message string
	Summary Summary
	// Conflicts are the conflict copies a merge made in this version.
	Conflicts []Conflict
}
