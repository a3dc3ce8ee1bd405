package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// walk is one check's walk of the kept versions of a store's namespaces.
type walk struct {
	bad map[cas.Ref]*Damaged
	// clean holds trees and files found whole, for any version.
	clean      cas.RefSet
	readChunks bool // re-hash chunks by reading them
	res        *CheckResult
	// watch: blobs whose paths are recorded in watched even when sound.
	watch   cas.RefSet
	watched map[cas.Ref]map[string][]string
	// heads holds the "namespace/root@version" of every root's head.
	heads map[string]bool
}

// namespace walks every kept version of every root of a namespace.
// Subtrees found whole are not walked again for later versions; a damaged
// or missing blob is attributed to each version and path that needs it.
func (w *walk) namespace(ctx context.Context, ns *cas.Namespace) error {
	roots, err := ns.Roots(ctx)
	if err != nil {
		return err
	}
	recorded := cas.RefSet{}
	dmg, err := ns.Damaged(ctx, math.MaxInt)
	if err != nil {
		return err
	}
	for _, r := range dmg {
		recorded.Add(r)
	}
	for _, root := range roots {
		hist, err := ns.History(ctx, root)
		if err != nil {
			return err
		}
		if head, err := ns.Head(ctx, root); err == nil {
			w.heads[where(ns.Name(), root, head)] = true
		}
		tags, err := ns.Tags(ctx, root)
		if err != nil {
			return err
		}
		keep := make([]cas.Ref, 0, len(hist)+len(tags))
		for _, h := range hist {
			keep = append(keep, h.Ref)
		}
		for _, r := range tags {
			keep = append(keep, r)
		}
		done := cas.RefSet{}
		for _, r := range keep {
			if done.Has(r) {
				continue
			}
			done.Add(r)
			c := &checker{walk: w, ns: ns, seen: map[cas.Ref]bool{}, recorded: recorded, where: where(ns.Name(), root, r)}
			w.res.Versions++
			if err := c.version(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// where names a version in reports: namespace/root@ref.
func where(ns, root string, v cas.Ref) string { return fmt.Sprintf("%s/%s@%s", ns, root, v.Short()) }

// checker walks one version.
type checker struct {
	*walk
	ns *cas.Namespace
	// seen: walked for this version.
	seen     map[cas.Ref]bool
	damages  int
	recorded cas.RefSet // the namespace's blobs recorded damaged
	where    string
}

// maxWhere bounds the paths kept per blob, and the versions per path.
const maxWhere = 100

// attribute records that the version holds ref at path.
func attribute(m map[string][]string, path, version string) {
	vs, ok := m[path]
	if !ok && len(m) >= maxWhere {
		return
	}
	if len(vs) < maxWhere && (len(vs) == 0 || vs[len(vs)-1] != version) {
		m[path] = append(vs, version)
	}
}

// note records where a watched blob is needed.
func (c *checker) note(ref cas.Ref, path string) {
	if !c.watch.Has(ref) {
		return
	}
	if c.watched == nil {
		c.watched = map[cas.Ref]map[string][]string{}
	}
	if c.watched[ref] == nil {
		c.watched[ref] = map[string][]string{}
	}
	attribute(c.watched[ref], path, c.where)
}

// damage records that ref is broken for this version at path.
func (c *checker) damage(ref cas.Ref, path string, err error) {
	c.damages++
	d := c.bad[ref]
	if d == nil {
		d = &Damaged{Ref: ref.String(), Error: err.Error()}
		c.bad[ref] = d
	}
	if len(d.Versions) == 0 || d.Versions[len(d.Versions)-1] != c.where {
		d.Versions = append(d.Versions, c.where)
	}
	if path != "" && len(d.Paths) < maxWhere && !slices.Contains(d.Paths, path) {
		d.Paths = append(d.Paths, path)
	}
	if d.where == nil {
		d.where = map[string][]string{}
	}
	attribute(d.where, path, c.where)
}

func (c *checker) get(ctx context.Context, ref cas.Ref, path string) ([]byte, bool) {
	c.note(ref, path)
	if d := c.bad[ref]; d != nil {
		c.damage(ref, path, errors.New(d.Error))
		return nil, false
	}
	b, err := c.ns.Get(ctx, ref)
	if err != nil {
		c.damage(ref, path, err)
		return nil, false
	}
	c.res.Objects++
	return b, true
}

func (c *checker) version(ctx context.Context, ref cas.Ref) error {
	b, ok := c.get(ctx, ref, "")
	if !ok {
		return ctx.Err()
	}
	v, err := index.DecodeVersion(b)
	if err != nil {
		c.damage(ref, "", err)
		return nil
	}
	return c.tree(ctx, v.Root, "", 0)
}

func (c *checker) tree(ctx context.Context, ref cas.Ref, dir string, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.seen[ref] || c.clean.Has(ref) {
		return nil
	}
	c.seen[ref] = true
	before := c.damages
	defer func() {
		if c.damages == before {
			c.clean.Add(ref)
		}
	}()
	b, ok := c.get(ctx, ref, dir)
	if !ok {
		return nil
	}
	t, err := index.DecodeTree(b)
	if err != nil || depth >= index.MaxDepth {
		c.damage(ref, dir, fmt.Errorf("tree: %v", err))
		return nil
	}
	for _, e := range t.Entries {
		p := index.JoinPath(dir, e.Name)
		switch e.Kind {
		case index.KindDir:
			if err := c.tree(ctx, e.Ref, p, depth+1); err != nil {
				return err
			}
		case index.KindFile:
			c.file(ctx, e.Ref, p)
		}
	}
	return nil
}

// file checks a file object and that its chunks are present (their bytes
// were verified by the blob check when it read data).
func (c *checker) file(ctx context.Context, ref cas.Ref, p string) {
	if c.seen[ref] || c.clean.Has(ref) {
		return
	}
	c.seen[ref] = true
	c.note(ref, p)
	before := c.damages
	defer func() {
		if c.damages == before {
			c.clean.Add(ref)
		}
	}()
	chunks, _, err := index.Chunks(ctx, cas.Getter(c.ns), ref)
	if err != nil {
		c.damage(ref, p, err)
		return
	}
	refs := make([]cas.Ref, len(chunks))
	for i, ch := range chunks {
		refs[i] = ch.Ref
		c.note(ch.Ref, p)
	}
	// A length the file object gives a chunk that is not the stored
	// chunk's makes the file impossible to restore: damage of the file.
	wrongLen := func(i int, n int64) {
		c.damage(ref, p, fmt.Errorf("%w: the file object gives chunk %s %d bytes, the stored chunk has %d", index.ErrMalformed, refs[i].Short(), chunks[i].Len, n))
	}
	if c.readChunks {
		for i, r := range refs {
			if c.bad[r] != nil {
				c.damage(r, p, errors.New(c.bad[r].Error))
				continue
			}
			b, err := c.ns.Get(ctx, r)
			if err != nil {
				c.damage(r, p, fmt.Errorf("chunk %s: %w", r.Short(), err))
				continue
			}
			if len(b) != int(chunks[i].Len) {
				wrongLen(i, int64(len(b)))
			}
			c.res.BlobsRead++
			c.res.BytesRead += int64(len(b))
		}
		return
	}
	sizes, err := c.ns.Sizes(ctx, refs)
	if err != nil {
		c.damage(ref, p, err)
		return
	}
	for i, n := range sizes {
		switch {
		case c.bad[refs[i]] != nil:
			c.damage(refs[i], p, errors.New(c.bad[refs[i]].Error))
		case n < 0 && c.recorded.Has(refs[i]):
			c.damage(refs[i], p, fmt.Errorf("chunk %s: %w: recorded damaged", refs[i].Short(), cas.ErrCorrupt))
		case n < 0:
			c.damage(refs[i], p, fmt.Errorf("chunk %s: %w", refs[i].Short(), cas.ErrNotFound))
		case n != int64(chunks[i].Len):
			wrongLen(i, n)
		}
	}
}
