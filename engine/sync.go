package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/failpoint"
	"github.com/ferry-sync/ferry/restore"
	"github.com/ferry-sync/ferry/scan"
	"github.com/ferry-sync/ferry/transport"
)

// PushOptions tune a push.
type PushOptions struct {
	Options
	Message string
}

// PushResult is the summary a push prints.
type PushResult struct {
	// ReceiveOnly: nothing was sent, the folder is receive-only (sync).
	ReceiveOnly  bool   `json:"receive_only,omitempty"`
	Version      string `json:"version"`
	Parent       string `json:"parent,omitempty"`
	UpToDate     bool   `json:"up_to_date"`
	FilesChanged int64  `json:"files_changed"`
	FilesScanned int64  `json:"files_scanned"`
	FilesRead    int64  `json:"files_read"`
	ChunksSent   int64  `json:"chunks_sent"`
	ObjectsSent  int64  `json:"objects_sent"`
	BytesSent    int64  `json:"bytes_sent"`
	BytesScanned int64  `json:"bytes_scanned"`
	DurationMS   int64  `json:"duration_ms"`
	// Resent counts objects, files and directories sent again because
	// the store had found its copy of them damaged (see heal.go).
	Resent int `json:"damaged_resent,omitempty"`
	// Merged: the head had moved, and the push merged with it (the
	// folder now holds the merge); Conflicts are the copies made.
	Merged    bool       `json:"merged,omitempty"`
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// DeletionsLost are the paths one side removed and the other changed:
	// the merge kept the change.
	DeletionsLost []LostDeletion `json:"deletions_lost,omitempty"`
	// Overridden are the paths whose remote change since the base an
	// override (or a send-only push) replaced with the folder's state;
	// the head before it keeps them.
	Overridden []string `json:"overridden,omitempty"`
	Warnings   []string `json:"warnings,omitempty"`
}

// Push records the folder's state as a new version of its root and moves
// the remote head to it. Chunks and objects reach the remote, durably,
// before the head moves.
func Push(ctx context.Context, dir string, o PushOptions) (*PushResult, error) {
	start := time.Now()
	return withFailover(ctx, dir, o.Options, func(s *session) (*PushResult, error) {
		res, err := s.pushRecovering(ctx, o.Message)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", s.f.Dir, err)
		}
		res.DurationMS = durationMS(start)
		res.Warnings = append(s.warnings, res.Warnings...)
		return res, nil
	})
}

func (s *session) push(ctx context.Context, message string) (*PushResult, error) {
	if s.receiveOnly() {
		return nil, s.refuseSend()
	}
	base, err := s.f.Base()
	if err != nil {
		return nil, err
	}
	head, err := s.head(ctx)
	if err != nil {
		return nil, err
	}
	res := &PushResult{}
	if c, ok := s.remote.(*transport.Client); ok {
		// Over the network, what was sent is what crossed the wire: every
		// blob the server lacked (chunks, and the objects that list them).
		defer func(blobs, bytes int64) {
			res.ChunksSent, res.BytesSent = c.BlobsSent.Load()-blobs, c.BytesSent.Load()-bytes
		}(c.BlobsSent.Load(), c.BytesSent.Load())
	}
	if err := s.quotaRoom(ctx, base); err != nil {
		return nil, err
	}
	if res.Resent, err = s.heal(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	sc, err := s.scan(ctx, s.remote)
	if err != nil {
		return nil, err
	}
	s.opts.Logger.Debug("push: scanned", "files", sc.Summary.Files, "read", sc.FilesRead, "took", time.Since(t0))
	defer sc.CacheUpdate.Discard()
	res.FilesScanned, res.FilesRead, res.BytesScanned = sc.Summary.Files, sc.FilesRead, sc.BytesRead
	res.ChunksSent, res.ObjectsSent, res.BytesSent, res.Warnings = sc.ChunksSent, sc.ObjectsSent, sc.BytesSent, sc.Warnings
	baseRoot, err := s.versionRoot(ctx, base)
	if err != nil {
		return nil, err
	}
	// An explicit override of a moved head sends even an unchanged folder:
	// the point is to undo the remote's changes.
	if sameTree(sc.Root, baseRoot) && (!s.overriding || head == base) {
		res.UpToDate = true
		res.Version = base.String()
		if base.IsZero() {
			res.Version = ""
		}
		return res, s.commitCache(ctx, sc)
	}
	if err := s.pushGuard(ctx, base, baseRoot, sc.Root); err != nil {
		return nil, err
	}
	if head != base {
		// The head may be this very state: a push whose answer was lost
		// (the server or the connection died after the head moved).
		if headRoot, err := s.versionRoot(ctx, head); err == nil && sameTree(headRoot, sc.Root) {
			res.UpToDate, res.Version = true, head.String()
			if err := s.commitCache(ctx, sc); err != nil {
				return nil, err
			}
			return res, s.f.SetBase(head)
		}
		if s.overrides() {
			return s.pushOverride(ctx, sc, base, head, message, res)
		}
		return s.pushMerge(ctx, sc, base, head, message, res)
	}
	if res.FilesChanged, err = s.countChanges(ctx, baseRoot, sc.Root); err != nil {
		return nil, err
	}
	v := &index.Version{Root: sc.Root, Time: s.opts.Now().UTC(), Device: s.f.Config.Device, Message: message, Summary: sc.Summary}
	if !base.IsZero() {
		v.Parents = []cas.Ref{base}
		res.Parent = base.String()
	}
	vb := index.EncodeVersion(v)
	ref := cas.Sum(vb)
	if err := s.remote.Put(ctx, ref, vb); err != nil {
		return nil, err
	}
	_ = s.f.Cache().Put(ctx, ref, vb)
	t0 = time.Now()
	if err := s.commitCache(ctx, sc); err != nil {
		return nil, err
	}
	s.opts.Logger.Debug("push: uploads durable", "took", time.Since(t0))
	t0 = time.Now()
	defer func() { s.opts.Logger.Debug("push: head moved", "took", time.Since(t0)) }()
	failpoint.Hit("client-before-commit")
	if err := s.remote.SwapHead(ctx, s.root(), head, ref); err != nil {
		if errors.Is(err, cas.ErrStale) {
			// Another device moved the head while we pushed: merge with it.
			if head, err = s.head(ctx); err != nil {
				return nil, err
			}
			if s.overrides() {
				return s.pushOverride(ctx, sc, base, head, message, res)
			}
			return s.pushMerge(ctx, sc, base, head, message, res)
		}
		return nil, err
	}
	if err := s.f.SetBase(ref); err != nil {
		return nil, fmt.Errorf("version %s is pushed, but recording it here failed: %w", ref.Short(), err)
	}
	res.Version = ref.String()
	return res, nil
}

// pushRecovering pushes; when the server refuses the commit for lacking
// content this push counted on (a collection removed it after we learned
// it was there), it reads everything again, so that every chunk is offered
// anew, and retries (a few times: each retry is a race lost to another
// collection, which a grace period makes rare).
func (s *session) pushRecovering(ctx context.Context, message string) (*PushResult, error) {
	res, err := s.push(ctx, message)
	for attempt := 0; attempt < 3 && missingAtRemote(err); attempt++ {
		s.opts.Logger.Info("push: the server lacks data this push counted on; re-reading every file", "err", err)
		if attempt == 0 {
			s.warnings = append(s.warnings, "the server no longer had data this push relied on (collected meanwhile); pushed again with every file re-read")
		}
		if cerr := s.f.StatCache().Clear(); cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		res, err = s.push(ctx, message)
	}
	return res, err
}

// quotaRoom fails a push before it sends anything when the namespace is
// already at its quota and the folder has changes to send. (A push that
// crosses the quota midway is refused by the server, blob by blob.)
func (s *session) quotaRoom(ctx context.Context, base cas.Ref) error {
	q, ok := s.remote.(interface {
		Usage(context.Context) (int64, int64, error)
	})
	if !ok {
		return nil
	}
	used, limit, err := q.Usage(ctx)
	if err != nil || limit == 0 || used < limit {
		return nil // an older server, or room left: the puts will say
	}
	sc, err := s.scan(ctx, nil)
	if err != nil {
		return err
	}
	sc.CacheUpdate.Discard()
	if baseRoot, err := s.versionRoot(ctx, base); err == nil && sameTree(sc.Root, baseRoot) {
		return nil // nothing to send
	}
	return &cas.QuotaError{Namespace: s.f.Config.Namespace, Used: used, Limit: limit}
}

// missingAtRemote reports whether err is a refused commit that lists
// blobs the server does not have, or a merge that found conflict copies'
// content gone from it (errRelied).
func missingAtRemote(err error) bool {
	var re *transport.RemoteError
	return errors.As(err, &re) && len(re.Missing) > 0 || errors.Is(err, errRelied)
}

// maxMergeAttempts bounds how often a push merges again with a head that
// other devices keep moving.
const maxMergeAttempts = 16

// pushMerge merges the scanned folder with a head that moved, retrying
// while other devices keep moving it. Between attempts it waits a random
// while that doubles each time (10 ms up to 1 s), so that devices racing
// for one root take turns instead of losing to each other in lockstep.
func (s *session) pushMerge(ctx context.Context, sc *scan.Result, base, head cas.Ref, message string, res *PushResult) (*PushResult, error) {
	for attempt := 0; ; attempt++ {
		m, err := s.mergeInto(ctx, sc, base, head, message)
		if errors.Is(err, cas.ErrStale) && attempt < maxMergeAttempts {
			if err := mergeBackoff(ctx, attempt); err != nil {
				return nil, err
			}
			// The folder is at the merge now; scan it again and merge
			// with the newer head.
			if head, err = s.head(ctx); err != nil {
				return nil, err
			}
			if sc, err = s.scan(ctx, s.remote); err != nil {
				return nil, err
			}
			defer sc.CacheUpdate.Discard()
			continue
		}
		if err != nil {
			return nil, err
		}
		res.Version, res.Merged, res.Conflicts = m.version.String(), true, m.conflicts
		res.DeletionsLost = m.lost
		res.Parent = head.String()
		res.FilesChanged = m.applied.FilesWritten + m.applied.Removed
		res.Warnings = append(res.Warnings, m.applied.Warnings...)
		return res, nil
	}
}

// mergeBackoff waits between merge attempts: a random time in the upper
// half of min(10 ms << attempt, 1 s), or until ctx ends.
func mergeBackoff(ctx context.Context, attempt int) error {
	d := min(10*time.Millisecond<<attempt, time.Second)
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitCache makes what the scan stored durable at the remote, and only
// then records the stat cache entries that promise it is there.
func (s *session) commitCache(ctx context.Context, sc *scan.Result) error {
	if err := s.remote.Flush(ctx); err != nil {
		return err
	}
	err := sc.CacheUpdate.Commit()
	sc.CacheUpdate = nil
	return err
}

// countChanges counts the files added, removed or modified between trees.
func (s *session) countChanges(ctx context.Context, a, b cas.Ref) (int64, error) {
	var n int64
	err := index.Diff(ctx, s.objects(), a, b, func(c index.Change) error {
		if (c.New != nil && c.New.Kind != index.KindDir) || (c.New == nil && c.Old.Kind != index.KindDir) {
			n++
		}
		return nil
	})
	return n, err
}

func shortOrNone(r cas.Ref) string {
	if r.IsZero() {
		return "no version"
	}
	return r.Short()
}

// PullResult is the summary a pull prints.
type PullResult struct {
	Version string `json:"version"`
	// NothingYet: a read-only token, and nothing pushed to the namespace.
	NothingYet bool `json:"nothing_yet,omitempty"`
	// SendOnly: nothing was received, the folder is send-only (sync).
	SendOnly      bool  `json:"send_only,omitempty"`
	UpToDate      bool  `json:"up_to_date"`
	FilesChanged  int64 `json:"files_changed"`
	FilesWritten  int64 `json:"files_written"`
	Removed       int64 `json:"removed"`
	ChunksFetched int64 `json:"chunks_fetched"`
	ChunksLocal   int64 `json:"chunks_from_local_files"`
	// Merged: the folder had changes of its own, merged with the head and
	// pushed as a version with both as parents.
	Merged        bool           `json:"merged,omitempty"`
	Conflicts     []Conflict     `json:"conflicts,omitempty"`
	DeletionsLost []LostDeletion `json:"deletions_lost,omitempty"`
	BytesFetched  int64          `json:"bytes_fetched"`
	BytesWritten  int64          `json:"bytes_written"`
	BytesScanned  int64          `json:"bytes_scanned"`
	DurationMS    int64          `json:"duration_ms"`
	Warnings      []string       `json:"warnings,omitempty"`
}

// Pull brings the folder to the remote head. It refuses when the folder
// has changes of its own that the head does not have.
func Pull(ctx context.Context, dir string, o Options) (*PullResult, error) {
	start := time.Now()
	res, err := withFailover(ctx, dir, o, func(s *session) (*PullResult, error) {
		res, err := s.pull(ctx)
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", s.f.Dir, err)
		}
		res.DurationMS = durationMS(start)
		res.Warnings = append(s.warnings, res.Warnings...)
		return res, nil
	})
	if errors.Is(err, ErrNothingYet) {
		return &PullResult{NothingYet: true}, nil
	}
	return res, err
}

func (s *session) pull(ctx context.Context) (*PullResult, error) {
	if s.sendOnly() {
		return nil, s.refuseReceive()
	}
	base, err := s.f.Base()
	if err != nil {
		return nil, err
	}
	head, err := s.head(ctx)
	if err != nil {
		return nil, err
	}
	res := &PullResult{Version: head.String()}
	if head.IsZero() {
		res.Version, res.UpToDate = "", true
		return res, nil
	}
	if head == base {
		// Nothing new remotely; local changes are push's business.
		res.UpToDate = true
		return res, nil
	}
	sc, err := s.scan(ctx, nil)
	if err != nil {
		return nil, err
	}
	sc.CacheUpdate.Discard()
	res.BytesScanned, res.Warnings = sc.BytesRead, sc.Warnings
	baseRoot, err := s.versionRoot(ctx, base)
	if err != nil {
		return nil, err
	}
	headRoot, err := s.versionRoot(ctx, head)
	if err != nil {
		return nil, err
	}
	if sameTree(sc.Root, headRoot) {
		// Already there (someone copied the files, or a pull was
		// interrupted after its last rename): just record it.
		res.UpToDate = head == base
		return res, s.f.SetBase(head)
	}
	from := baseRoot
	keepLocal := false
	if !sameTree(sc.Root, baseRoot) {
		// Local changes that already equal the head were left by an
		// interrupted pull: go on from what is here. Others are merged,
		// or, in a receive-only folder, kept here and not sent.
		err := s.localChangesInHead(ctx, baseRoot, sc.Root, headRoot)
		switch {
		case errors.Is(err, ErrLocalChanges) && s.receiveOnly():
			keepLocal = true
		case errors.Is(err, ErrLocalChanges):
			// The merge references the local changes: scan again, this
			// time storing them at the remote.
			if sc, err = s.scan(ctx, s.remote); err != nil {
				return nil, err
			}
			defer sc.CacheUpdate.Discard()
			pr, err := s.pullMerge(ctx, sc, base, head, res)
			if !errors.Is(err, errRelied) {
				return pr, err
			}
			// Content the stat cache vouched for is gone from the
			// remote: read every file again, which sends it anew.
			s.opts.Logger.Info("pull: the server lacks data this merge counted on; re-reading every file", "err", err)
			s.warnings = append(s.warnings, "the server no longer had data this merge relied on (collected meanwhile); merged again with every file re-read")
			if err := s.f.StatCache().Clear(); err != nil {
				return nil, err
			}
			if sc, err = s.scan(ctx, s.remote); err != nil {
				return nil, err
			}
			defer sc.CacheUpdate.Discard()
			return s.pullMerge(ctx, sc, base, head, res)
		case err != nil:
			return nil, err
		default:
			from = sc.Root
		}
	}
	if err := s.guard(ctx, from, headRoot, sc.Summary.Files+sc.Summary.Symlinks); err != nil {
		return nil, err
	}
	s.prefetch(ctx, from, headRoot)
	if res.FilesChanged, err = s.countChanges(ctx, baseRoot, headRoot); err != nil {
		return nil, err
	}
	fetch := &countingGetter{g: s.remote}
	rr, err := restore.Apply(ctx, s.f.Dir, s.objects(), from, headRoot, s.folderRestore(restore.Options{
		Chunks:      fetch,
		Cache:       s.f.StatCache(),
		Seeds:       &seeds{s: s, root: baseRoot},
		Workers:     s.restoreWorkers(),
		VerifyLocal: true,
		Skip:        s.keepLocalSkip(keepLocal),
		Logger:      s.opts.Logger,
	}))
	if err != nil {
		return nil, err
	}
	res.FilesWritten, res.Removed, res.BytesWritten = rr.FilesWritten, rr.Removed, rr.BytesWritten
	res.ChunksFetched, res.BytesFetched = fetch.n.Load(), fetch.bytes.Load()
	if c, ok := s.remote.(*transport.Client); ok {
		res.BytesFetched = c.BytesFetched.Load() // what crossed the wire
	}
	res.ChunksLocal = rr.ChunksSeeded
	res.Warnings = append(res.Warnings, rr.Warnings...)
	if keepLocal && rr.Skipped > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("receive-only: %d paths changed here and at the remote are kept as they are here; 'ferry revert' takes the remote's", rr.Skipped))
	}
	res.Conflicts = append(res.Conflicts, aliasConflicts(rr)...)
	if err := s.f.SetBase(head); err != nil {
		return nil, err
	}
	return res, nil
}

// localChangesInHead returns ErrLocalChanges unless every path that changed
// from base to local is, in local, just as it is in head.
func (s *session) localChangesInHead(ctx context.Context, baseRoot, localRoot, headRoot cas.Ref) error {
	g := s.objects()
	var first string
	err := index.Diff(ctx, g, baseRoot, localRoot, func(c index.Change) error {
		if c.New != nil && c.New.Kind == index.KindDir {
			return nil
		}
		h, err := index.Lookup(ctx, g, headRoot, c.Path)
		switch {
		case errors.Is(err, cas.ErrNotFound):
			if c.New == nil {
				return nil // removed here and in head
			}
		case err != nil:
			return err
		case c.New != nil && sameContent(*c.New, h):
			return nil
		}
		first = c.Path
		return errStop
	})
	if errors.Is(err, errStop) {
		return fmt.Errorf("%w (%s, and maybe more): push them first", ErrLocalChanges, first)
	}
	return err
}

var errStop = errors.New("stop")

// sameContent: two entries would restore to the same thing.
func sameContent(a, b index.Entry) bool {
	return a.Kind == b.Kind && a.Ref == b.Ref && a.Target == b.Target && a.Mode == b.Mode && (a.Kind != index.KindFile || a.MTime == b.MTime)
}

// pullMerge merges local changes with the head (see mergeInto).
func (s *session) pullMerge(ctx context.Context, sc *scan.Result, base, head cas.Ref, res *PullResult) (*PullResult, error) {
	ps, err := s.pushMerge(ctx, sc, base, head, "merge", &PushResult{})
	if err != nil {
		return nil, err
	}
	res.Version, res.Merged, res.Conflicts = ps.Version, true, ps.Conflicts
	res.DeletionsLost = ps.DeletionsLost
	res.FilesChanged = ps.FilesChanged
	res.Warnings = append(res.Warnings, ps.Warnings...)
	return res, nil
}

// SyncResult is a pull followed by a push.
type SyncResult struct {
	Pull *PullResult `json:"pull"`
	Push *PushResult `json:"push"`
}

// Sync pulls then pushes, once.
func Sync(ctx context.Context, dir string, o PushOptions) (*SyncResult, error) {
	return withFailover(ctx, dir, o.Options, func(s *session) (*SyncResult, error) { return s.sync(ctx, o.Message) })
}

func (s *session) sync(ctx context.Context, message string) (*SyncResult, error) {
	start := time.Now()
	if s.sendOnly() {
		// Send-only: a sync is its push.
		ps, err := s.pushRecovering(ctx, message)
		if err != nil {
			return nil, fmt.Errorf("sync %s: %w", s.f.Dir, err)
		}
		ps.DurationMS = durationMS(start)
		ps.Warnings = append(s.warnings, ps.Warnings...)
		s.warnings = nil
		return &SyncResult{Pull: &PullResult{SendOnly: true}, Push: ps}, nil
	}
	pr, err := s.pull(ctx)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.f.Dir, err)
	}
	pr.DurationMS = durationMS(start)
	if s.receiveOnly() {
		// Receive-only: a sync is its pull.
		return &SyncResult{Pull: pr, Push: &PushResult{ReceiveOnly: true}}, nil
	}
	start = time.Now()
	ps, err := s.pushRecovering(ctx, message)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.f.Dir, err)
	}
	ps.DurationMS = durationMS(start)
	pr.Warnings = append(s.warnings, pr.Warnings...)
	s.warnings = nil
	return &SyncResult{Pull: pr, Push: ps}, nil
}

// countingGetter counts what crossed from the remote.
type countingGetter struct {
	g        cas.Getter
	n, bytes atomicInt
}

// GetMany fetches in batches when the remote can.
func (c *countingGetter) GetMany(ctx context.Context, refs []cas.Ref, fn func(cas.Ref, []byte) error) error {
	type batchGetter interface {
		GetMany(context.Context, []cas.Ref, func(cas.Ref, []byte) error) error
	}
	count := func(r cas.Ref, b []byte) error {
		c.n.Add(1)
		c.bytes.Add(int64(len(b)))
		return fn(r, b)
	}
	if bg, ok := c.g.(batchGetter); ok {
		return bg.GetMany(ctx, refs, count)
	}
	for _, r := range refs {
		b, err := c.g.Get(ctx, r)
		if err != nil {
			return err
		}
		if err := count(r, b); err != nil {
			return err
		}
	}
	return nil
}

func (c *countingGetter) Get(ctx context.Context, ref cas.Ref) ([]byte, error) {
	b, err := c.g.Get(ctx, ref)
	if err == nil {
		c.n.Add(1)
		c.bytes.Add(int64(len(b)))
	}
	return b, err
}
