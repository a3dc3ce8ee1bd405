package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

type atomicInt = atomic.Int64

// Change is one line of a status or diff listing.
type Change struct {
	Op   string `json:"op"` // added, removed, modified
	Path string `json:"path"`
	Kind string `json:"kind"`
	Size int64  `json:"size"`
}

func toChange(c index.Change) Change {
	e := c.New
	if e == nil {
		e = c.Old
	}
	return Change{Op: c.Op(), Path: c.Path, Kind: e.Kind.String(), Size: e.Size}
}

// StatusResult says where the folder stands.
type StatusResult struct {
	Dir    string `json:"dir"`
	Remote string `json:"remote"`
	Root   string `json:"root"`
	Device string `json:"device"`
	// Mode is the folder's direction: both or receive-only (then its
	// local changes are local only).
	Mode Mode   `json:"mode"`
	Base string `json:"base,omitempty"`
	Head string `json:"head,omitempty"`
	// InSync: the folder's content equals the head's (root hash compare).
	InSync bool `json:"in_sync"`
	// RemoteAhead: the head moved since the folder's base.
	RemoteAhead bool `json:"remote_ahead"`
	// Offline: the server did not answer; the changes are against the
	// base, and the head is unknown.
	Offline      bool     `json:"offline,omitempty"`
	LocalChanges []Change `json:"local_changes"`
	// Conflicts are the unresolved conflict copies in the folder.
	Conflicts []ConflictCopy `json:"conflicts"`
	// StoreDamaged counts the namespace's blobs the store found damaged;
	// Healable, the objects, files and directories of this folder that
	// hold them (the next push sends them again).
	StoreDamaged int      `json:"store_damaged,omitempty"`
	Healable     int      `json:"healable,omitempty"`
	Warnings     []string `json:"warnings,omitempty"`
}

// Status compares the folder with its base and the remote head. It reads
// only files the stat cache cannot vouch for, and sends nothing.
func Status(ctx context.Context, dir string, o Options) (*StatusResult, error) {
	s, err := openOffline(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	base, err := s.f.Base()
	if err != nil {
		return nil, err
	}
	head := base // offline: what the folder last knew
	if !s.offline() {
		switch head, err = s.head(ctx); {
		case errors.Is(err, ErrRootGone):
			s.warnings = append(s.warnings, err.Error())
		case err != nil:
			return nil, err
		}
	}
	sc, err := s.scan(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", s.f.Dir, err)
	}
	sc.CacheUpdate.Discard()
	mode, _ := s.mode()
	res := &StatusResult{Dir: s.f.Dir, Remote: s.f.Config.Remote, Root: s.root(), Device: s.f.Config.Device, Mode: mode, RemoteAhead: head != base, Offline: s.offline(), Warnings: append(s.warnings, sc.Warnings...), LocalChanges: []Change{}}
	if !base.IsZero() {
		res.Base = base.String()
	}
	if !head.IsZero() && !res.Offline {
		res.Head = head.String()
	}
	baseRoot, err := s.versionRoot(ctx, base)
	if err != nil {
		return nil, err
	}
	headRoot, err := s.versionRoot(ctx, head)
	if err != nil {
		return nil, err
	}
	res.InSync = sameTree(sc.Root, headRoot) && !res.Offline
	if res.Offline {
		// Nothing to ask the store.
	} else if p, err := s.planHeal(ctx); err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("could not ask the store about damage: %v", err))
	} else if p != nil {
		res.StoreDamaged, res.Healable = len(p.damaged), p.count()
	}
	// A damaged store may hold trees this folder needs to list conflicts
	// or changes: status says so and goes on (the push heals them).
	damaged := func(what string, err error) error {
		if errors.Is(err, cas.ErrCorrupt) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v", what, err))
			return nil
		}
		return err
	}
	if res.Conflicts, err = s.conflictsIn(ctx, sc.Root); err != nil {
		if err := damaged("conflicts not listed", err); err != nil {
			return nil, err
		}
		res.Conflicts = []ConflictCopy{}
	}
	err = index.Diff(ctx, s.objects(), baseRoot, sc.Root, func(c index.Change) error {
		if c.New != nil && c.Old != nil && c.New.Kind == index.KindDir {
			return nil // a directory whose contents changed: listed below it
		}
		res.LocalChanges = append(res.LocalChanges, toChange(c))
		return nil
	})
	return res, damaged("local changes not listed in full", err)
}

// resolve names a version of the folder's root. "base" is the version
// the folder last synced, known without the server.
func (s *session) resolve(ctx context.Context, name string) (cas.Ref, error) {
	if name == index.BaseName {
		base, err := s.f.Base()
		if err == nil && base.IsZero() {
			err = cas.Errorf(cas.ErrNotFound, "the folder has not synced yet")
		}
		if err != nil {
			return cas.Ref{}, fmt.Errorf("version %q: %w", name, err)
		}
		return base, nil
	}
	return index.Resolve(ctx, s.remote, s.objects(), s.root(), name)
}

// offlineVersion is the version a command that defaults to the head
// reads when the server did not answer: the base, said so.
func (s *session) offlineVersion(name string) string {
	if s.offline() && (name == "" || name == "head") {
		s.warn("reading the base, the version this folder last synced, in place of the head")
		return index.BaseName
	}
	return name
}
