package transport

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// PermShare is the permission of a share link's token: nothing but
// reading the one file or directory the share names (see ShareInfo).
const PermShare Perm = "share"

// ShareInfo describes a share: a read-only link to one file or directory
// of a namespace, until it expires or is revoked.
type ShareInfo struct {
	ID        string   `cbor:"1,keyasint" json:"id"`
	Namespace string   `cbor:"2,keyasint" json:"namespace"`
	Ref       []byte   `cbor:"3,keyasint" json:"ref"`
	Kind      string   `cbor:"4,keyasint" json:"kind"` // file or dir
	Name      string   `cbor:"5,keyasint" json:"name"`
	Size      int64    `cbor:"6,keyasint" json:"size"`
	Root      string   `cbor:"7,keyasint,omitempty" json:"root,omitempty"`
	Path      string   `cbor:"8,keyasint,omitempty" json:"path,omitempty"`
	Version   string   `cbor:"9,keyasint,omitempty" json:"version,omitempty"`
	Created   UnixNano `cbor:"10,keyasint" json:"created"`
	Expires   UnixNano `cbor:"11,keyasint" json:"expires"`
}

// Expired reports whether the share has expired at now.
func (s ShareInfo) Expired(now time.Time) bool { return At(now) >= s.Expires }

// createShare makes a share token for info (its ID, Created and Expires
// are filled here) and returns the token: the only time it is seen.
func (t *Tokens) createShare(info ShareInfo, ttl time.Duration) (string, ShareInfo, error) {
	token, h, err := newTokenString()
	if err != nil {
		return "", ShareInfo{}, err
	}
	now := t.now().UTC()
	info.ID, info.Created, info.Expires = hex.EncodeToString(h[:6]), At(now), At(now.Add(ttl))
	rec := tokenRecord{ID: info.ID, Namespace: info.Namespace, Perm: PermShare, Created: now, Label: "share " + info.Name, Share: &info}
	if err := t.put(h, rec); err != nil {
		return "", ShareInfo{}, err
	}
	return token, info, nil
}

func (t *Tokens) put(key []byte, rec tokenRecord) error {
	v, _ := json.Marshal(rec)
	batch := t.kv.Batch()
	if err := batch.Set(key, v); err != nil {
		batch.Close()
		return err
	}
	return batch.Commit(true)
}

// Shares lists the namespace's shares (all namespaces for
// AllNamespaces), expired ones included.
func (t *Tokens) Shares(namespace string) ([]ShareInfo, error) {
	var out []ShareInfo
	err := t.kv.Scan(nil, func(_, v []byte) error {
		var rec tokenRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("%w: token record: %v", cas.ErrCorrupt, err)
		}
		if rec.Share != nil && (namespace == AllNamespaces || rec.Namespace == namespace) {
			out = append(out, *rec.Share)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b ShareInfo) int { return int(a.Created - b.Created) })
	return out, err
}

// SharePins returns the refs the namespace's unexpired shares keep from
// garbage collection.
func (t *Tokens) SharePins(namespace string, now time.Time) ([]cas.Ref, error) {
	shares, err := t.Shares(namespace)
	if err != nil {
		return nil, err
	}
	var out []cas.Ref
	for _, s := range shares {
		if !s.Expired(now) {
			if r, err := refFromWire(s.Ref); err == nil {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// updateShare changes a share of namespace by id: a new expiry, or
// (expires zero) removal.
func (t *Tokens) updateShare(namespace, id string, expires time.Time) (ShareInfo, error) {
	var key []byte
	var rec tokenRecord
	err := t.kv.Scan(nil, func(k, v []byte) error {
		var r tokenRecord
		if json.Unmarshal(v, &r) == nil && r.ID == id && r.Share != nil && r.Namespace == namespace {
			key, rec = append([]byte(nil), k...), r
		}
		return nil
	})
	if err != nil {
		return ShareInfo{}, err
	}
	if key == nil {
		return ShareInfo{}, fmt.Errorf("share %s: %w", id, cas.ErrNotFound)
	}
	if expires.IsZero() {
		batch := t.kv.Batch()
		if err := batch.Delete(key); err != nil {
			batch.Close()
			return ShareInfo{}, err
		}
		return *rec.Share, batch.Commit(true)
	}
	rec.Share.Expires = At(expires)
	return *rec.Share, t.put(key, rec)
}

// shareAllows reports whether every ref is reachable from the session's
// share: the share's object, and what it names (trees, file lists,
// chunks). The set is walked once per session.
func (s *session) shareAllows(ctx context.Context, refs []cas.Ref) error {
	share := s.tok.Share
	if share == nil {
		return fmt.Errorf("%w: not a share", ErrPermission)
	}
	if share.Expired(s.srv.opts.Now()) {
		return fmt.Errorf("%w: the share link expired", ErrAuth)
	}
	s.shareMu.Lock()
	defer s.shareMu.Unlock()
	if s.shareSet == nil {
		root, err := refFromWire(share.Ref)
		if err != nil {
			return err
		}
		set := cas.RefSet{}
		if err := reach(ctx, s.ns, root, set, 0); err != nil {
			return fmt.Errorf("share %s: %w", share.ID, err)
		}
		s.shareSet = set
	}
	for _, r := range refs {
		if !s.shareSet.Has(r) {
			return fmt.Errorf("%w: %s is not part of the share", ErrPermission, r.Short())
		}
	}
	return nil
}

// reach adds ref and everything it names to set.
func reach(ctx context.Context, g cas.Getter, ref cas.Ref, set cas.RefSet, depth int) error {
	if set.Has(ref) {
		return nil
	}
	if depth > 64 {
		return fmt.Errorf("%w: objects nest too deep", index.ErrMalformed)
	}
	b, err := g.Get(ctx, ref)
	if err != nil {
		return err
	}
	set.Add(ref)
	typ, err := index.TypeOf(b)
	if err != nil {
		return err
	}
	switch typ {
	case index.TypeTree:
		t, err := index.DecodeTree(b)
		if err != nil {
			return err
		}
		for _, e := range t.Entries {
			if e.Kind == index.KindFile || e.Kind == index.KindDir {
				if err := reach(ctx, g, e.Ref, set, depth+1); err != nil {
					return err
				}
			}
		}
	case index.TypeFile:
		f, err := index.DecodeFile(b)
		if err != nil {
			return err
		}
		for _, c := range f.Chunks {
			set.Add(c.Ref)
		}
		for _, p := range f.Parts {
			if err := reach(ctx, g, p.Ref, set, depth+1); err != nil {
				return err
			}
		}
	default:
		return errors.New("a share names a file or a directory")
	}
	return nil
}

// CreateShare makes a share link's token for an object of the namespace
// (a file or tree ref), valid for ttl.
func (c *Client) CreateShare(ctx context.Context, info ShareInfo, ttl time.Duration) (string, ShareInfo, error) {
	resp, err := c.request(ctx, Request{Op: opShareCreate, Share: &info, GraceNS: ptr(int64(ttl))})
	if err != nil {
		return "", ShareInfo{}, err
	}
	if resp.Share == nil || resp.Token == "" {
		return "", ShareInfo{}, fmt.Errorf("%w: share.create answered without a share", ErrProtocol)
	}
	return resp.Token, *resp.Share, nil
}

// Shares lists the namespace's shares.
func (c *Client) Shares(ctx context.Context) ([]ShareInfo, error) {
	resp, err := c.request(ctx, Request{Op: opShareList})
	return resp.Shares, err
}

// UpdateShare extends a share to expire ttl from now, or revokes it
// (ttl 0).
func (c *Client) UpdateShare(ctx context.Context, id string, ttl time.Duration) (ShareInfo, error) {
	resp, err := c.request(ctx, Request{Op: opShareUpdate, ID: id, GraceNS: ptr(int64(ttl))})
	if err != nil {
		return ShareInfo{}, err
	}
	if resp.Share == nil {
		return ShareInfo{}, fmt.Errorf("%w: share.update answered without a share", ErrProtocol)
	}
	return *resp.Share, nil
}

// ShareInfo returns what a share link's connection may read.
func (c *Client) ShareInfo(ctx context.Context) (ShareInfo, error) {
	resp, err := c.request(ctx, Request{Op: opShareInfo})
	if err != nil {
		return ShareInfo{}, err
	}
	if resp.Share == nil {
		return ShareInfo{}, fmt.Errorf("%w: share.info answered without a share", ErrProtocol)
	}
	if err := resp.Share.checkFromServer(); err != nil {
		return ShareInfo{}, err
	}
	return *resp.Share, nil
}

// checkFromServer refuses a share description a client must not act on:
// its name is where `ferry get` writes, so it must be one plain name.
func (s ShareInfo) checkFromServer() error {
	if err := index.ValidName(s.Name); err != nil {
		return fmt.Errorf("%w: the share's name: %v", ErrProtocol, err)
	}
	if s.Kind != "file" && s.Kind != "dir" {
		return fmt.Errorf("%w: a share of kind %q", ErrProtocol, s.Kind)
	}
	if _, err := refFromWire(s.Ref); err != nil {
		return err
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// ShareLink is a share link's parts: quic://HOST:PORT/NS?share=TOKEN&fp=FP.
type ShareLink struct {
	Addr, Namespace string
	Token           string
	Fingerprint     string // may be empty: the client's pin decides
}

// ParseShareLink reads a share link.
func ParseShareLink(link string) (ShareLink, error) {
	bad := fmt.Errorf("%q is not a share link (quic://HOST:PORT/NS?share=...&fp=...)", link)
	u, err := url.Parse(link)
	if err != nil || u.Scheme != "quic" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return ShareLink{}, bad
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil || len(q["share"]) != 1 || len(q["fp"]) > 1 {
		return ShareLink{}, bad
	}
	addr, ns, err := ParseURL((&url.URL{Scheme: "quic", Host: u.Host, Path: u.Path}).String())
	if err != nil {
		return ShareLink{}, bad
	}
	l := ShareLink{Addr: addr, Namespace: ns, Token: q.Get("share"), Fingerprint: q.Get("fp")}
	if err := ValidToken(l.Token); err != nil {
		return ShareLink{}, fmt.Errorf("%q: %w", link, err)
	}
	if l.Fingerprint != "" {
		if l.Fingerprint, err = NormalizeFingerprint(l.Fingerprint); err != nil {
			return ShareLink{}, fmt.Errorf("%q: %w", link, err)
		}
	}
	return l, nil
}

// String is the link.
func (l ShareLink) String() string {
	q := url.Values{"share": {l.Token}}
	if l.Fingerprint != "" {
		q.Set("fp", l.Fingerprint)
	}
	return (&url.URL{Scheme: "quic", Host: l.Addr, Path: "/" + l.Namespace, RawQuery: q.Encode()}).String()
}
