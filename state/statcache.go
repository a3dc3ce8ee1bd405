package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"

	"github.com/ferry-sync/ferry/cas"
)

// Stat is what the stat cache remembers of one regular file: enough of its
// lstat to tell it unchanged, and the ref of its content.
type Stat struct {
	Size  int64
	MTime int64 // ns
	CTime int64 // ns
	Inode uint64
	Mode  uint32
	Ref   cas.Ref // the file object
}

// Unchanged reports whether o, a fresh lstat, matches s.
func (s Stat) Unchanged(o Stat) bool {
	return s.Size == o.Size && s.MTime == o.MTime && s.CTime == o.CTime && s.Inode == o.Inode && s.Mode == o.Mode
}

const statVersion = 1

// statLen is the encoded size: version, 4 int64/uint64, mode, ref.
const statLen = 1 + 8*4 + 4 + 32

func (s Stat) append(b []byte) []byte {
	b = append(b, statVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.Size))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.MTime))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.CTime))
	b = binary.LittleEndian.AppendUint64(b, s.Inode)
	b = binary.LittleEndian.AppendUint32(b, s.Mode)
	return append(b, s.Ref[:]...)
}

func parseStat(b []byte) (Stat, error) {
	if len(b) != statLen || b[0] != statVersion {
		return Stat{}, fmt.Errorf("%w: stat cache entry", cas.ErrCorrupt)
	}
	b = b[1:]
	return Stat{
		Size:  int64(binary.LittleEndian.Uint64(b)),
		MTime: int64(binary.LittleEndian.Uint64(b[8:])),
		CTime: int64(binary.LittleEndian.Uint64(b[16:])),
		Inode: binary.LittleEndian.Uint64(b[24:]),
		Mode:  binary.LittleEndian.Uint32(b[32:]),
		Ref:   cas.Ref(b[36:68]),
	}, nil
}

// StatCache maps a folder's file paths to their last seen Stat. Keys are
// "s" DIR \x00 NAME, so one directory's entries are one range scan.
type StatCache struct {
	kv *cas.KV
}

func statKey(dir, name string) []byte {
	return append(append(append([]byte{'s'}, dir...), 0), name...)
}

// Named is one cached entry of a directory.
type Named struct {
	Name string
	Stat
}

// Dir returns the cached entries of one directory ("" is the root),
// sorted by name (byte order, as a sorted listing is); sizeHint is how
// many there likely are.
func (c *StatCache) Dir(dir string, sizeHint int) ([]Named, error) {
	p := statKey(dir, "")
	out := make([]Named, 0, sizeHint)
	err := c.kv.Scan(p, func(k, v []byte) error {
		s, err := parseStat(v)
		if err != nil {
			return err
		}
		out = append(out, Named{Name: string(k[len(p):]), Stat: s})
		return nil
	})
	return out, err
}

// Lookup returns the entry for a slash-separated path.
func (c *StatCache) Lookup(path string) (Stat, bool) {
	dir, name := "", path
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			dir, name = path[:i], path[i+1:]
			break
		}
	}
	v, err := c.kv.Get(statKey(dir, name))
	if err != nil {
		return Stat{}, false
	}
	s, err := parseStat(v)
	return s, err == nil
}

// TreeStat is what the stat cache remembers of one directory: a
// fingerprint of the entries its tree was built from, and the tree's ref.
// A scan that lists the same entries again reuses the ref instead of
// encoding, hashing and storing the same tree once more.
type TreeStat struct {
	Fingerprint [32]byte
	Ref         cas.Ref
}

const treeStatLen = 1 + 32 + 32

// Tree keys are "t" DIR: beside the "s" keys, so that a directory's
// own entries stay one range scan.
func treeKey(dir string) []byte { return append([]byte{'t'}, dir...) }

// Tree returns the cached tree of one directory ("" is the root).
func (c *StatCache) Tree(dir string) (TreeStat, bool) {
	v, err := c.kv.Get(treeKey(dir))
	if err != nil || len(v) != treeStatLen || v[0] != statVersion {
		return TreeStat{}, false
	}
	var t TreeStat
	copy(t.Fingerprint[:], v[1:33])
	copy(t.Ref[:], v[33:])
	return t, true
}

// Files calls fn for every cached regular file, with its slash-separated
// path, in key order.
func (c *StatCache) Files(fn func(path string, s Stat) error) error {
	return c.kv.Scan([]byte{'s'}, func(k, v []byte) error {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			return fmt.Errorf("%w: stat cache key", cas.ErrCorrupt)
		}
		s, err := parseStat(v)
		if err != nil {
			return err
		}
		if s.Mode&uint32(fs.ModeDir) != 0 {
			return nil // a directory's marker
		}
		dir, name := string(k[1:i]), string(k[i+1:])
		if dir == "" {
			return fn(name, s)
		}
		return fn(dir+"/"+name, s)
	})
}

// Trees calls fn for every cached directory tree.
func (c *StatCache) Trees(fn func(dir string, t TreeStat) error) error {
	return c.kv.Scan([]byte{'t'}, func(k, v []byte) error {
		if len(v) != treeStatLen || v[0] != statVersion {
			return nil
		}
		var t TreeStat
		copy(t.Fingerprint[:], v[1:33])
		copy(t.Ref[:], v[33:])
		return fn(string(k[1:]), t)
	})
}

// Update is a set of stat cache changes applied together.
type Update struct {
	b *cas.KVBatch
}

// Update starts a set of changes.
func (c *StatCache) Update() *Update { return &Update{b: c.kv.Batch()} }

// Put records path's stat.
func (u *Update) Put(dir, name string, s Stat) error {
	return u.b.Set(statKey(dir, name), s.append(nil))
}

// PutTree records the tree of directory dir.
func (u *Update) PutTree(dir string, t TreeStat) error {
	v := make([]byte, 0, treeStatLen)
	v = append(v, statVersion)
	v = append(v, t.Fingerprint[:]...)
	v = append(v, t.Ref[:]...)
	return u.b.Set(treeKey(dir), v)
}

// Delete forgets one entry.
func (u *Update) Delete(dir, name string) error { return u.b.Delete(statKey(dir, name)) }

// ForgetTree forgets the cached tree of directory dir alone: the next
// scan encodes and stores it again.
func (u *Update) ForgetTree(dir string) error { return u.b.Delete(treeKey(dir)) }

// DeleteTree forgets every entry in directory dir and below it, and
// their trees.
func (u *Update) DeleteTree(dir string) error {
	for _, p := range [][]byte{
		append(append([]byte{'s'}, dir...), 0),
		append(append([]byte{'s'}, dir...), '/'),
		append(treeKey(dir), '/'),
		nameKey(dir, ""),
		append(append([]byte{'n'}, dir...), '/'),
	} {
		if err := u.b.DeletePrefix(p); err != nil {
			return err
		}
	}
	return u.b.Delete(treeKey(dir))
}

// Size is the pending update's size, to commit in bounded pieces.
func (u *Update) Size() int { return u.b.Size() }

// Commit applies the changes. The cache is a hint, so it need not be
// synced: a lost update costs a re-read, never a wrong ref. A nil Update
// commits nothing.
func (u *Update) Commit() error {
	if u == nil || u.b == nil {
		return nil
	}
	err := u.b.Commit(false)
	u.b = nil
	return err
}

// Discard drops the changes; after Commit it does nothing.
func (u *Update) Discard() {
	if u != nil && u.b != nil {
		u.b.Close()
		u.b = nil
	}
}

// Clear forgets every entry: the next scan reads every file again. A push
// does this when the remote turns out to lack content the cache promised
// (a collection removed it since).
func (c *StatCache) Clear() error {
	b := c.kv.Batch()
	for _, p := range []byte{'s', 't'} { // mapped names stay: they describe the disk
		if err := b.DeletePrefix([]byte{p}); err != nil {
			b.Close()
			return err
		}
	}
	return b.Commit(true)
}
