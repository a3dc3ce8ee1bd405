package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/scan"
)

// ModeSendOnly sends and never receives (Syncthing's send-only folder):
// a push over a head that moved overrides the remote's changes with the
// folder's state, after recording them in history; pull refuses.
const ModeSendOnly Mode = "send-only"

// ErrSendOnly: a pull into a send-only folder.
var ErrSendOnly = errors.New("the folder is send-only")

func (s *session) sendOnly() bool {
	m, _ := s.mode()
	return m == ModeSendOnly
}

// refuseReceive is the error of a pull into a send-only folder.
func (s *session) refuseReceive() error {
	return cas.Errorf(ErrSendOnly, "the folder is send-only: it does not take remote changes ('ferry push' or 'ferry override' makes the remote match it; 'ferry config set mode both' lets it receive)")
}

// maxOverrideRecords bounds the paths one version records as overridden
// (the decoder's limit on conflict records).
const maxOverrideRecords = 10000

// Override pushes the folder's state as the head, whatever the remote did
// since the folder's base: Syncthing's "override changes". The remote's
// head stays in history as the new version's first parent, and the paths
// whose remote change is undone are recorded in the version (kind
// "overridden"), so nothing is lost: 'ferry restore --version head~1 PATH'
// brings one back.
func Override(ctx context.Context, dir string, o PushOptions) (*PushResult, error) {
	start := time.Now()
	s, err := open(ctx, dir, o.Options)
	if err != nil {
		return nil, err
	}
	defer s.close()
	s.overriding = true
	res, err := s.pushRecovering(ctx, o.Message)
	if err != nil {
		return nil, fmt.Errorf("override %s: %w", s.f.Dir, err)
	}
	res.DurationMS = durationMS(start)
	res.Warnings = append(s.warnings, res.Warnings...)
	return res, nil
}

// overrides reports whether a push over a moved head overrides it rather
// than merge with it.
func (s *session) overrides() bool { return s.overriding || s.sendOnly() }

// pushOverride commits the scanned folder over head, retrying while other
// devices keep moving it.
func (s *session) pushOverride(ctx context.Context, sc *scan.Result, base, head cas.Ref, message string, res *PushResult) (*PushResult, error) {
	if err := s.commitCache(ctx, sc); err != nil {
		return nil, err
	}
	baseRoot, err := s.versionRoot(ctx, base)
	if err != nil {
		return nil, err
	}
	if message == "" {
		message = "override"
	}
	for attempt := 0; ; attempt++ {
		headRoot, err := s.versionRoot(ctx, head)
		if err != nil {
			return nil, err
		}
		// What the head holds and the folder does not is deleted by the
		// override: the guard counts it against the head.
		if err := s.pushGuard(ctx, head, headRoot, sc.Root); err != nil {
			return nil, err
		}
		lost, err := overridden(ctx, s.objects(), baseRoot, headRoot, sc.Root)
		if err != nil {
			return nil, err
		}
		v := &index.Version{Root: sc.Root, Parents: []cas.Ref{head}, Time: s.opts.Now().UTC(), Device: s.f.Config.Device, Message: message, Summary: sc.Summary}
		if !base.IsZero() && base != head {
			v.Parents = append(v.Parents, base)
		}
		for i, p := range lost {
			if i == maxOverrideRecords {
				v.Message += fmt.Sprintf(" (%d more paths overridden than recorded)", len(lost)-i)
				break
			}
			v.Conflicts = append(v.Conflicts, index.Conflict{Path: p, Kind: index.ConflictOverridden})
		}
		ref, err := s.putVersion(ctx, v)
		if err != nil {
			return nil, err
		}
		if err := s.remote.Flush(ctx); err != nil {
			return nil, err
		}
		err = s.remote.SwapHead(ctx, s.root(), head, ref)
		if errors.Is(err, cas.ErrStale) && attempt < maxMergeAttempts {
			if err := mergeBackoff(ctx, attempt); err != nil {
				return nil, err
			}
			if head, err = s.head(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := s.f.SetBase(ref); err != nil {
			return nil, fmt.Errorf("version %s is pushed, but recording it here failed: %w", ref.Short(), err)
		}
		res.Version, res.Parent, res.Overridden = ref.String(), head.String(), lost
		if res.FilesChanged, err = s.countChanges(ctx, headRoot, sc.Root); err != nil {
			return nil, err
		}
		return res, nil
	}
}

// overridden lists the paths the remote changed since the base (added,
// removed or modified between baseRoot and headRoot) whose change the
// folder's tree local undoes: what an override discards from the head.
func overridden(ctx context.Context, g cas.Getter, baseRoot, headRoot, local cas.Ref) ([]string, error) {
	remote := map[string]bool{}
	err := index.Diff(ctx, g, baseRoot, headRoot, func(c index.Change) error {
		if c.New != nil && c.Old != nil && c.New.Kind == index.KindDir {
			return nil
		}
		remote[c.Path] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := []string{}
	if len(remote) == 0 {
		return out, nil
	}
	err = index.Diff(ctx, g, headRoot, local, func(c index.Change) error {
		if remote[c.Path] {
			out = append(out, c.Path)
		}
		return nil
	})
	return out, err
}
