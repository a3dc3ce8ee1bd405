package engine

import (
	"context"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// StatsResult is what a namespace holds, as its own token sees it.
type StatsResult struct {
	Namespace string `json:"namespace"`
	Root      string `json:"root"`
	// StoredBytes is what the namespace holds in the store, charged
	// against its quota (0: none).
	StoredBytes int64 `json:"stored_bytes"`
	Quota       int64 `json:"quota,omitempty"`
	Roots       int   `json:"roots"`
	// Versions counts the versions every root's history keeps;
	// RootVersions, this folder's root's.
	Versions     int `json:"versions"`
	RootVersions int `json:"root_versions"`
	// HeadFiles and HeadBytes describe this root's head.
	HeadFiles int64 `json:"head_files"`
	HeadBytes int64 `json:"head_bytes"`
	// LogicalBytes adds up the files of every kept version of every root:
	// what restoring them all would write. DedupRatio is that over
	// StoredBytes.
	LogicalBytes int64    `json:"logical_bytes"`
	DedupRatio   float64  `json:"dedup_ratio"`
	Warnings     []string `json:"warnings,omitempty"`
}

// Stats reports the folder's namespace: usage and quota, roots, versions,
// and how much deduplication saves. It needs no admin token.
func Stats(ctx context.Context, dir string, o Options) (*StatsResult, error) {
	s, err := open(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	ns := s.f.Config.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	res := &StatsResult{Namespace: ns, Root: s.root(), Warnings: s.warnings}
	if u, ok := s.remote.(interface {
		Usage(context.Context) (int64, int64, error)
	}); ok {
		if res.StoredBytes, res.Quota, err = u.Usage(ctx); err != nil {
			return nil, fmt.Errorf("stats: usage: %w", err)
		}
	}
	roots, err := s.remote.Roots(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats: roots: %w", err)
	}
	res.Roots = len(roots)
	g := s.objects()
	seen := map[cas.Ref]bool{}
	for _, root := range roots {
		hist, err := s.remote.History(ctx, root)
		if err != nil {
			return nil, fmt.Errorf("stats: history of %s: %w", root, err)
		}
		for _, h := range hist {
			res.Versions++
			if root == s.root() {
				res.RootVersions++
			}
			if seen[h.Ref] {
				continue
			}
			seen[h.Ref] = true
			v, err := index.LoadVersion(ctx, g, h.Ref)
			if err != nil {
				// Forgotten and collected, or damaged: counted, not added.
				continue
			}
			res.LogicalBytes += v.Summary.Bytes
		}
	}
	if head, err := s.head(ctx); err == nil && !head.IsZero() {
		if v, err := index.LoadVersion(ctx, g, head); err == nil {
			res.HeadFiles, res.HeadBytes = v.Summary.Files, v.Summary.Bytes
		}
	}
	if res.StoredBytes > 0 {
		res.DedupRatio = float64(res.LogicalBytes) / float64(res.StoredBytes)
	}
	return res, nil
}
