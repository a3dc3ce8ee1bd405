package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/transport"
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

// Check verifies a store: a store directory (opened here; it must not be
// open elsewhere), or a server (quic://HOST:PORT[/NAMESPACE]) that checks
// itself while it serves: with a server admin token the whole store, with
// a namespace's token that namespace.
func Check(ctx context.Context, store string, o CheckOptions) (*CheckResult, error) {
	if o.SubsetM < 0 || (o.SubsetM > 0 && (o.SubsetN < 1 || o.SubsetN > o.SubsetM)) {
		return nil, fmt.Errorf("check: subset %d/%d: want N/M with 1 <= N <= M", o.SubsetN, o.SubsetM)
	}
	if !IsLocal(store) {
		return checkServer(ctx, store, o)
	}
	abs, err := filepath.Abs(store)
	if err != nil {
		return nil, err
	}
	db, err := cas.Open(abs, cas.Options{})
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", abs, err)
	}
	defer db.Close()
	res, err := CheckDB(ctx, db, "", o)
	if res != nil {
		res.Store = abs
	}
	return res, err
}

func checkServer(ctx context.Context, url string, o CheckOptions) (*CheckResult, error) {
	c, err := dialAdmin(ctx, ServerRef{URL: url, Credentials: o.Credentials})
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", url, err)
	}
	defer c.Close()
	rep, err := c.CheckStore(ctx, transport.MaintenanceRequest{ReadData: o.ReadData, SubsetN: o.SubsetN, SubsetM: o.SubsetM})
	if len(rep) == 0 {
		if err == nil {
			err = errors.New("the server sent no report")
		}
		return nil, fmt.Errorf("check %s: %w", url, err)
	}
	var res CheckResult
	if jerr := json.Unmarshal(rep, &res); jerr != nil {
		return nil, fmt.Errorf("check %s: report: %w", url, jerr)
	}
	res.Store = url
	if !res.OK {
		return &res, ErrDamaged
	}
	return &res, nil
}

// CheckDB verifies an open store, while others may write to it: every
// blob record (and with ReadData every blob's bytes), and that every kept
// version (history and tags) resolves completely: its trees, file lists
// and chunks are all present and decode. Damage is reported with the
// versions and paths it affects. With namespace set, only that
// namespace's versions are walked, and ReadData re-hashes the chunks they
// reach instead of the whole store.
func CheckDB(ctx context.Context, db *cas.DB, namespace string, o CheckOptions) (*CheckResult, error) {
	start := time.Now()
	res := &CheckResult{Store: db.Dir(), Damaged: []Damaged{}}
	bad := map[cas.Ref]*Damaged{}
	spaces := []string{namespace}
	if namespace == "" {
		st, err := db.Check(ctx, cas.CheckOptions{ReadData: o.ReadData, SubsetN: o.SubsetN, SubsetM: o.SubsetM}, func(d cas.Damage) {
			bad[d.Ref] = &Damaged{Ref: d.Ref.String(), Error: d.Err}
		})
		if err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
		res.Blobs, res.BlobsRead, res.BytesRead = st.Blobs, st.BlobsRead, st.BytesRead
		if spaces, err = db.Namespaces(ctx); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
	}
	clean := cas.RefSet{}
	for _, name := range spaces {
		ns, err := db.Namespace(name)
		if err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
		if err := checkVersions(ctx, ns, bad, clean, namespace != "" && o.ReadData, res); err != nil {
			return nil, fmt.Errorf("check %s: %w", name, err)
		}
	}
	for _, d := range bad {
		res.Damaged = append(res.Damaged, *d)
	}
	slices.SortFunc(res.Damaged, func(a, b Damaged) int { return strings.Compare(a.Ref, b.Ref) })
	res.OK = len(res.Damaged) == 0
	res.DurationMS = durationMS(start)
	if !res.OK {
		return res, ErrDamaged
	}
	return res, nil
}

// checkVersions walks every kept version of every root of a namespace.
// Subtrees found whole are not walked again for later versions; a damaged
// or missing blob is attributed to each version and path that needs it.
func checkVersions(ctx context.Context, ns *cas.Namespace, bad map[cas.Ref]*Damaged, clean cas.RefSet, readChunks bool, res *CheckResult) error {
	roots, err := ns.Roots(ctx)
	if err != nil {
		return err
	}
	for _, root := range roots {
		hist, err := ns.History(ctx, root)
		if err != nil {
			return err
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
			c := &checker{ns: ns, bad: bad, seen: map[cas.Ref]bool{}, clean: clean, readChunks: readChunks,
				where: fmt.Sprintf("%s/%s@%s", ns.Name(), root, r.Short()), res: res}
			res.Versions++
			if err := c.version(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

type checker struct {
	ns  *cas.Namespace
	bad map[cas.Ref]*Damaged
	// seen: walked for this version; clean: trees whole, for any version.
	seen       map[cas.Ref]bool
	clean      cas.RefSet
	damages    int
	readChunks bool // re-hash chunks by reading them
	where      string
	res        *CheckResult
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
	}
	if c.readChunks {
		for _, r := range refs {
			if c.bad[r] != nil {
				c.damage(r, p, errors.New(c.bad[r].Error))
				continue
			}
			b, err := c.ns.Get(ctx, r)
			if err != nil {
				c.damage(r, p, fmt.Errorf("chunk %s: %w", r.Short(), err))
				continue
			}
			c.res.BlobsRead++
			c.res.BytesRead += int64(len(b))
		}
		return
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
