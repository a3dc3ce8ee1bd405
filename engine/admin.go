package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/transport"
)

// ServerRef says how to reach a server as its admin: a URL and
// credentials, or the server's data directory on this machine (which holds
// the address, the certificate's fingerprint and the admin token).
type ServerRef struct {
	URL  string
	Data string
	Credentials
}

// serveInfo is what a running server writes to DATA/serve.json for
// admin commands on its machine.
type serveInfo struct {
	Addr        string `json:"addr"`
	Fingerprint string `json:"fingerprint"`
}

// parseServeInfo reads serve.json: a UDP address with a port, and a
// certificate fingerprint.
func parseServeInfo(b []byte) (serveInfo, error) {
	var info serveInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return serveInfo{}, fmt.Errorf("serve.json: %w", err)
	}
	if _, port, err := net.SplitHostPort(info.Addr); err != nil || port == "" {
		return serveInfo{}, fmt.Errorf("serve.json: address %q: want HOST:PORT", info.Addr)
	}
	fp, err := transport.NormalizeFingerprint(info.Fingerprint)
	if err != nil {
		return serveInfo{}, fmt.Errorf("serve.json: %w", err)
	}
	info.Fingerprint = fp
	return info, nil
}

// dialAdmin connects to a server with an admin token.
func dialAdmin(ctx context.Context, r ServerRef) (*transport.Client, error) {
	return dialAdminIn(ctx, r, "")
}

// dialAdminIn is dialAdmin with a connection to namespace (empty: the
// URL's): an admin token reads a namespace as its own tokens do.
func dialAdminIn(ctx context.Context, r ServerRef, namespace string) (*transport.Client, error) {
	if r.Data != "" {
		b, err := os.ReadFile(filepath.Join(r.Data, "serve.json"))
		if err != nil {
			return nil, fmt.Errorf("server data %s: %w (is ferry serve running?)", r.Data, err)
		}
		info, err := parseServeInfo(b)
		if err != nil {
			return nil, fmt.Errorf("server data %s: %w", r.Data, err)
		}
		if !cas.InUse(filepath.Join(r.Data, "store")) {
			// Dialling the address a stopped server left would wait out
			// the handshake timeout for nothing.
			return nil, cas.Errorf(transport.ErrUnavailable, "server data %s: the server is not running (its serve.json is from one that stopped; start ferry serve --data %s)", r.Data, r.Data)
		}
		if r.URL == "" {
			r.URL = "quic://" + info.Addr
		}
		if r.Fingerprint == "" {
			r.Fingerprint = info.Fingerprint
		}
		if r.Token == "" {
			tok, err := os.ReadFile(filepath.Join(r.Data, "admin.token"))
			if err != nil {
				return nil, err
			}
			r.Token = strings.TrimSpace(string(tok))
		}
	}
	if r.URL == "" {
		return nil, errors.New("which server? give --server quic://HOST:PORT or --data DIR")
	}
	addr, ns, err := transport.ParseURL(r.URL)
	if err != nil {
		return nil, err
	}
	if namespace != "" {
		ns = namespace
	}
	if r.Fingerprint == "" {
		return nil, fmt.Errorf("server %s: give its certificate fingerprint (--fingerprint or FERRY_FINGERPRINT): admin commands do not trust on first use", r.URL)
	}
	return transport.Dial(ctx, addr, ns, transport.ClientOptions{Token: r.Token, Fingerprint: r.Fingerprint, IdleTimeout: r.IdleTimeout, Version: "ferry admin"})
}

// TokenCreated is a new token: the only time it is shown.
type TokenCreated struct {
	Token string              `json:"token"`
	Info  transport.TokenInfo `json:"info"`
}

// CheckPerm checks a permission's name (read, write or admin).
func CheckPerm(perm string) error {
	_, err := transport.ParsePerm(perm)
	return err
}

// TokenCreate makes a token for a namespace with a permission.
func TokenCreate(ctx context.Context, r ServerRef, namespace, perm, label string) (*TokenCreated, error) {
	p, err := transport.ParsePerm(perm)
	if err != nil {
		return nil, err
	}
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	tok, info, err := c.CreateToken(ctx, namespace, p, label)
	if err != nil {
		return nil, err
	}
	return &TokenCreated{Token: tok, Info: info}, nil
}

// TokenList lists the tokens an admin can see.
func TokenList(ctx context.Context, r ServerRef) ([]transport.TokenInfo, error) {
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Tokens(ctx)
}

// TokenRevoke revokes a token by id.
func TokenRevoke(ctx context.Context, r ServerRef, id string) error {
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.RevokeToken(ctx, id)
}

// AdminClients lists connected clients.
func AdminClients(ctx context.Context, r ServerRef) ([]transport.ClientInfo, error) {
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Clients(ctx)
}

// RootSummary is one root on a server.
type RootSummary struct {
	transport.RootInfo
	Head    string    `json:"head"`
	Updated time.Time `json:"updated"`
}

// AdminRoots lists every root with its head.
func AdminRoots(ctx context.Context, r ServerRef) ([]RootSummary, error) {
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	roots, err := c.AdminRoots(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RootSummary, 0, len(roots))
	for _, ri := range roots {
		rs := RootSummary{RootInfo: ri, Updated: ri.Updated.Time().UTC()}
		if len(ri.Head) == 32 {
			rs.Head = fmt.Sprintf("%x", ri.Head)
		}
		out = append(out, rs)
	}
	return out, nil
}

// HistoryLine is one version in an admin history listing.
type HistoryLine struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
}

// AdminHistory lists the history of NS/ROOT.
// RootDeleted says what admin root delete removed.
type RootDeleted struct {
	Namespace string `json:"namespace"`
	Root      string `json:"root"`
	Head      string `json:"head"`
	Versions  int    `json:"versions"`
}

// AdminDeleteRoot deletes a root of a namespace (NAMESPACE/ROOT): its
// head, history and tags. What only it kept is collected by a later gc,
// after the grace period. A push that moves the head meanwhile makes the
// delete fail (run it again to delete that too).
func AdminDeleteRoot(ctx context.Context, r ServerRef, nsRoot string) (*RootDeleted, error) {
	ns, root, ok := strings.Cut(nsRoot, "/")
	if !ok || ns == "" || root == "" {
		return nil, fmt.Errorf("root delete %q: want NAMESPACE/ROOT", nsRoot)
	}
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	roots, err := c.AdminRoots(ctx)
	if err != nil {
		return nil, err
	}
	for _, ri := range roots {
		if ri.Namespace != ns || ri.Root != root {
			continue
		}
		head, err := cas.ParseRef(fmt.Sprintf("%x", ri.Head))
		if err != nil {
			return nil, err
		}
		if err := c.AdminDeleteRoot(ctx, ns, root, head); err != nil {
			return nil, fmt.Errorf("root delete %s: %w", nsRoot, err)
		}
		return &RootDeleted{Namespace: ns, Root: root, Head: head.String(), Versions: ri.Versions}, nil
	}
	return nil, cas.Errorf(cas.ErrNotFound, "root delete: the server has no root %s", nsRoot)
}

func AdminHistory(ctx context.Context, r ServerRef, nsRoot string) ([]HistoryLine, error) {
	ns, root, ok := strings.Cut(nsRoot, "/")
	if !ok {
		return nil, fmt.Errorf("history %q: want NAMESPACE/ROOT", nsRoot)
	}
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	hist, err := c.AdminHistory(ctx, ns, root)
	if err != nil {
		return nil, err
	}
	out := []HistoryLine{}
	for _, h := range hist {
		out = append(out, HistoryLine{Seq: h.Seq, Time: h.Time, Version: h.Ref.String()})
	}
	return out, nil
}

// QuotaInfo is a namespace's usage and quota.
type QuotaInfo struct {
	Namespace string `json:"namespace"`
	Used      int64  `json:"used_bytes"`
	Limit     int64  `json:"quota_bytes"` // 0: none
}

// AdminQuota reads a namespace's usage and quota, and sets the quota when
// set is not nil (0 removes it).
func AdminQuota(ctx context.Context, r ServerRef, namespace string, set *int64) (*QuotaInfo, error) {
	c, err := dialAdmin(ctx, r)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	used, limit, err := c.AdminQuota(ctx, namespace, set)
	if err != nil {
		return nil, fmt.Errorf("quota %s: %w", namespace, err)
	}
	return &QuotaInfo{Namespace: namespace, Used: used, Limit: limit}, nil
}
