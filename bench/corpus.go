package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// A Corpus is a generated folder and the edits a benchmark applies to it.
// Everything is seeded: the same bytes on every machine, no downloads.
type Corpus struct {
	Name string
	// Make writes the corpus into dir and returns its size in bytes.
	Make func(dir string) (int64, error)
	// Edit changes it the way users do (append, insert, rename, delete,
	// touch without change) and describes the change.
	Edit func(dir string) (string, error)
}

// SmallFiles is n small files in nested directories.
func SmallFiles(n int) Corpus {
	return Corpus{
		Name: fmt.Sprintf("%d small files", n),
		Make: func(dir string) (int64, error) {
			if err := writeSmallFiles(dir, n); err != nil {
				return 0, err
			}
			return dirBytes(dir)
		},
		Edit: editTree,
	}
}

// SourceTree is a source-like tree of text files of realistic sizes.
func SourceTree(files int) Corpus {
	return Corpus{
		Name: fmt.Sprintf("source tree of %d files", files),
		Make: func(dir string) (int64, error) { return writeSourceTree(dir, files, 5) },
		Edit: editTree,
	}
}

// LargeFile is one file of size bytes: random, or compressible text.
func LargeFile(size int64, compressible bool) Corpus {
	kind := "random"
	if compressible {
		kind = "compressible"
	}
	return Corpus{
		Name: fmt.Sprintf("one %s %s file", Human(size), kind),
		Make: func(dir string) (int64, error) {
			p := filepath.Join(dir, "large.bin")
			if !compressible {
				return size, writeRandom(p, 11, size)
			}
			return size, writeText(p, 12, size)
		},
		Edit: func(dir string) (string, error) {
			return "100 bytes inserted in the middle", insertMiddle(filepath.Join(dir, "large.bin"), 100)
		},
	}
}

// editTree appends to 1% of the files, deletes 10%, touches 10% without
// changing them, and renames one directory.
func editTree(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".ferry" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	r := rand.New(rand.NewPCG(21, 22))
	r.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	n := len(files)
	appendN, deleteN, touchN := max(n/100, 1), n/10, n/10
	now := time.Now().Add(-30 * time.Minute)
	for _, p := range files[:appendN] {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(f, "appended line\n")
		f.Close()
		os.Chtimes(p, now, now)
	}
	for _, p := range files[appendN : appendN+deleteN] {
		os.Remove(p)
	}
	for _, p := range files[appendN+deleteN : appendN+deleteN+touchN] {
		os.Chtimes(p, now, now)
	}
	// Rename the first top-level directory.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() && e.Name() != ".ferry" {
			if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, e.Name()+"-renamed")); err != nil {
				return "", err
			}
			break
		}
	}
	return fmt.Sprintf("%d appended, %d deleted, %d touched, a directory renamed", appendN, deleteN, touchN), nil
}

// writeText writes n bytes of seeded, compressible text.
func writeText(path string, seed uint64, n int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, seed))
	var b strings.Builder
	for b.Len() < 1<<20 {
		for range 8 {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d\n", r.IntN(100000))
	}
	block := []byte(b.String())
	for left := n; left > 0; {
		// Vary each block a little so it is not one block repeated.
		block[r.IntN(len(block))] = byte('a' + r.IntN(26))
		k := min(left, int64(len(block)))
		if _, err := f.Write(block[:k]); err != nil {
			f.Close()
			return err
		}
		left -= k
	}
	if err := f.Close(); err != nil {
		return err
	}
	old := time.Now().Add(-time.Hour)
	return os.Chtimes(path, old, old)
}

func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// copyTree copies a folder (regular files and directories), for peers
// that need their own copy of a corpus.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && d.Name() == ".ferry" {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		fi, _ := in.Stat()
		return os.Chtimes(target, fi.ModTime(), fi.ModTime())
	})
}
