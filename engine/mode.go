package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/restore"
	"github.com/ferry-sync/ferry/transport"
)

// Mode is a folder's direction, Syncthing's folder types.
type Mode string

const (
	// ModeBoth sends local changes and receives remote ones.
	ModeBoth Mode = "both"
	// ModeReceiveOnly receives and never sends: local changes stay
	// local ("local only" in status) until 'ferry revert' drops them. A
	// folder whose token is read-only is receive-only whatever its
	// config says.
	ModeReceiveOnly Mode = "receive-only"
)

// ErrReceiveOnly: a push from a receive-only folder.
var ErrReceiveOnly = errors.New("the folder is receive-only")

// ParseMode checks a --mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "", ModeBoth:
		return ModeBoth, nil
	case ModeReceiveOnly, ModeSendOnly:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want both, send-only or receive-only", s)
}

// mode is the folder's effective mode, and why.
func (s *session) mode() (Mode, string) {
	if c, ok := s.remote.(*transport.Client); ok && c.Perm() == transport.PermRead {
		return ModeReceiveOnly, " (its token is read-only)"
	}
	switch m := Mode(s.f.Config.Mode); m {
	case ModeReceiveOnly, ModeSendOnly:
		return m, ""
	}
	return ModeBoth, ""
}

func (s *session) receiveOnly() bool {
	m, _ := s.mode()
	return m == ModeReceiveOnly
}

// refuseSend is the error of a push from a receive-only folder.
func (s *session) refuseSend() error {
	_, why := s.mode()
	return cas.Errorf(ErrReceiveOnly, "the folder is receive-only%s: its changes stay here and are not sent ('ferry status' lists them as local only; 'ferry revert' drops them)", why)
}

// keepLocalSkip is a receive-only pull's restore.Skip: a path the folder
// added itself keeps what is on disk (changed and removed paths are kept
// by VerifyLocal).
func (s *session) keepLocalSkip(keep bool) func(string, *index.Entry) bool {
	if !keep {
		return nil
	}
	return func(p string, _ *index.Entry) bool {
		_, err := os.Lstat(filepath.Join(s.f.Dir, filepath.FromSlash(p)))
		return err == nil
	}
}

// RevertResult is what a revert did.
type RevertResult struct {
	Version      string `json:"version"`
	FilesWritten int64  `json:"files_written"`
	Removed      int64  `json:"removed"`
	DurationMS   int64  `json:"duration_ms"`
}

// Revert drops the folder's local changes: it becomes its base version
// again (Syncthing's "revert local changes" of a receive-only folder).
// What it drops is not saved anywhere: the caller asks first.
func Revert(ctx context.Context, dir string, o Options) (*RevertResult, error) {
	start := time.Now()
	s, err := open(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	base, err := s.f.Base()
	if err != nil {
		return nil, err
	}
	if base.IsZero() {
		return nil, cas.Errorf(ErrNoHead, "revert: the folder has no version to go back to (pull first)")
	}
	baseRoot, err := s.versionRoot(ctx, base)
	if err != nil {
		return nil, err
	}
	sc, err := s.scan(ctx, nil)
	if err != nil {
		return nil, err
	}
	sc.CacheUpdate.Discard()
	res := &RevertResult{Version: base.String()}
	if sameTree(sc.Root, baseRoot) {
		res.DurationMS = durationMS(start)
		return res, nil
	}
	rr, err := restore.Apply(ctx, s.f.Dir, s.objects(), sc.Root, baseRoot, s.folderRestore(restore.Options{
		Chunks: s.remote, Cache: s.f.StatCache(), Workers: s.restoreWorkers(), Logger: s.opts.Logger,
	}))
	if err != nil {
		return nil, fmt.Errorf("revert: %w", err)
	}
	res.FilesWritten, res.Removed, res.DurationMS = rr.FilesWritten, rr.Removed, durationMS(start)
	return res, nil
}
