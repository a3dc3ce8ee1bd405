package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/gc"
	"github.com/ferry-sync/ferry/index"
)

// ForgetOptions say which versions of the folder's root to keep.
type ForgetOptions struct {
	Options
	Policy gc.Policy
	DryRun bool
	// Location buckets times for the daily, weekly... rules (default
	// time.Local).
	Location *time.Location
}

// ForgetEntry is one version and what the policy said of it.
type ForgetEntry struct {
	Seq     uint64    `json:"seq"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`
	Device  string    `json:"device,omitempty"`
	Files   int64     `json:"files"`
	Bytes   int64     `json:"bytes"`
	Reasons []string  `json:"reasons,omitempty"`
}

// ForgetResult lists the versions kept and removed, newest first.
type ForgetResult struct {
	Root   string        `json:"root"`
	Keep   []ForgetEntry `json:"keep"`
	Remove []ForgetEntry `json:"remove"`
	DryRun bool          `json:"dry_run"`
}

// Forget drops the versions the policy does not keep from the root's
// history (never the head, never a tagged version unless the policy says
// so). Their data stays until a gc finds nothing else needs it.
func Forget(ctx context.Context, dir string, o ForgetOptions) (*ForgetResult, error) {
	s, err := open(ctx, dir, o.Options)
	if err != nil {
		return nil, err
	}
	defer s.close()
	res, err := s.forget(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("forget %s: %w", s.root(), err)
	}
	return res, nil
}

func (s *session) forget(ctx context.Context, o ForgetOptions) (*ForgetResult, error) {
	head, err := s.head(ctx)
	if err != nil {
		return nil, err
	}
	hist, err := s.remote.History(ctx, s.root())
	if err != nil {
		return nil, err
	}
	tags, err := s.remote.Tags(ctx, s.root())
	if err != nil {
		return nil, err
	}
	decisions, err := o.Policy.Apply(hist, tags, head, o.Location)
	if err != nil {
		return nil, err
	}
	res := &ForgetResult{Root: s.root(), Keep: []ForgetEntry{}, Remove: []ForgetEntry{}, DryRun: o.DryRun}
	var drop []uint64
	g := s.objects()
	for _, d := range decisions {
		e := ForgetEntry{Seq: d.Entry.Seq, Version: d.Entry.Ref.String(), Time: d.Entry.Time, Reasons: d.Reasons}
		if v, err := index.LoadVersion(ctx, g, d.Entry.Ref); err == nil {
			e.Device, e.Files, e.Bytes = v.Device, v.Summary.Files, v.Summary.Bytes
		}
		if d.Keep {
			res.Keep = append(res.Keep, e)
			continue
		}
		res.Remove = append(res.Remove, e)
		drop = append(drop, d.Entry.Seq)
	}
	if o.DryRun || len(drop) == 0 {
		return res, nil
	}
	if err := s.remote.DropHistory(ctx, s.root(), drop); err != nil {
		return nil, err
	}
	return res, nil
}
