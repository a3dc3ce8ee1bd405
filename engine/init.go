package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/state"
	"github.com/ferry-sync/ferry/transport"
)

// ErrChooseRoot: the remote has several roots and init was not told which.
var ErrChooseRoot = errors.New("choose a root")

// ErrRootExists: --new-root named a root the remote already has.
var ErrRootExists = errors.New("the root exists")

// InitOptions are what init takes.
type InitOptions struct {
	Remote    string
	Namespace string
	// Root names the root to join. Empty: the remote's only root, or, when
	// it has none, a new one named after the folder; with several, init
	// refuses and lists them.
	Root string
	// NewRoot makes a new root (Root, or the folder's base name), which
	// must not exist yet.
	NewRoot bool
	// Mode is the folder's direction (default both).
	Mode Mode
	// Invite is what `ferry invite` printed on another device: it names
	// the remote, the root and the fingerprint, and is traded for this
	// device's own token. Remote and Root must then be empty.
	Invite  string
	invited bool
	// Credentials for a server: the token is kept in .ferry/token (mode
	// 0600), the fingerprint pinned in .ferry/config. Without a
	// fingerprint, the server's is trusted on first use, with a warning.
	Credentials
	Logger *slog.Logger
}

// InitResult describes a new folder.
type InitResult struct {
	Dir    string `json:"dir"`
	Remote string `json:"remote"`
	Root   string `json:"root"`
	// RootFrom says how the root was chosen: "given", "only" (the remote's
	// only root), or "new".
	RootFrom    string   `json:"root_from"`
	Device      string   `json:"device"`
	Head        string   `json:"head,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
}

// Init makes dir a synced folder of the remote, making the folder and (for
// a local store) the store when they do not exist. A server is contacted
// first, so a wrong token or fingerprint fails here, and so is the list of
// its roots: forgetting --root on a second device must not make a new,
// empty root that then has "nothing to pull".
func Init(ctx context.Context, dir string, o InitOptions) (*InitResult, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if o.Root != "" {
		if err := cas.ValidName(o.Root); err != nil {
			return nil, fmt.Errorf("init: root %w", err)
		}
	}
	if outer, err := state.FindRoot(filepath.Dir(abs)); err == nil {
		return nil, fmt.Errorf("init: %s is inside the folder %s: %w", abs, outer, ErrNested)
	}
	if o.Invite != "" {
		if err := redeemInvite(ctx, abs, &o); err != nil {
			return nil, err
		}
		res, err := initFolder(ctx, abs, o)
		if err != nil {
			return nil, keptTokenHint(abs, o, err)
		}
		return res, nil
	}
	return initFolder(ctx, abs, o)
}

func initFolder(ctx context.Context, abs string, o InitOptions) (*InitResult, error) {
	var err error
	remoteURL := o.Remote
	res := &InitResult{Dir: abs}
	ro := RemoteOptions{Credentials: o.Credentials, Create: true, Logger: o.Logger}
	if IsLocal(remoteURL) {
		if remoteURL, err = filepath.Abs(remoteURL); err != nil {
			return nil, err
		}
		if rel, err := filepath.Rel(abs, remoteURL); err == nil && !strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("init: the store %s is inside the folder %s; put it outside", remoteURL, abs)
		}
		if err := StoreOutsideFolders(remoteURL); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	} else {
		ro.FirstUse = func(fp string) error {
			res.Fingerprint = fp
			res.Warnings = append(res.Warnings, fmt.Sprintf("trusting server certificate %s on first use; compare it with what 'ferry serve' printed", fp))
			return nil
		}
		if o.Fingerprint != "" {
			if res.Fingerprint, err = transport.NormalizeFingerprint(o.Fingerprint); err != nil {
				return nil, err
			}
		}
	}
	res.Remote = remoteURL
	r, err := OpenRemote(ctx, remoteURL, o.Namespace, ro)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if res.Root, res.RootFrom, err = chooseRoot(ctx, r, abs, o); err != nil {
		return nil, err
	}
	mode := string(o.Mode)
	if o.Mode == ModeBoth {
		mode = ""
	}
	f, err := state.Init(abs, state.Config{Remote: remoteURL, Namespace: o.Namespace, Root: res.Root, Fingerprint: res.Fingerprint, Mode: mode})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if o.Token != "" && !IsLocal(remoteURL) {
		if err := f.SetToken(o.Token); err != nil {
			return nil, err
		}
	}
	res.Device = f.Config.Device
	if h, err := r.Head(ctx, res.Root); err == nil {
		res.Head = h.String()
	}
	return res, nil
}

// chooseRoot picks the root a new folder joins, by the rule in
// InitOptions.Root.
func chooseRoot(ctx context.Context, r Remote, abs string, o InitOptions) (root, from string, err error) {
	roots, err := r.Roots(ctx)
	if err != nil {
		return "", "", fmt.Errorf("init: listing the remote's roots: %w", err)
	}
	has := func(name string) bool {
		for _, x := range roots {
			if x == name {
				return true
			}
		}
		return false
	}
	switch {
	case o.invited:
		// The inviting device named its root, which it may not have
		// pushed yet.
		if has(o.Root) {
			return o.Root, "invite", nil
		}
		return o.Root, "new", nil
	case o.NewRoot:
		root = o.Root
		if root == "" {
			root = sanitizeRoot(filepath.Base(abs))
		}
		if has(root) {
			return "", "", cas.Errorf(ErrRootExists, "init: the remote already has a root %q: --root %s joins it, --new-root --root NAME makes another", root, root)
		}
		return root, "new", nil
	case o.Root != "":
		if has(o.Root) {
			return o.Root, "given", nil
		}
		if len(roots) > 0 {
			// A typo must not start a new history beside the real one.
			return "", "", cas.Errorf(ErrChooseRoot, "init: the remote has no root %q; it has %s. Join one with --root NAME, or make %q with --new-root", o.Root, strings.Join(quoteAll(roots), ", "), o.Root)
		}
		return o.Root, "new", nil
	case len(roots) == 1:
		return roots[0], "only", nil
	case len(roots) > 1:
		return "", "", cas.Errorf(ErrChooseRoot, "init: the remote has %d roots: %s. Choose one with --root NAME, or make a new one with --new-root", len(roots), strings.Join(quoteAll(roots), ", "))
	}
	return sanitizeRoot(filepath.Base(abs)), "new", nil
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("%q", n)
	}
	return out
}
