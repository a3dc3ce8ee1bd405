package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// CheckOptions choose what check reads.
type CheckOptions struct {
	Options
	ReadData         bool
	SubsetN, SubsetM int
}

// Damaged is one damaged or missing blob and what it breaks.
type Damaged struct {
	Ref      string   `json:"ref"`
	Error    string   `json:"error"`
	Versions []string `json:"versions,omitempty"` // namespace/root@version
	Paths    []string `json:"paths,omitempty"`
}

// CheckResult is check's report. OK is false when anything is damaged.
type CheckResult struct {
	Store      string    `json:"store"`
	Blobs      int       `json:"blobs"`
	BlobsRead  int       `json:"blobs_read"`
	BytesRead  int64     `json:"bytes_read"`
	Versions   int       `json:"versions"`
	Objects    int       `json:"objects_checked"`
	Damaged    []Damaged `json:"damaged"`
	OK         bool      `json:"ok"`
	DurationMS int64     `json:"duration_ms"`
}

// ErrDamaged is returned (with the result) when check finds damage.
var ErrDamaged = errors.New("the store is damaged")

// Check verifies a store directory: every blob record (and with ReadData
// every blob's bytes), and that every version in every root's history
// resolves completely: its trees, file lists and chunks are all present
// and decode. Damage is reported with the versions and paths it affects.
func Check(ctx context.Context, storeDir string, o CheckOptions) (*CheckResult, error) {
	start := time.Now()
	if !IsLocal(storeDir) {
		return nil, fmt.Errorf("check %s: only store directories are supported by this build", storeDir)
	}
	if o.SubsetM < 0 || (o.SubsetM > 0 && (o.SubsetN < 1 || o.SubsetN > o.SubsetM)) {
		return nil, fmt.Errorf("check: subset %d/%d: want N/M with 1 <= N <= M", o.SubsetN, o.SubsetM)
	}
	abs, err := filepath.Abs(storeDir)
	if err != nil {
		return nil, err
	}
	db, err := cas.Open(abs, cas.Options{})
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", abs, err)
	}
	defer db.Close()
	res := &CheckResult{Store: abs, Damaged: []Damaged{}}
	bad := map[cas.Ref]*Damaged{}
	st, err := db.Check(ctx, cas.CheckOptions{ReadData: o.ReadData, SubsetN: o.SubsetN, SubsetM: o.SubsetM}, func(d cas.Damage) {
		bad[d.Ref] = &Damaged{Ref: d.Ref.String(), Error: d.Err}
	})
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", abs, err)
	}
	res.Blobs, res.BlobsRead, res.BytesRead = st.Blobs, st.BlobsRead, st.BytesRead
	if err := checkVersions(ctx, db, bad, res); err != nil {
		return nil, fmt.Errorf("check %s: %w", abs, err)
	}
	for _, d := range bad {
		res.Damaged = append(res.Damaged, *d)
	}
	res.OK = len(res.Damaged) == 0
	res.DurationMS = durationMS(start)
	if !res.OK {
		return res, ErrDamaged
	}
	return res, nil
}

// checkVersions walks every history entry of every root of every
// namespace. Objects shared by versions are checked once; a damaged or
// missing blob is attributed to each version and path that needs it.
func checkVersions(ctx context.Context, db *cas.DB, bad map[cas.Ref]*Damaged, res *CheckResult) error {
	spaces, err := db.Namespaces(ctx)
	if err != nil {
		return err
	}
	for _, name := range spaces {
		ns, err := db.Namespace(name)
		if err != nil {
			return err
		}
		roots, err := ns.Roots(ctx)
		if err != nil {
			return err
		}
		for _, root := range roots {
			hist, err := ns.History(ctx, root)
			if err != nil {
				return err
			}
			for _, h := range hist {
				c := &checker{ns: ns, bad: bad, seen: map[cas.Ref]bool{}, where: fmt.Sprintf("%s/%s@%s", name, root, h.Ref.Short()), res: res}
				res.Versions++
				if err := c.version(ctx, h.Ref); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

type checker struct {
	ns    *cas.Namespace
	bad   map[cas.Ref]*Damaged
	seen  map[cas.Ref]bool
	where string
	res   *CheckResult
}

// damage records that ref is broken for this version at path.
func (c *checker) damage(ref cas.Ref, path string, err error) {
	d := c.bad[ref]
	if d == nil {
		d = &Damaged{Ref: ref.String(), Error: err.Error()}
		c.bad[ref] = d
	}
	if len(d.Versions) == 0 || d.Versions[len(d.Versions)-1] != c.where {
		d.Versions = append(d.Versions, c.where)
	}
	if path != "" && len(d.Paths) < 100 {
		d.Paths = append(d.Paths, path)
	}
}

func (c *checker) get(ctx context.Context, ref cas.Ref, path string) ([]byte, bool) {
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
	if c.seen[ref] {
		return nil
	}
	c.seen[ref] = true
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
	if c.seen[ref] {
		return
	}
	c.seen[ref] = true
	chunks, _, err := index.Chunks(ctx, cas.Getter(c.ns), ref)
	if err != nil {
		c.damage(ref, p, err)
		return
	}
	refs := make([]cas.Ref, len(chunks))
	for i, ch := range chunks {
		refs[i] = ch.Ref
	}
	has, err := c.ns.Has(ctx, refs)
	if err != nil {
		c.damage(ref, p, err)
		return
	}
	for i, ok := range has {
		switch {
		case !ok:
			c.damage(refs[i], p, fmt.Errorf("chunk %s: %w", refs[i].Short(), cas.ErrNotFound))
		case c.bad[refs[i]] != nil:
			c.damage(refs[i], p, errors.New(c.bad[refs[i]].Error))
		}
	}
}
