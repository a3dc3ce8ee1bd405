package engine

import (
	"context"
	"errors"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/internal/watch"
	"github.com/ferry-sync/ferry/state"
	"github.com/ferry-sync/ferry/transport"
)

// WatchOptions tune Watch. The zero value works.
type WatchOptions struct {
	Options
	// Settle and Debounce batch local changes (default 50ms and 200ms:
	// see package watch).
	Settle, Debounce time.Duration
	// Rescan is the period of a full sync round that catches anything
	// the watcher missed (default 10m).
	Rescan time.Duration
	// Poll is how often a local store's head is checked (default 1s;
	// a server notifies instead).
	Poll time.Duration
	// Report receives one event per round, and errors.
	Report func(WatchEvent)
}

// WatchEvent is one line of watch output.
type WatchEvent struct {
	MessageType string     `json:"message_type"` // "summary" (of a round) or "error"
	Time        time.Time  `json:"time"`
	Reason      string     `json:"reason"` // start, local, remote, rescan, reconnect, poll
	Pulled      int64      `json:"files_pulled"`
	Pushed      int64      `json:"files_pushed"`
	BytesSent   int64      `json:"bytes_sent"`
	BytesIn     int64      `json:"bytes_fetched"`
	DurationMS  int64      `json:"duration_ms"`
	Version     string     `json:"version,omitempty"`
	Conflicts   []Conflict `json:"conflicts,omitempty"`
	Error       string     `json:"error,omitempty"`
	Warnings    []string   `json:"warnings,omitempty"`
}

func (o *WatchOptions) applyDefaults() {
	o.Options.applyDefaults()
	if o.Rescan <= 0 {
		o.Rescan = 10 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Report == nil {
		o.Report = func(WatchEvent) {}
	}
}

// Watch keeps the folder and its remote in sync until ctx ends: a round
// (pull, merging local changes, then push) runs when local files change
// (once written files are closed), when the server says the head moved,
// and every Rescan. A lost connection is retried with exponential backoff;
// the first round after it brings both sides up to date, since syncing is
// by state, not by event: offline edits are never lost.
func Watch(ctx context.Context, dir string, o WatchOptions) error {
	o.applyDefaults()
	f, err := openFolder(dir)
	if err != nil {
		return err
	}
	folder := f.Dir
	local := IsLocal(f.Config.Remote)
	f.Close()
	w, err := watch.New(folder, watch.Options{Settle: o.Settle, Debounce: o.Debounce, Logger: o.Logger})
	if err != nil {
		return err
	}
	defer w.Close()
	o.Options.hold = w.Busy
	wt := &watcher{o: o, dir: folder, local: local}
	backoff := 500 * time.Millisecond
	reason := "start"
	for {
		err := wt.session(ctx, w, reason)
		if ctx.Err() != nil {
			return nil
		}
		o.Report(WatchEvent{MessageType: "error", Time: time.Now(), Error: err.Error()})
		if permanent(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
		reason = "reconnect"
		if err == nil {
			backoff = 500 * time.Millisecond
		}
	}
}

// permanent reports errors that no retry mends: the token is refused or
// revoked, the server is not the one pinned, the folder is gone. watch
// exits on them (non-zero) rather than retry forever in silence.
func permanent(err error) bool {
	for _, p := range []error{transport.ErrAuth, transport.ErrPermission, transport.ErrFingerprint, state.ErrNoFolder} {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}

type watcher struct {
	o     WatchOptions
	dir   string
	local bool
	last  cas.Ref // the version the last round left
	// mine are the versions this watcher's rounds made or reached: the
	// server's announcements of them need no round.
	mine  map[cas.Ref]bool
	order []cas.Ref
}

// remember adds a version to mine, keeping the newest 1024.
func (wt *watcher) remember(r cas.Ref) {
	if r.IsZero() || wt.mine[r] {
		return
	}
	if wt.mine == nil {
		wt.mine = map[cas.Ref]bool{}
	}
	wt.mine[r] = true
	wt.order = append(wt.order, r)
	if len(wt.order) > 1024 {
		delete(wt.mine, wt.order[0])
		wt.order = wt.order[1:]
	}
}

// session runs rounds over one connection until it fails.
func (wt *watcher) session(ctx context.Context, w *watch.Watcher, reason string) error {
	var s *session
	var events <-chan transport.HeadEvent
	var subEnd func() error
	if !wt.local {
		var err error
		if s, err = open(ctx, wt.dir, wt.o.Options); err != nil {
			return err
		}
		// Keep the connection, not the folder: between rounds other
		// commands (status, log) may open it.
		root := s.root()
		if err := s.f.Close(); err != nil {
			s.remote.Close()
			return err
		}
		s.f = nil
		defer s.remote.Close()
		if c, ok := s.remote.(*transport.Client); ok {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if events, subEnd, err = c.Subscribe(sctx, []string{root}); err != nil {
				return err
			}
		}
	}
	if err := wt.round(ctx, s, reason); err != nil {
		return err
	}
	rescan := time.NewTicker(wt.o.Rescan)
	defer rescan.Stop()
	var poll <-chan time.Time
	if wt.local {
		t := time.NewTicker(wt.o.Poll)
		defer t.Stop()
		poll = t.C
	}
	var retry <-chan time.Time
	retryIn := time.Second
	for {
		var reason string
		select {
		case <-ctx.Done():
			return nil
		case b, ok := <-w.Batches():
			if !ok {
				return errors.New("watch: the watcher stopped")
			}
			reason = "local"
			if b.Overflow {
				reason = "rescan"
			}
		case e, ok := <-events:
			if !ok {
				return subEnd()
			}
			if wt.mine[e.Ref] {
				continue // our own push, or a head we already have
			}
			reason = "remote"
		case <-rescan.C:
			reason = "rescan"
		case <-retry:
			reason = "retry"
		case <-poll:
			if !wt.moved(ctx) {
				continue
			}
			reason = "poll"
		}
		// Announcements queued meanwhile are covered by this round: a
		// round syncs to whatever the head is now.
	drain:
		for {
			select {
			case _, ok := <-events:
				if !ok {
					break drain
				}
			default:
				break drain
			}
		}
		retry = nil
		if err := wt.round(ctx, s, reason); err != nil {
			if c, ok := s.remoteClient(); ok && !c.Alive() {
				return err // the connection is gone: reconnect
			}
			wt.o.Report(WatchEvent{MessageType: "error", Time: time.Now(), Reason: reason, Error: err.Error()})
			// Changes may be waiting that no event will announce again:
			// try again soon, then less and less often.
			retry = time.After(retryIn)
			retryIn = min(2*retryIn, time.Minute)
		} else {
			retryIn = time.Second
		}
	}
}

// moved reports whether a local store's head differs from the folder's
// base (opening the store only briefly, so other folders can use it).
func (wt *watcher) moved(ctx context.Context) bool {
	s, err := open(ctx, wt.dir, wt.o.Options)
	if err != nil {
		return false
	}
	defer s.close()
	base, _ := s.f.Base()
	head, err := s.head(ctx)
	return err == nil && head != base
}

// round runs one sync and reports it. The folder (and a local store) is
// open only for the round; conn, if set, holds the server connection.
func (wt *watcher) round(ctx context.Context, conn *session, reason string) error {
	var s *session
	if conn == nil {
		var err error
		if s, err = open(ctx, wt.dir, wt.o.Options); err != nil {
			return err
		}
		defer s.close()
	} else {
		f, err := state.Find(wt.dir)
		if err != nil {
			return err
		}
		defer f.Close()
		s = &session{f: f, remote: conn.remote, opts: conn.opts, warnings: conn.warnings}
		conn.warnings = nil
	}
	start := time.Now()
	res, err := s.sync(ctx, "")
	if err != nil {
		return err
	}
	e := WatchEvent{MessageType: "summary", Time: time.Now(), Reason: reason, DurationMS: time.Since(start).Milliseconds()}
	if p := res.Pull; p != nil {
		e.Pulled, e.BytesIn, e.Conflicts = p.FilesChanged, p.BytesFetched, p.Conflicts
		e.Warnings = append(e.Warnings, p.Warnings...)
		if p.Version != "" {
			e.Version = p.Version
		}
	}
	if p := res.Push; p != nil {
		if !p.UpToDate {
			e.Pushed = p.FilesChanged
		}
		e.BytesSent = p.BytesSent
		e.Conflicts = append(e.Conflicts, p.Conflicts...)
		e.Warnings = append(e.Warnings, p.Warnings...)
		if p.Version != "" {
			e.Version = p.Version
		}
	}
	if r, err := cas.ParseRef(e.Version); err == nil {
		wt.last = r
	}
	var reached []string
	if res.Pull != nil {
		reached = append(reached, res.Pull.Version)
	}
	if res.Push != nil {
		reached = append(reached, res.Push.Version)
	}
	for _, v := range reached {
		if r, err := cas.ParseRef(v); err == nil {
			wt.remember(r)
		}
	}
	wt.o.Report(e)
	return nil
}

func (s *session) remoteClient() (*transport.Client, bool) {
	if s == nil {
		return nil, false
	}
	c, ok := s.remote.(*transport.Client)
	return c, ok
}
