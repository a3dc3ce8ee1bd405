package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/gc"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/transport"
)

// ForgetOptions say which versions of the folder's root to keep.
type ForgetOptions struct {
	Options
	Policy gc.Policy
	DryRun bool
	// Location buckets times for the daily, weekly... rules (default
	// time.Local).
	Location *time.Location
	// Remote and Root name a root to forget in without a folder: a store
	// directory or quic://HOST:PORT/NAMESPACE (with Credentials).
	Remote, Root string
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
	if o.Remote != "" {
		return forgetAt(ctx, o)
	}
	s, err := open(ctx, dir, o.Options)
	if err != nil {
		return nil, err
	}
	defer s.close()
	head, err := s.head(ctx)
	if err != nil {
		return nil, fmt.Errorf("forget %s: %w", s.root(), err)
	}
	res, err := forgetRoot(ctx, s.remote, s.objects(), s.root(), head, o)
	if err != nil {
		return nil, fmt.Errorf("forget %s: %w", s.root(), err)
	}
	return res, nil
}

// forgetAt is Forget of a root named by its remote, with no folder.
func forgetAt(ctx context.Context, o ForgetOptions) (*ForgetResult, error) {
	o.applyDefaults()
	if err := cas.ValidName(o.Root); err != nil {
		return nil, fmt.Errorf("forget: --root %w", err)
	}
	r, err := OpenRemote(ctx, o.Remote, "", RemoteOptions{Credentials: o.Credentials, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	defer r.Close()
	head, err := r.Head(ctx, o.Root)
	if err != nil {
		return nil, fmt.Errorf("forget %s: %w", o.Root, err)
	}
	res, err := forgetRoot(ctx, r, r, o.Root, head, o)
	if err != nil {
		return nil, fmt.Errorf("forget %s: %w", o.Root, err)
	}
	return res, nil
}

// forgetRoot applies o's policy to root's history at r, reading versions
// through g.
func forgetRoot(ctx context.Context, r Remote, g cas.Getter, root string, head cas.Ref, o ForgetOptions) (*ForgetResult, error) {
	hist, err := r.History(ctx, root)
	if err != nil {
		return nil, err
	}
	tags, err := r.Tags(ctx, root)
	if err != nil {
		return nil, err
	}
	decisions, err := o.Policy.Apply(hist, tags, head, o.Location)
	if err != nil {
		return nil, err
	}
	res := &ForgetResult{Root: root, Keep: []ForgetEntry{}, Remove: []ForgetEntry{}, DryRun: o.DryRun}
	var drop []uint64
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
	if err := r.DropHistory(ctx, root, drop); err != nil {
		return nil, err
	}
	return res, nil
}

// ForgetNamespace applies a policy to every root of a namespace of an open
// store (a server's scheduled retention) and returns how many history
// entries it dropped.
func ForgetNamespace(ctx context.Context, ns *cas.Namespace, p gc.Policy, loc *time.Location) (int, error) {
	roots, err := ns.Roots(ctx)
	if err != nil {
		return 0, err
	}
	dropped := 0
	for _, root := range roots {
		head, err := ns.Head(ctx, root)
		if err != nil {
			return dropped, err
		}
		hist, err := ns.History(ctx, root)
		if err != nil {
			return dropped, err
		}
		tags, err := ns.Tags(ctx, root)
		if err != nil {
			return dropped, err
		}
		decisions, err := p.Apply(hist, tags, head, loc)
		if err != nil {
			return dropped, err
		}
		var drop []uint64
		for _, d := range decisions {
			if !d.Keep {
				drop = append(drop, d.Entry.Seq)
			}
		}
		if len(drop) == 0 {
			continue
		}
		if err := ns.DropHistory(ctx, root, drop); err != nil {
			return dropped, fmt.Errorf("forget %s/%s: %w", ns.Name(), root, err)
		}
		dropped += len(drop)
	}
	return dropped, nil
}

// AdminPolicy reads a namespace's retention policy on a server, setting it
// first when set is not nil, or clearing it. A server applies it before
// each scheduled collection.
func AdminPolicy(ctx context.Context, r ServerRef, namespace string, set *gc.Policy, clear bool) (*gc.Policy, error) {
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var raw []byte
	switch {
	case clear:
		raw = []byte("null")
	case set != nil:
		if raw, err = json.Marshal(set); err != nil {
			return nil, err
		}
	}
	got, err := c.AdminPolicy(ctx, namespace, raw)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", namespace, err)
	}
	if len(got) == 0 {
		return nil, nil
	}
	p, err := gc.ParsePolicy(got)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", namespace, err)
	}
	return &p, nil
}

// AdminPolicyPreview says what a retention policy (nil: the namespace's
// own) would forget now in each root of the namespace, and changes
// nothing: admin policy --dry-run.
func AdminPolicyPreview(ctx context.Context, r ServerRef, namespace string, p *gc.Policy, loc *time.Location) ([]*ForgetResult, *gc.Policy, error) {
	if p == nil {
		stored, err := AdminPolicy(ctx, r, namespace, nil, false)
		if err != nil {
			return nil, nil, err
		}
		if stored == nil {
			return nil, nil, cas.Errorf(cas.ErrNotFound, "policy %s: the namespace has no retention policy to preview; give --keep-* rules", namespace)
		}
		p = stored
	}
	c, err := dialAdminIn(ctx, r, namespace)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	roots, err := c.Roots(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("policy %s: %w", namespace, err)
	}
	out := []*ForgetResult{}
	for _, root := range roots {
		head, err := c.Head(ctx, root)
		if err != nil {
			return nil, nil, fmt.Errorf("policy %s/%s: %w", namespace, root, err)
		}
		res, err := forgetRoot(ctx, c, c, root, head, ForgetOptions{Policy: *p, DryRun: true, Location: loc})
		if err != nil {
			return nil, nil, fmt.Errorf("policy %s/%s: %w", namespace, root, err)
		}
		out = append(out, res)
	}
	return out, p, nil
}

// AdminNamespace reads a namespace's settings on a server, and first sets
// whether it is portable when portable is not nil (admin).
func AdminNamespace(ctx context.Context, r ServerRef, namespace string, portable *bool) (*transport.NamespaceSettings, error) {
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	settings := func(set []byte) (*transport.NamespaceSettings, error) {
		got, err := c.AdminNamespace(ctx, namespace, set)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", namespace, err)
		}
		var st transport.NamespaceSettings
		if err := json.Unmarshal(got, &st); err != nil {
			return nil, fmt.Errorf("namespace %s: %w", namespace, err)
		}
		return &st, nil
	}
	st, err := settings(nil)
	if err != nil || portable == nil {
		return st, err
	}
	st.Portable = *portable
	set, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return settings(set)
}
