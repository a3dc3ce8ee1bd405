// Package state owns a synced folder's own directory, DIR/.ferry: the
// config (which remote, namespace and root the folder syncs with, and the
// device id), and a small store holding the base version (the last one
// both sides agreed on), the stat cache, and cached objects.
//
// Nothing under .ferry is ever synced.
package state

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/atomicfile"
)

// ErrNoFolder is returned when a directory is not a synced folder.
var ErrNoFolder = errors.New("not a ferry folder (run ferry init)")

// Config is DIR/.ferry/config.
type Config struct {
	// Remote is where the folder syncs: a local store directory or a
	// quic://HOST:PORT/NAMESPACE URL.
	Remote    string `json:"remote"`
	Namespace string `json:"namespace"`
	Root      string `json:"root"`
	// Device is a short stable id for this folder's copy, used in
	// versions and in conflict copy names.
	Device string `json:"device"`
	// Fingerprint pins the server's certificate (SHA-256, hex).
	Fingerprint string    `json:"fingerprint,omitempty"`
	Created     time.Time `json:"created"`
	// CaseFold says the folder's filesystem folds case (macOS, Windows,
	// ext4 casefold): "README" and "readme" are one file there. Probed
	// at init, and again when the folder is found somewhere else
	// (Probed names the directory it was probed in).
	CaseFold bool   `json:"case_fold,omitempty"`
	Probed   string `json:"probed,omitempty"`
	// Path is where the folder was when Probed was taken. A folder found
	// under another directory (Probed) and another path is a copy (cp -a),
	// which gets a device id of its own; a folder moved (same directory,
	// new path) or restored in place (new directory, same path) keeps its.
	Path string `json:"path,omitempty"`
	// Mode is the folder's direction: "" (both) or "receive-only".
	Mode string `json:"mode,omitempty"`
}

// Folder is an open synced folder.
type Folder struct {
	Dir    string
	Config Config
	// CopiedFrom is the device id this folder had before it was found to
	// be a copy of another folder (and given its own), when that happened
	// at this open.
	CopiedFrom, CopiedFromPath string
	db                         *cas.DB
	cache                      *cas.Namespace
	kv                         *cas.KV
}

func stateDir(dir string) string { return filepath.Join(dir, index.StateDir) }

// NewDevice returns a fresh device id: 7 characters of base32, as
// Syncthing's short device ids.
func NewDevice() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return base32.StdEncoding.EncodeToString(b[:])[:7]
}

// Init makes DIR (when missing) and DIR/.ferry with cfg. It fails if DIR
// is already a folder.
func Init(dir string, cfg Config) (*Folder, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(stateDir(abs), "config")); err == nil {
		return nil, fmt.Errorf("init %s: already a ferry folder", abs)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("init %s: %w", abs, err)
	}
	if err := os.Mkdir(stateDir(abs), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("init %s: %w", abs, err)
	}
	if cfg.Device == "" {
		cfg.Device = NewDevice()
	}
	if err := validDevice(cfg.Device); err != nil {
		return nil, fmt.Errorf("init %s: %w", abs, err)
	}
	if cfg.Created.IsZero() {
		cfg.Created = time.Now().UTC()
	}
	f := &Folder{Dir: abs, Config: cfg}
	if err := f.openDB(true); err != nil {
		return nil, err
	}
	if err := f.probe(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Find opens the folder at dir, or at the nearest parent of dir that is
// one, as git finds its repository.
func Find(dir string) (*Folder, error) {
	root, err := FindRoot(dir)
	if err != nil {
		return nil, err
	}
	return Open(root)
}

// IsFolder reports whether dir is a folder's root.
func IsFolder(dir string) bool {
	_, err := os.Stat(filepath.Join(stateDir(dir), "config"))
	return err == nil
}

// FindRoot returns the absolute path of the folder at dir, or at the
// nearest parent of dir that is one.
func FindRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		if IsFolder(d) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s: %w", abs, ErrNoFolder)
		}
	}
}

// ParseConfig reads a folder's config file and checks what ferry acts
// on: the root's name.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := cas.ValidName(c.Root); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	// The device id goes into conflict copies' file names.
	if err := validDevice(c.Device); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// validDevice accepts what NewDevice makes and a little more: 1 to 64
// letters, digits, '-' and '_'.
func validDevice(d string) error {
	if d == "" || len(d) > 64 {
		return fmt.Errorf("device id %q: want 1 to 64 letters and digits", d)
	}
	for _, c := range d {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("device id %q: want 1 to 64 letters and digits", d)
		}
	}
	return nil
}

// Open opens the folder at dir.
func Open(dir string) (*Folder, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(stateDir(abs), "config"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", abs, ErrNoFolder)
	}
	if err != nil {
		return nil, err
	}
	f := &Folder{Dir: abs}
	if f.Config, err = ParseConfig(b); err != nil {
		return nil, fmt.Errorf("%s: %w", abs, err)
	}
	// The probe runs under the folder's lock: two processes that find a
	// copy at once must not give it two device ids.
	if err := f.openDB(false); err != nil {
		return nil, err
	}
	// Read again under the lock: the process that held it may have
	// changed the config.
	if b, err = os.ReadFile(filepath.Join(stateDir(abs), "config")); err == nil {
		f.Config, err = ParseConfig(b)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", abs, err)
	}
	if err := f.probe(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// LockWait is how long opening a folder waits for another ferry process
// working on it (a watch round, a push) before giving up.
var LockWait = 20 * time.Second

func (f *Folder) openDB(create bool) error {
	var db *cas.DB
	var err error
	// A watcher holds the folder only during its rounds, so a command run
	// beside it waits for the round to end rather than failing.
	for deadline, pause := time.Now().Add(LockWait), 10*time.Millisecond; ; pause = min(2*pause, 250*time.Millisecond) {
		db, err = cas.Open(filepath.Join(stateDir(f.Dir), "state"), cas.Options{Create: true, CacheSize: 64 << 20})
		if !errors.Is(err, cas.ErrLocked) || time.Now().After(deadline) {
			break
		}
		time.Sleep(pause)
	}
	if err != nil {
		if errors.Is(err, cas.ErrLocked) {
			return fmt.Errorf("%s: another ferry is working on this folder: %w", f.Dir, err)
		}
		return err
	}
	f.db = db
	if f.cache, err = db.Namespace("cache"); err != nil {
		return err
	}
	if f.kv, err = db.KV("folder"); err != nil {
		return err
	}
	return nil
}

// SaveConfig writes the config atomically.
func (f *Folder) SaveConfig() error {
	b, err := json.MarshalIndent(f.Config, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(stateDir(f.Dir), "config"), append(b, '\n'), 0o600)
}

// Token returns the token kept in .ferry/token, or "".
func (f *Folder) Token() string {
	b, err := os.ReadFile(filepath.Join(stateDir(f.Dir), "token"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// SetToken keeps the folder's server token in .ferry/token (mode 0600).
func (f *Folder) SetToken(token string) error {
	return WriteFileAtomic(filepath.Join(stateDir(f.Dir), "token"), []byte(token+"\n"), 0o600)
}

// Close releases the folder's store.
func (f *Folder) Close() error { return f.db.Close() }

// Cache is the folder's object cache: trees, file objects and versions it
// has written or read, so that diffs and status need no remote.
func (f *Folder) Cache() *cas.Namespace { return f.cache }

var keyBase = []byte("base")

// Base returns the base version, or the zero Ref before the first sync.
func (f *Folder) Base() (cas.Ref, error) {
	v, err := f.kv.Get(keyBase)
	if errors.Is(err, cas.ErrNotFound) {
		return cas.Ref{}, nil
	}
	if err != nil {
		return cas.Ref{}, err
	}
	if len(v) != 32 {
		return cas.Ref{}, fmt.Errorf("%w: base record", cas.ErrCorrupt)
	}
	return cas.Ref(v), nil
}

// SetBase records the base version durably.
func (f *Folder) SetBase(ref cas.Ref) error {
	b := f.kv.Batch()
	if err := b.Set(keyBase, ref[:]); err != nil {
		b.Close()
		return err
	}
	return b.Commit(true)
}

var keyParams = []byte("params")

// Params returns the chunk params the folder last saw from its remote
// (JSON), or nil: what scanning needs when the server cannot be reached.
func (f *Folder) Params() []byte {
	v, err := f.kv.Get(keyParams)
	if err != nil {
		return nil
	}
	return v
}

// SetParams keeps the remote's chunk params (JSON).
func (f *Folder) SetParams(p []byte) error {
	b := f.kv.Batch()
	if err := b.Set(keyParams, p); err != nil {
		b.Close()
		return err
	}
	return b.Commit(false)
}

// StatCache returns the folder's stat cache.
func (f *Folder) StatCache() *StatCache { return &StatCache{kv: f.kv} }

// WriteFileAtomic writes data to path durably and whole (see atomicfile).
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}
