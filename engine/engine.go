// Package engine orchestrates what a user asks of a synced folder: init,
// push, pull, sync, status, log, diff, ls, restore, tag and check. It
// joins a folder's state, the scanner, the restorer and a remote (a local
// store directory, or a server), and returns results as plain structs that
// cmd prints as text or JSON. It prints nothing itself.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/scan"
	"github.com/ferry-sync/ferry/state"
	"github.com/ferry-sync/ferry/transport"
)

// Sentinel errors callers map to messages and exit codes.
var (
	// ErrRemoteMoved: the remote head moved since the folder's base, and
	// the folder has changes of its own: merging is needed.
	ErrRemoteMoved = errors.New("the remote has versions this folder has not pulled")
	// ErrLocalChanges: a pull would overwrite changes not yet pushed.
	ErrLocalChanges = errors.New("the folder has changes that are not pushed")
	// ErrNoHead: the root has no version yet.
	ErrNoHead = errors.New("the root has no versions yet")
	// ErrQuota: the namespace is at its quota.
	ErrQuota = cas.ErrQuota
	// ErrStorageFull: the store's disk is below its free-space mark; it
	// takes no new data until forget and gc free space.
	ErrStorageFull = cas.ErrFull
	// ErrNoFolder: no ferry folder at or above the directory.
	ErrNoFolder = state.ErrNoFolder
	// ErrNoStore: the store directory holds no store.
	ErrNoStore = cas.ErrNoStore
	// ErrLocked: another process holds the store or the folder.
	ErrLocked = cas.ErrLocked
	// ErrAuth: the server refused the token (unknown, revoked, or not for
	// this namespace).
	ErrAuth = transport.ErrAuth
	// ErrFingerprint: the server's certificate is not the one pinned.
	ErrFingerprint = transport.ErrFingerprint
)

// ErrNothingYet: a read-only token on a namespace nothing was pushed to.
var ErrNothingYet = errors.New("read-only token: nothing to pull yet")

// Remote is where a folder syncs to: a store of blobs and heads, and the
// chunk params every writer to it must use.
type Remote interface {
	cas.Store
	cas.Heads
	// DropHistory removes history entries (forget).
	DropHistory(ctx context.Context, root string, seqs []uint64) error
	Params() chunk.Params
	Close() error
}

// DefaultNamespace is the namespace of a local store.
const DefaultNamespace = "default"

// localRemote is a store directory on this machine.
type localRemote struct {
	*cas.Namespace
	db     *cas.DB
	params chunk.Params
}

func (l *localRemote) Params() chunk.Params { return l.params }
func (l *localRemote) Close() error         { return l.db.Close() }

// IsLocal reports whether a remote URL names a store directory.
func IsLocal(url string) bool { return !strings.Contains(url, "://") }

// Credentials reach a server: a bearer token and the pinned fingerprint
// of its certificate. Empty fields fall back to what the folder keeps.
type Credentials struct {
	Token string
	// TokenExplicit says Token was named for this command (--token-file):
	// it then wins over the folder's own token. Otherwise (FERRY_TOKEN,
	// which is for init and folders without one) the folder's wins, so an
	// exported token for one namespace does not break folders of others.
	TokenExplicit bool
	Fingerprint   string
	// IdleTimeout is how long a silent server counts as alive (default
	// the transport's).
	IdleTimeout time.Duration
	// Streams is how many upload streams run in parallel (default 8).
	Streams int
	// Connections is how many QUIC connections carry them (default 1;
	// see transport.ClientOptions).
	Connections int
	// LimitUpload and LimitDownload bound the bytes a second sent to and
	// received from a server, across all streams (0: no limit).
	LimitUpload, LimitDownload int64
}

// RemoteOptions say how to open a remote.
type RemoteOptions struct {
	Credentials
	// Create makes a local store that does not exist.
	Create bool
	// FirstUse is called when a server is seen with no pinned
	// fingerprint; nil refuses such a server.
	FirstUse func(fingerprint string) error
	Device   string
	Logger   *slog.Logger
	// Avoid lists servers of a cluster to try last (see transport).
	Avoid []string
}

// OpenRemote opens the remote at url: a store directory, or
// quic://HOST:PORT/NAMESPACE. A local store is made when o.Create is set
// and it does not exist; its namespace gets fresh chunk params.
func OpenRemote(ctx context.Context, url, namespace string, o RemoteOptions) (Remote, error) {
	if !IsLocal(url) {
		addr, ns, err := transport.ParseURL(url)
		if err != nil {
			return nil, err
		}
		c, err := transport.Dial(ctx, addr, ns, transport.ClientOptions{
			Token: o.Token, Fingerprint: o.Fingerprint, FirstUse: o.FirstUse, IdleTimeout: o.IdleTimeout, Streams: o.Streams, Connections: o.Connections,
			LimitUpload: transport.NewLimiter(o.LimitUpload), LimitDownload: transport.NewLimiter(o.LimitDownload),
			Device: o.Device, Version: "ferry", Logger: o.Logger, Avoid: o.Avoid,
		})
		if err != nil {
			return nil, fmt.Errorf("remote %s: %w", url, err)
		}
		if c.Params().Validate() != nil && c.Perm().Allows(transport.PermWrite) {
			c.Close()
			return nil, fmt.Errorf("remote %s: the server sent no chunk params", url)
		}
		return c, nil
	}
	db, err := cas.Open(url, cas.Options{Create: o.Create})
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", url, err)
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	ns, err := db.Namespace(namespace)
	if err != nil {
		db.Close()
		return nil, err
	}
	params, err := namespaceParams(ctx, ns, o.Create)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("remote %s: %w", url, err)
	}
	return &localRemote{Namespace: ns, db: db, params: params}, nil
}

// namespaceParams reads the namespace's chunk params, making them when
// missing and allowed.
func namespaceParams(ctx context.Context, ns *cas.Namespace, create bool) (chunk.Params, error) {
	var p chunk.Params
	b, err := ns.Config(ctx)
	switch {
	case errors.Is(err, cas.ErrNotFound) && create:
		if p, err = chunk.New(); err != nil {
			return p, err
		}
		b, _ = json.Marshal(p)
		return p, ns.SetConfig(ctx, b)
	case err != nil:
		return p, fmt.Errorf("namespace %s config: %w", ns.Name(), err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("namespace %s config: %w", ns.Name(), err)
	}
	return p, p.Validate()
}

// Options carry what every operation takes.
type Options struct {
	// Progress receives progress events; nil discards them.
	Progress func(Progress)
	Logger   *slog.Logger
	// Now is the clock for version times (default time.Now).
	Now func() time.Time
	// Credentials for a server (FERRY_TOKEN, FERRY_FINGERPRINT); empty
	// fields fall back to the folder's own.
	Credentials Credentials
	// Force lets a pull delete more than the deletion guard allows.
	Force bool
	// Warn receives the warnings of commands whose result has no place
	// for them (diff, ls, conflicts); nil drops them.
	Warn func(string)
	// hold names files a writer still has open (watch).
	hold func(path string) bool
	// avoid lists a cluster's servers that went away during this
	// command: a new session tries them last; notes says so in its
	// warnings.
	avoid, notes []string
}

// openFolder finds the folder at dir.
func openFolder(dir string) (*state.Folder, error) { return state.Find(dir) }

// Progress is a progress event: counts to add to running totals.
type Progress struct {
	Phase string // "scan", "upload", "download"
	// Files and Bytes are work done: files read or written, and their
	// bytes (for "upload", bytes sent).
	Files int64
	Bytes int64
	// TotalFiles and TotalBytes add to the work known to lie ahead in
	// the phase (a scan's files to read grow as its walk goes on).
	TotalFiles, TotalBytes int64
	Path                   string
	// Action names what happened to Path, for a verbose listing: "new"
	// or "modified" (read for a push), "written" (by a pull or restore).
	Action string
}

func (o *Options) applyDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// session is an open folder and its remote.
type session struct {
	f        *state.Folder
	remote   Remote
	opts     Options
	warnings []string // said once, with the result
	// overriding: a push over a moved head replaces it (ferry override).
	overriding bool
}

func open(ctx context.Context, dir string, opts Options) (*session, error) {
	return openSession(ctx, dir, opts, false)
}

// openOffline opens the folder for a command that can answer from what
// the folder knows (status, diff against the base, conflicts, ls of the
// base): when the server does not answer, the session goes on with an
// offline remote and a warning.
func openOffline(ctx context.Context, dir string, opts Options) (*session, error) {
	return openSession(ctx, dir, opts, true)
}

func openSession(ctx context.Context, dir string, opts Options, offlineOK bool) (*session, error) {
	opts.applyDefaults()
	f, err := state.Find(dir)
	if err != nil {
		return nil, err
	}
	s := &session{f: f, opts: opts, warnings: slices.Clone(opts.notes)}
	if f.CopiedFrom != "" {
		s.warnings = append(s.warnings, fmt.Sprintf("this folder is a copy of the one at %s (device %s); it is now device %s of its own", f.CopiedFromPath, f.CopiedFrom, f.Config.Device))
	}
	ro := RemoteOptions{Credentials: opts.Credentials, Device: f.Config.Device, Logger: opts.Logger, Avoid: opts.avoid}
	if t := f.Token(); t != "" && !opts.Credentials.TokenExplicit {
		ro.Token = t
	}
	if ro.Fingerprint == "" {
		ro.Fingerprint = f.Config.Fingerprint
	}
	if f.Config.Fingerprint == "" {
		// The folder has never pinned this server: trust it now, keep the
		// pin, and say so.
		ro.FirstUse = func(fp string) error {
			f.Config.Fingerprint = fp
			s.warnings = append(s.warnings, fmt.Sprintf("trusting server certificate %s on first use; it is now pinned in %s", fp, filepath.Join(f.Dir, index.StateDir, "config")))
			return f.SaveConfig()
		}
	}
	r, err := OpenRemote(ctx, f.Config.Remote, f.Config.Namespace, ro)
	if err != nil && offlineOK && errors.Is(err, transport.ErrUnreachable) {
		if r, err = s.offlineRemote(err); err == nil {
			s.remote = r
			return s, nil
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	s.keepParams(r.Params())
	if r.Params().Pol == 0 {
		// The namespace has no chunk params yet, and this token may not
		// make them: nobody has pushed, and this device cannot.
		r.Close()
		f.Close()
		return nil, ErrNothingYet
	}
	s.remote = r
	return s, nil
}

func (s *session) close() error {
	return errors.Join(s.remote.Close(), s.f.Close())
}

// withFailover runs op on a session of dir, and again on a new session
// while op failed because its server went away and the remote is a
// cluster with a server not yet tried: the new session's scan asks the
// cluster what it has, so what reached the store durably is not sent
// again.
func withFailover[T any](ctx context.Context, dir string, o Options, op func(*session) (T, error)) (T, error) {
	for {
		s, err := open(ctx, dir, o)
		if err != nil {
			var zero T
			return zero, err
		}
		res, err := op(s)
		c, _ := s.remote.(*transport.Client)
		servers := len(strings.Split(s.f.Config.Remote, ","))
		s.close()
		if err == nil || c == nil || ctx.Err() != nil || len(o.avoid)+1 >= servers ||
			!(errors.Is(err, transport.ErrUnavailable) || errors.Is(err, transport.ErrUnreachable)) {
			return res, err
		}
		o.applyDefaults()
		o.Logger.Warn("server went away; going on with another of the cluster", "server", c.Addr(), "err", err)
		o.avoid = append(o.avoid, c.Addr())
		o.notes = append(o.notes, fmt.Sprintf("server %s went away (%v); went on with another server of the cluster", c.Addr(), err))
	}
}

func (s *session) root() string { return s.f.Config.Root }

// head returns the remote head, or the zero ref for a root with none.
//
// A root with no head while the folder has synced with it is gone (an
// admin deleted it, or the remote is another store): that is ErrRootGone,
// because merging with "no head" would read as the remote deleting every
// file.
func (s *session) head(ctx context.Context) (cas.Ref, error) {
	h, err := s.remote.Head(ctx, s.root())
	if errors.Is(err, cas.ErrNotFound) {
		if base, berr := s.f.Base(); berr == nil && !base.IsZero() {
			return cas.Ref{}, cas.Errorf(ErrRootGone, "the remote has no root %q any more (an admin deleted it, or the remote is another store); this folder is untouched. 'ferry config set root %s' starts it again from this folder, merging with nothing", s.root(), s.root())
		}
		return cas.Ref{}, nil
	}
	return h, err
}

// ErrRootGone: the folder's root has no head at the remote, though the
// folder synced with it.
var ErrRootGone = errors.New("the root is gone")

// objects reads trees, file lists and versions: the folder's cache first,
// then the remote, keeping a copy of what it fetched from a remote that is
// not local (a local store is its own cache).
func (s *session) objects() cas.Getter {
	return &cachingGetter{cache: s.f.Cache(), remote: s.remote, keep: !s.local()}
}

// local reports whether the remote is a store on this machine.
func (s *session) local() bool {
	_, ok := s.remote.(*localRemote)
	return ok
}

type cachingGetter struct {
	cache  *cas.Namespace
	remote cas.Getter
	keep   bool
}

func (c *cachingGetter) Get(ctx context.Context, ref cas.Ref) ([]byte, error) {
	if b, err := c.cache.Get(ctx, ref); err == nil {
		return b, nil
	}
	b, err := c.remote.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	if c.keep {
		_ = c.cache.Put(ctx, ref, b)
	}
	return b, nil
}

// restoreWorkers is how many files a restore writes at once: one per core
// from a local store; more from a server, where each waits on the network.
func (s *session) restoreWorkers() int {
	if s.local() {
		return 0
	}
	return 32
}

// versionRoot returns the root tree of version v (the zero ref for none).
func (s *session) versionRoot(ctx context.Context, v cas.Ref) (cas.Ref, error) {
	if v.IsZero() {
		return cas.Ref{}, nil
	}
	ver, err := index.LoadVersion(ctx, s.objects(), v)
	if err != nil {
		return cas.Ref{}, err
	}
	return ver.Root, nil
}

// scan scans the folder; dst nil means compute only.
func (s *session) scan(ctx context.Context, dst scan.Dest) (*scan.Result, error) {
	// Objects also go to the folder's cache, so that status and diff
	// can read the trees of a scan that stored nothing; a push to a local
	// store needs no second copy.
	var objects cas.Putter = s.f.Cache()
	_, dry := dst.(*dryDest)
	if s.local() && dst != nil && !dry {
		objects = nil
	}
	return scan.Scan(ctx, s.f.Dir, s.f.StatCache(), dst, scan.Options{
		Params:     s.remote.Params(),
		Objects:    objects,
		PutObjects: true, // a local store and the client both skip what they have
		DryRun:     dry,
		// The client asks the server which chunks it lacks, in batches, on
		// its own time: the scan never waits on a round trip.
		PutChunks:   !s.local(),
		RemoveTemps: true,
		Names:       s.f.Names(),
		Hold:        s.opts.hold,
		Logger:      s.opts.Logger,
		Progress: func(e scan.Event) {
			if s.opts.Progress == nil {
				return
			}
			if e.FilesRead > 0 || e.BytesRead > 0 || e.ToReadFiles > 0 || e.Files > 0 {
				s.opts.Progress(Progress{Phase: "scan", Files: e.FilesRead, Bytes: e.BytesRead, TotalFiles: e.ToReadFiles, TotalBytes: e.ToReadBytes, Path: e.CurrentPath, Action: e.Action})
			}
			if e.BytesSent > 0 {
				s.opts.Progress(Progress{Phase: "upload", Bytes: e.BytesSent})
			}
		},
	})
}

// emptyTree is the ref of a tree with no entries: a folder with nothing in
// it equals "no version".
var emptyTree = cas.Sum(index.EncodeTree(&index.Tree{}))

func sameTree(a, b cas.Ref) bool {
	norm := func(r cas.Ref) cas.Ref {
		if r == emptyTree {
			return cas.Ref{}
		}
		return r
	}
	return norm(a) == norm(b)
}

// sanitizeRoot turns a directory name into a valid root name.
func sanitizeRoot(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	s := strings.TrimLeft(string(b), ".-")
	if s == "" {
		s = "root"
	}
	return s[:min(len(s), 64)]
}

func durationMS(start time.Time) int64 { return time.Since(start).Milliseconds() }

// exists reports whether path exists (for targets).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
