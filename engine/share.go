package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/restore"
	"github.com/ferry-sync/ferry/transport"
)

// ShareInfo describes a share (see transport.ShareInfo).
type ShareInfo = transport.ShareInfo

// ShareOptions say what to share and for how long.
type ShareOptions struct {
	Options
	Version string // default head
	TTL     time.Duration
}

// ShareResult is a new share: the link carries its read-only token, so it
// is shown only now.
type ShareResult struct {
	Link  string              `json:"link"`
	Share transport.ShareInfo `json:"share"`
}

// ErrNeedsServer: sharing works through a server.
var ErrNeedsServer = errors.New("sharing needs a folder synced with a server (quic://)")

// server is the session's remote as a server client, for what only a
// server does.
func (s *session) server() (*transport.Client, error) {
	c, ok := s.remote.(*transport.Client)
	if !ok {
		return nil, ErrNeedsServer
	}
	return c, nil
}

// Share makes a read-only link to PATH (a file or directory; "" the whole
// folder) as it is in a version, valid for TTL: `ferry get LINK` fetches
// it without a synced folder. The server keeps what the share names until
// it expires or is revoked.
func Share(ctx context.Context, dir, p string, o ShareOptions) (*ShareResult, error) {
	if o.TTL <= 0 {
		return nil, fmt.Errorf("share: give a positive --ttl")
	}
	s, err := open(ctx, dir, o.Options)
	if err != nil {
		return nil, err
	}
	defer s.close()
	c, err := s.server()
	if err != nil {
		return nil, err
	}
	if o.Version == "" {
		o.Version = "head"
	}
	vref, err := s.resolve(ctx, o.Version)
	if err != nil {
		return nil, err
	}
	v, err := index.LoadVersion(ctx, s.objects(), vref)
	if err != nil {
		return nil, err
	}
	info := transport.ShareInfo{Root: s.root(), Path: p, Version: vref.String(), Name: s.root()}
	ref, size := v.Root, v.Summary.Bytes
	if p != "" {
		if err := index.ValidPath(p); err != nil {
			return nil, err
		}
		e, err := index.Lookup(ctx, s.objects(), v.Root, p)
		if err != nil {
			return nil, fmt.Errorf("share %s: %w", p, err)
		}
		if e.Kind != index.KindFile && e.Kind != index.KindDir {
			return nil, fmt.Errorf("share %s: only files and directories can be shared", p)
		}
		ref, size, info.Name = e.Ref, e.Size, path.Base(p)
	}
	info.Ref, info.Size = ref[:], size
	token, created, err := c.CreateShare(ctx, info, o.TTL)
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", p, err)
	}
	addr, ns, err := transport.ParseURL(s.f.Config.Remote)
	if err != nil {
		return nil, err
	}
	link := transport.ShareLink{Addr: addr, Namespace: ns, Token: token, Fingerprint: s.f.Config.Fingerprint}
	return &ShareResult{Link: link.String(), Share: created}, nil
}

// Shares lists the folder's namespace's shares.
func Shares(ctx context.Context, dir string, o Options) ([]transport.ShareInfo, error) {
	s, err := open(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	c, err := s.server()
	if err != nil {
		return nil, err
	}
	return c.Shares(ctx)
}

// UpdateShare extends the share id to expire ttl from now, or revokes it
// (ttl 0): its link stops working at once.
func UpdateShare(ctx context.Context, dir, id string, ttl time.Duration, o Options) (*transport.ShareInfo, error) {
	s, err := open(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	c, err := s.server()
	if err != nil {
		return nil, err
	}
	info, err := c.UpdateShare(ctx, id, ttl)
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", id, err)
	}
	return &info, nil
}

// GetResult is what `ferry get` wrote.
type GetResult struct {
	Share        transport.ShareInfo `json:"share"`
	Target       string              `json:"target"`
	FilesWritten int64               `json:"files_written"`
	BytesWritten int64               `json:"bytes_written"`
	DurationMS   int64               `json:"duration_ms"`
	// DryRun: nothing was written; Plan is what would have been.
	DryRun bool      `json:"dry_run,omitempty"`
	Plan   []Planned `json:"plan,omitempty"`
}

// GetOptions say where a share goes.
type GetOptions struct {
	Options
	// To is the target (default: the share's name in the current
	// directory).
	To string
	// DryRun writes nothing: the result lists what would be written.
	DryRun bool
}

// Get downloads what a share link names: a file to `to` (default: the
// share's name in the current directory), a directory into `to` (default
// the same). Each file is written to a temporary name, synced and renamed:
// nothing partial ever has the final name, and nothing is written outside
// the target.
func Get(ctx context.Context, link string, gopts GetOptions) (*GetResult, error) {
	start := time.Now()
	o, to := gopts.Options, gopts.To
	o.applyDefaults()
	l, err := transport.ParseShareLink(link)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	if l.Fingerprint == "" {
		l.Fingerprint = o.Credentials.Fingerprint
	}
	c, err := transport.Dial(ctx, l.Addr, l.Namespace, transport.ClientOptions{Token: l.Token, Fingerprint: l.Fingerprint, Version: "ferry get", Logger: o.Logger,
		IdleTimeout: o.Credentials.IdleTimeout, LimitDownload: transport.NewLimiter(o.Credentials.LimitDownload)})
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	defer c.Close()
	info, err := c.ShareInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	ref, err := cas.ParseRef(fmt.Sprintf("%x", info.Ref))
	if err != nil {
		return nil, err
	}
	if err := index.ValidName(info.Name); err != nil {
		return nil, fmt.Errorf("get: the share's name: %w", err)
	}
	if to == "" {
		to = info.Name
	}
	abs, err := filepath.Abs(to)
	if err != nil {
		return nil, err
	}
	// One synthetic tree names the share under its target name, so that
	// restore writes it as it writes any folder: in the target's parent,
	// through a held directory, temp file, fsync, rename.
	parent, name := filepath.Dir(abs), filepath.Base(abs)
	if err := index.ValidName(name); err != nil {
		return nil, fmt.Errorf("get: target %s: %w", abs, err)
	}
	if fi, err := os.Lstat(abs); err == nil && !o.Force {
		if ents, _ := os.ReadDir(abs); !fi.IsDir() || len(ents) > 0 {
			return nil, cas.Errorf(ErrTargetNotEmpty, "get: %s exists; --force replaces what the share names there", abs)
		}
	}
	e := index.Entry{Name: name, Kind: index.KindFile, Mode: 0o644, MTime: time.Now().UnixNano(), Size: info.Size, Ref: ref}
	if info.Kind == "dir" {
		e.Kind, e.Mode = index.KindDir, 0o755
		if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
			return nil, fmt.Errorf("get: %s exists and is not a directory", abs)
		}
	}
	t, err := index.NewTree([]index.Entry{e})
	if err != nil {
		return nil, err
	}
	tb := index.EncodeTree(t)
	g := &overlayGetter{ref: cas.Sum(tb), b: tb, g: c}
	res := &GetResult{Share: info, Target: abs, DryRun: gopts.DryRun}
	ro := restore.Options{Chunks: c, Logger: o.Logger, Progress: downloadProgress(o.Progress)}
	if gopts.DryRun {
		ro.DryRun = func(p Planned) { res.Plan = append(res.Plan, p) }
	} else if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	rr, err := restore.Apply(ctx, parent, g, cas.Ref{}, g.ref, ro)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	res.FilesWritten, res.BytesWritten, res.DurationMS = rr.FilesWritten, rr.BytesWritten, durationMS(start)
	return res, nil
}

// overlayGetter serves one object from memory and the rest from g.
type overlayGetter struct {
	ref cas.Ref
	b   []byte
	g   cas.Getter
}

func (o *overlayGetter) Get(ctx context.Context, ref cas.Ref) ([]byte, error) {
	if ref == o.ref {
		return o.b, nil
	}
	return o.g.Get(ctx, ref)
}
