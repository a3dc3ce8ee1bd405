package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"github.com/ferry-sync/ferry/transport"
)

// MaxInviteTTL bounds how long an invite waits to be used.
const MaxInviteTTL = transport.MaxInviteTTL

// CheckInvite checks an invite string's form, saying nothing of whether
// the server still honours it.
func CheckInvite(s string) error {
	_, err := transport.ParseInviteLink(s)
	return err
}

// InviteOptions say whom an invite lets in, and for how long it waits.
type InviteOptions struct {
	Options
	Perm string        // read or write (default write)
	TTL  time.Duration // default 24h
	// Address is the server's HOST:PORT as the new device reaches it
	// (default: the one this folder uses).
	Address string
	Label   string
}

// InviteResult is a new invite: it carries a token, so it is shown only
// now.
type InviteResult struct {
	Invite string               `json:"invite"`
	Info   transport.InviteInfo `json:"info"`
}

// Invite makes an invite to the folder's root: one string that holds the
// server's address, the namespace, the root, the server's fingerprint and
// a one-use token that `ferry init DIR --invite STRING` trades for a device
// token of its own.
func Invite(ctx context.Context, dir string, o InviteOptions) (*InviteResult, error) {
	if o.Perm == "" {
		o.Perm = string(transport.PermWrite)
	}
	if o.TTL == 0 {
		o.TTL = 24 * time.Hour
	}
	if o.TTL < 0 || o.TTL > transport.MaxInviteTTL {
		return nil, fmt.Errorf("invite: --ttl must be positive and at most %s", transport.MaxInviteTTL)
	}
	if o.Address != "" {
		if _, _, err := net.SplitHostPort(o.Address); err != nil {
			return nil, fmt.Errorf("invite: --address %q: want HOST:PORT", o.Address)
		}
	}
	s, err := open(ctx, dir, o.Options)
	if err != nil {
		return nil, err
	}
	defer s.close()
	c, err := s.server()
	if err != nil {
		return nil, fmt.Errorf("invite: a folder of a local store needs no invite: init the other folder with --remote %s", s.f.Config.Remote)
	}
	addr, ns, err := transport.ParseURL(s.f.Config.Remote)
	if err != nil {
		return nil, err
	}
	if o.Address != "" {
		addr = o.Address
	}
	token, info, err := c.CreateInvite(ctx, s.root(), transport.Perm(o.Perm), o.TTL, o.Label)
	if err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	l := transport.InviteLink{Addr: addr, Namespace: ns, Root: info.Root, Token: token, Fingerprint: s.f.Config.Fingerprint}
	return &InviteResult{Invite: l.String(), Info: info}, nil
}

// redeemInvite trades an invite for a device token, after the checks that
// need no server: an invite is used once, so init must not fail after it
// for a reason it could have seen before. The device token is written to
// .ferry/token at once, so a failure later loses nothing (see
// keptTokenHint).
func redeemInvite(ctx context.Context, abs string, o *InitOptions) error {
	l, err := transport.ParseInviteLink(o.Invite)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if o.Remote != "" || o.Root != "" || o.NewRoot {
		return fmt.Errorf("init: --invite names the remote and the root; give no --remote, --root or --new-root")
	}
	if state.IsFolder(abs) {
		return fmt.Errorf("init %s: already a ferry folder", abs)
	}
	// Making the state directory first proves the folder writable.
	sd := filepath.Join(abs, index.StateDir)
	if err := os.MkdirAll(sd, 0o700); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	c, err := transport.Dial(ctx, l.Addr, l.Namespace, transport.ClientOptions{Token: l.Token, Fingerprint: l.Fingerprint, Version: "ferry init", Logger: o.Logger, IdleTimeout: o.IdleTimeout})
	if err != nil {
		os.Remove(sd) // only when init made it, and it is still empty
		return fmt.Errorf("init: redeeming the invite: %w", err)
	}
	defer c.Close()
	host, _ := os.Hostname()
	token, _, inv, err := c.Redeem(ctx, host+":"+abs)
	if err != nil {
		os.Remove(sd)
		return fmt.Errorf("init: redeeming the invite: %w", err)
	}
	if err := state.WriteFileAtomic(filepath.Join(sd, "token"), []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("init: the invite is used, and its device token could not be kept (%v); it is %s", err, token)
	}
	o.Remote, o.Root = l.URL(), inv.Root
	o.Token, o.TokenExplicit, o.Fingerprint = token, true, l.Fingerprint
	o.invited = true
	return nil
}

// keptTokenHint says how to finish an init that failed after its invite
// was redeemed: the device token is in .ferry/token.
func keptTokenHint(abs string, o InitOptions, err error) error {
	tf := filepath.Join(abs, index.StateDir, "token")
	return fmt.Errorf("%w\n(the invite is used; its device token is kept in %s: finish with 'ferry init %s --remote %s --root %s --fingerprint %s --token-file %s')",
		err, tf, abs, o.Remote, o.Root, o.Fingerprint, tf)
}
