package engine

import (
	"context"
	"fmt"
	"sync"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/transport"
)

// SyncPlan is what a sync would do, found without changing anything here
// or at the remote: the files each side would change, and the bytes that
// would cross to and from the remote.
type SyncPlan struct {
	Dir  string `json:"dir"`
	Base string `json:"base,omitempty"`
	Head string `json:"head,omitempty"`
	// Merge: both the folder and the head changed since the base; the
	// pull would merge them (conflict copies where both changed a file).
	Merge bool `json:"merge"`
	// Pull: the head's changes since the base, and what must be fetched
	// (chunks not found in the folder).
	PullChanges   []Change `json:"pull_changes"`
	ChunksToFetch int64    `json:"chunks_to_fetch"`
	BytesToFetch  int64    `json:"bytes_to_fetch"`
	// Push: the folder's changes since the base, and what the remote
	// lacks of them (chunks and objects, as encoded for the wire).
	PushChanges []Change `json:"push_changes"`
	BlobsToSend int64    `json:"blobs_to_send"`
	BytesToSend int64    `json:"bytes_to_send"`
	Warnings    []string `json:"warnings,omitempty"`
}

// PlanSync says what Sync would do (sync --dry-run). It reads the folder
// (the stat cache saves reading unchanged files) and asks the remote what
// it has, and writes nothing anywhere.
func PlanSync(ctx context.Context, dir string, o Options) (*SyncPlan, error) {
	s, err := open(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	p, err := s.plan(ctx)
	if err != nil {
		return nil, fmt.Errorf("sync --dry-run %s: %w", s.f.Dir, err)
	}
	return p, nil
}

func (s *session) plan(ctx context.Context) (*SyncPlan, error) {
	base, err := s.f.Base()
	if err != nil {
		return nil, err
	}
	head, err := s.head(ctx)
	if err != nil {
		return nil, err
	}
	p := &SyncPlan{Dir: s.f.Dir, PullChanges: []Change{}, PushChanges: []Change{}}
	if !base.IsZero() {
		p.Base = base.String()
	}
	if !head.IsZero() {
		p.Head = head.String()
	}
	dry := &dryDest{has: s.remote, local: s.local(), seen: map[cas.Ref]int{}}
	sc, err := s.scan(ctx, dry)
	if err != nil {
		return nil, err
	}
	sc.CacheUpdate.Discard()
	p.Warnings = sc.Warnings
	baseRoot, err := s.versionRoot(ctx, base)
	if err != nil {
		return nil, err
	}
	headRoot, err := s.versionRoot(ctx, head)
	if err != nil {
		return nil, err
	}
	changes := func(from, to cas.Ref) ([]Change, error) {
		out := []Change{}
		err := index.Diff(ctx, s.objects(), from, to, func(c index.Change) error {
			if c.New != nil && c.Old != nil && c.New.Kind == index.KindDir {
				return nil
			}
			out = append(out, toChange(c))
			return nil
		})
		return out, err
	}
	if !sameTree(sc.Root, baseRoot) {
		if p.PushChanges, err = changes(baseRoot, sc.Root); err != nil {
			return nil, err
		}
		if p.BlobsToSend, p.BytesToSend, err = dry.missing(ctx); err != nil {
			return nil, err
		}
	}
	if head != base && !sameTree(headRoot, sc.Root) {
		p.Merge = len(p.PushChanges) > 0
		if p.PullChanges, err = changes(baseRoot, headRoot); err != nil {
			return nil, err
		}
		if p.ChunksToFetch, p.BytesToFetch, err = s.toFetch(ctx, sc.Root, headRoot); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// toFetch counts the chunks of files in `to` that differ from `from` and
// that no file of `from` (the folder as scanned) holds: what a pull
// fetches. (A pull also reuses the partial file of an interrupted pull,
// which this does not count.)
func (s *session) toFetch(ctx context.Context, from, to cas.Ref) (int64, int64, error) {
	g := s.objects()
	local := cas.RefSet{}
	err := index.Walk(ctx, g, from, func(_ string, e index.Entry) error {
		if e.Kind != index.KindFile {
			return nil
		}
		list, _, err := index.Chunks(ctx, g, e.Ref)
		if err != nil {
			return err
		}
		for _, c := range list {
			local.Add(c.Ref)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	var n, bytes int64
	need := cas.RefSet{}
	err = index.Diff(ctx, g, from, to, func(c index.Change) error {
		if c.New == nil || c.New.Kind != index.KindFile || (c.Old != nil && c.Old.Kind == index.KindFile && c.Old.Ref == c.New.Ref) {
			return nil
		}
		list, _, err := index.Chunks(ctx, g, c.New.Ref)
		if err != nil {
			return err
		}
		for _, ch := range list {
			if !local.Has(ch.Ref) && !need.Has(ch.Ref) {
				need.Add(ch.Ref)
				n++
				bytes += int64(ch.Len)
			}
		}
		return nil
	})
	return n, bytes, err
}

// dryDest is a scan destination that stores nothing: it remembers what
// the scan would put, and missing asks the remote which of those it lacks.
type dryDest struct {
	has   cas.Haser
	local bool
	mu    sync.Mutex
	seen  map[cas.Ref]int // ref -> bytes it would take on the wire
}

func (d *dryDest) Has(ctx context.Context, refs []cas.Ref) ([]bool, error) {
	return d.has.Has(ctx, refs)
}

func (d *dryDest) Put(ctx context.Context, ref cas.Ref, data []byte) error {
	n := len(data)
	if !d.local {
		// What crosses the wire is the encoded form (zstd when it shrinks).
		if payload, flags := cas.Encode(nil, data); flags != 0 {
			n = len(payload)
		}
	}
	d.mu.Lock()
	d.seen[ref] = n
	d.mu.Unlock()
	return nil
}

func (d *dryDest) Flush(context.Context) error { return nil }

// missing asks the remote, in batches, which of the put refs it lacks.
func (d *dryDest) missing(ctx context.Context) (int64, int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	refs := make([]cas.Ref, 0, len(d.seen))
	for r := range d.seen {
		refs = append(refs, r)
	}
	var n, bytes int64
	for len(refs) > 0 {
		k := min(len(refs), transport.MaxRefs)
		has, err := d.has.Has(ctx, refs[:k])
		if err != nil {
			return 0, 0, err
		}
		for i, ok := range has {
			if !ok {
				n++
				bytes += int64(d.seen[refs[i]])
			}
		}
		refs = refs[k:]
	}
	return n, bytes, nil
}
