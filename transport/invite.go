package transport

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// PermInvite is the permission of an invite's token: nothing but trading
// itself, once and before it expires, for a device token (see InviteInfo).
// An invite that leaks is dead after its first use, and soon anyway; the
// device token it becomes never leaves the device that redeemed it.
const PermInvite Perm = "invite"

// MaxInviteTTL bounds how long an invite waits to be redeemed.
const MaxInviteTTL = 30 * 24 * time.Hour

// InviteInfo describes an invite: who may join which root of a namespace,
// with what permission, until when.
type InviteInfo struct {
	ID        string   `cbor:"1,keyasint" json:"id"`
	Namespace string   `cbor:"2,keyasint" json:"namespace"`
	Root      string   `cbor:"3,keyasint" json:"root"`
	Perm      Perm     `cbor:"4,keyasint" json:"perm"` // of the device token it becomes
	By        string   `cbor:"5,keyasint" json:"by"`   // the inviting token's id
	Label     string   `cbor:"6,keyasint,omitempty" json:"label,omitempty"`
	Created   UnixNano `cbor:"7,keyasint" json:"created"`
	Expires   UnixNano `cbor:"8,keyasint" json:"expires"`
	// Used names the device token the invite became. A used invite is
	// kept until it expires, so that a second use is told why it fails.
	Used string `cbor:"9,keyasint,omitempty" json:"used,omitempty"`
}

// Expired reports whether the invite has expired at now.
func (i InviteInfo) Expired(now time.Time) bool { return At(now) >= i.Expires }

// ErrInviteUsed: the invite was redeemed already (or revoked).
var ErrInviteUsed = errors.New("the invite was used already or revoked")

func newTokenString() (string, []byte, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	token := tokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
	return token, tokenHash(token), nil
}

// createInvite makes an invite token for info (its ID, Created and
// Expires are filled here) and returns it: the only time it is seen.
func (t *Tokens) createInvite(info InviteInfo, now time.Time, ttl time.Duration) (string, InviteInfo, error) {
	token, h, err := newTokenString()
	if err != nil {
		return "", InviteInfo{}, err
	}
	now = now.UTC()
	if err := t.pruneInvites(now); err != nil {
		return "", InviteInfo{}, err
	}
	info.ID, info.Created, info.Expires = hex.EncodeToString(h[:6]), At(now), At(now.Add(ttl))
	rec := tokenRecord{ID: info.ID, Namespace: info.Namespace, Perm: PermInvite, Created: now, Label: "invite to " + info.Root, Invite: &info}
	if err := t.put(h, rec); err != nil {
		return "", InviteInfo{}, err
	}
	return token, info, nil
}

// pruneInvites forgets invites that have expired, used or not.
func (t *Tokens) pruneInvites(now time.Time) error {
	var dead [][]byte
	err := t.kv.Scan(nil, func(k, v []byte) error {
		var r tokenRecord
		if json.Unmarshal(v, &r) == nil && r.Invite != nil && r.Invite.Expired(now) {
			dead = append(dead, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil || len(dead) == 0 {
		return err
	}
	batch := t.kv.Batch()
	for _, k := range dead {
		if err := batch.Delete(k); err != nil {
			batch.Close()
			return err
		}
	}
	return batch.Commit(true)
}

// redeem trades the invite whose id is id for a new device token, in one
// batch: the invite is gone exactly when the device token exists, and of
// two devices redeeming one invite at once, one wins.
func (t *Tokens) redeem(id string, now time.Time, label string) (string, TokenInfo, InviteInfo, error) {
	t.redeemMu.Lock()
	defer t.redeemMu.Unlock()
	var key, raw []byte
	var rec tokenRecord
	err := t.kv.Scan(nil, func(k, v []byte) error {
		var r tokenRecord
		if json.Unmarshal(v, &r) == nil && r.ID == id && r.Invite != nil {
			key, raw, rec = append([]byte(nil), k...), append([]byte(nil), v...), r
		}
		return nil
	})
	if err != nil {
		return "", TokenInfo{}, InviteInfo{}, err
	}
	if key == nil || rec.Invite.Used != "" {
		return "", TokenInfo{}, InviteInfo{}, cas.Errorf(ErrInviteUsed, "%w: the invite was used already or revoked; ask for a new one", ErrAuth)
	}
	inv := *rec.Invite
	if inv.Expired(now) {
		return "", TokenInfo{}, InviteInfo{}, fmt.Errorf("%w: the invite expired at %s; ask for a new one", ErrAuth, inv.Expires.Time().UTC().Format(time.RFC3339))
	}
	token, h, err := newTokenString()
	if err != nil {
		return "", TokenInfo{}, InviteInfo{}, err
	}
	dev := tokenRecord{ID: hex.EncodeToString(h[:6]), Namespace: inv.Namespace, Perm: inv.Perm, Created: now.UTC(), Label: label}
	v, _ := json.Marshal(dev)
	used := rec
	used.Invite = &InviteInfo{}
	*used.Invite = inv
	used.Invite.Used = dev.ID
	u, _ := json.Marshal(used)
	batch := t.kv.Batch()
	if err := batch.Set(key, u); err != nil {
		batch.Close()
		return "", TokenInfo{}, InviteInfo{}, err
	}
	if err := batch.Set(h, v); err != nil {
		batch.Close()
		return "", TokenInfo{}, InviteInfo{}, err
	}
	// The mutex covers this server; the condition covers the others that
	// share the store's records.
	batch.Expect(key, raw)
	if err := batch.Commit(true); errors.Is(err, cas.ErrConflict) {
		return "", TokenInfo{}, InviteInfo{}, cas.Errorf(ErrInviteUsed, "%w: the invite was used already or revoked; ask for a new one", ErrAuth)
	} else if err != nil {
		return "", TokenInfo{}, InviteInfo{}, err
	}
	return token, dev.info(), inv, nil
}

// inviteCreate handles invite.create: a token invites a device to its
// namespace with at most its own permission, and never as an admin.
func (s *session) inviteCreate(req Request) (Response, error) {
	var resp Response
	if req.GraceNS == nil || *req.GraceNS <= 0 || time.Duration(*req.GraceNS) > MaxInviteTTL {
		return resp, fmt.Errorf("%w: an invite's ttl must be positive and at most %s", ErrProtocol, MaxInviteTTL)
	}
	perm, err := ParsePerm(req.Perm)
	if err != nil {
		return resp, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if perm == PermAdmin {
		return resp, fmt.Errorf("%w: an invite gives read or write, not admin", ErrPermission)
	}
	if !s.tok.Perm.Allows(perm) {
		return resp, fmt.Errorf("%w: the token allows %s and cannot invite with %s", ErrPermission, s.tok.Perm, perm)
	}
	if err := cas.ValidName(req.Root); err != nil {
		return resp, fmt.Errorf("%w: root %v", ErrProtocol, err)
	}
	info := InviteInfo{Namespace: s.ns.Name(), Root: req.Root, Perm: perm, By: s.tok.ID, Label: req.Label}
	token, created, err := s.srv.tokens.createInvite(info, s.srv.opts.Now(), time.Duration(*req.GraceNS))
	if err != nil {
		return resp, err
	}
	s.log.Info("invite created", "id", created.ID, "root", created.Root, "perm", created.Perm, "expires", created.Expires.Time().UTC())
	resp.Token, resp.Invite = token, &created
	return resp, nil
}

// inviteRedeem handles invite.redeem, the one request an invite's
// connection may make.
func (s *session) inviteRedeem(req Request) (Response, error) {
	var resp Response
	if s.tok.Invite == nil {
		return resp, fmt.Errorf("%w: not an invite", ErrPermission)
	}
	label := "invited by " + s.tok.Invite.By
	if req.Label != "" {
		label += ": " + req.Label
	}
	token, dev, inv, err := s.srv.tokens.redeem(s.tok.ID, s.srv.opts.Now(), label)
	if err != nil {
		return resp, err
	}
	s.log.Info("invite redeemed", "id", inv.ID, "device_token", dev.ID, "perm", dev.Perm)
	resp.Token, resp.Invite, resp.Tokens = token, &inv, []TokenInfo{dev}
	return resp, nil
}

// CreateInvite makes an invite to root of the connection's namespace:
// the invite's token, to pass to the new device, and its description.
func (c *Client) CreateInvite(ctx context.Context, root string, perm Perm, ttl time.Duration, label string) (string, InviteInfo, error) {
	resp, err := c.request(ctx, Request{Op: opInviteCreate, Root: root, Perm: string(perm), Label: label, GraceNS: ptr(int64(ttl))})
	if err != nil {
		return "", InviteInfo{}, err
	}
	if resp.Invite == nil || ValidToken(resp.Token) != nil {
		return "", InviteInfo{}, fmt.Errorf("%w: invite.create answered without an invite", ErrProtocol)
	}
	return resp.Token, *resp.Invite, nil
}

// Redeem trades the connection's invite token for a device token: the
// token, its description, and the invite's.
func (c *Client) Redeem(ctx context.Context, label string) (string, TokenInfo, InviteInfo, error) {
	resp, err := c.request(ctx, Request{Op: opInviteRedeem, Label: label})
	if err != nil {
		return "", TokenInfo{}, InviteInfo{}, err
	}
	if resp.Invite == nil || len(resp.Tokens) != 1 || ValidToken(resp.Token) != nil {
		return "", TokenInfo{}, InviteInfo{}, fmt.Errorf("%w: invite.redeem answered without a token", ErrProtocol)
	}
	return resp.Token, resp.Tokens[0], *resp.Invite, nil
}

// InviteLink is an invite's parts:
// quic://HOST:PORT/NS?invite=TOKEN&root=ROOT&fp=FP. The fingerprint is
// required: the new device pins it, so it never trusts on first use.
type InviteLink struct {
	Addr, Namespace, Root string
	Token                 string
	Fingerprint           string
}

// ParseInviteLink reads an invite.
func ParseInviteLink(s string) (InviteLink, error) {
	bad := fmt.Errorf("%q is not an invite (quic://HOST:PORT/NS?invite=...&root=...&fp=...; 'ferry invite' prints one)", s)
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "quic" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return InviteLink{}, bad
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil || len(q["invite"]) != 1 || len(q["root"]) != 1 || len(q["fp"]) != 1 || len(q) != 3 {
		return InviteLink{}, bad
	}
	addr, ns, err := ParseURL((&url.URL{Scheme: "quic", Host: u.Host, Path: u.Path}).String())
	if err != nil || ns == "" {
		return InviteLink{}, bad
	}
	l := InviteLink{Addr: addr, Namespace: ns, Root: q.Get("root"), Token: q.Get("invite")}
	if err := ValidToken(l.Token); err != nil {
		return InviteLink{}, fmt.Errorf("invite: %w", err)
	}
	if err := cas.ValidName(l.Root); err != nil {
		return InviteLink{}, fmt.Errorf("invite: root %w", err)
	}
	if l.Fingerprint, err = NormalizeFingerprint(q.Get("fp")); err != nil {
		return InviteLink{}, fmt.Errorf("invite: %w", err)
	}
	return l, nil
}

// String is the invite.
func (l InviteLink) String() string {
	q := url.Values{"invite": {l.Token}, "root": {l.Root}, "fp": {l.Fingerprint}}
	return (&url.URL{Scheme: "quic", Host: l.Addr, Path: "/" + l.Namespace, RawQuery: q.Encode()}).String()
}

// URL is the remote URL of the invite's namespace.
func (l InviteLink) URL() string {
	return (&url.URL{Scheme: "quic", Host: l.Addr, Path: "/" + l.Namespace}).String()
}
