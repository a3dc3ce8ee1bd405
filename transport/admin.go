package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// Clients lists the server's connected clients (admin).
func (c *Client) Clients(ctx context.Context) ([]ClientInfo, error) {
	resp, err := c.request(ctx, Request{Op: opAdminClients})
	return resp.Clients, err
}

// AdminRoots lists every root the token can see, with its head (admin).
func (c *Client) AdminRoots(ctx context.Context) ([]RootInfo, error) {
	resp, err := c.request(ctx, Request{Op: opAdminRoots})
	return resp.RootsOf, err
}

// AdminDeleteRoot deletes a root of any namespace (admin), if its head is
// still head.
func (c *Client) AdminDeleteRoot(ctx context.Context, namespace, root string, head cas.Ref) error {
	_, err := c.request(ctx, Request{Op: opAdminRootDel, Namespace: namespace, Root: root, Old: head[:]})
	return err
}

// AdminHistory lists the history of a root of any namespace (admin).
func (c *Client) AdminHistory(ctx context.Context, namespace, root string) ([]cas.HistoryEntry, error) {
	return c.history(ctx, opAdminHistory, namespace, root)
}

// CreateToken makes a token (admin). The token is returned only here.
func (c *Client) CreateToken(ctx context.Context, namespace string, perm Perm, label string) (string, TokenInfo, error) {
	resp, err := c.request(ctx, Request{Op: opTokenCreate, Namespace: namespace, Perm: string(perm), Label: label})
	if err != nil {
		return "", TokenInfo{}, err
	}
	if len(resp.Tokens) != 1 || resp.Token == "" {
		return "", TokenInfo{}, fmt.Errorf("%w: token.create answered without a token", ErrProtocol)
	}
	return resp.Token, resp.Tokens[0], nil
}

// Tokens lists tokens (admin); never the tokens themselves.
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	resp, err := c.request(ctx, Request{Op: opTokenList})
	return resp.Tokens, err
}

// RevokeToken revokes a token by id (admin); its connections are closed.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.request(ctx, Request{Op: opTokenRevoke, ID: id})
	return err
}

// HeadEvent is a head change a subscription reports.
type HeadEvent struct {
	Root string
	Ref  cas.Ref
	Time time.Time
}

// Subscribe reports head changes of the given roots (all when none)
// until ctx ends or the connection fails; the returned function gives the
// error that ended it. When it returns, the subscription is in place.
func (c *Client) Subscribe(ctx context.Context, roots []string) (<-chan HeadEvent, func() error, error) {
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, c.connErr(err)
	}
	if _, err := st.Write([]byte{kindSubscribe}); err != nil {
		return nil, nil, c.connErr(err)
	}
	if err := writeMessage(st, Request{Roots: roots}); err != nil {
		return nil, nil, c.connErr(err)
	}
	st.Close() // the request is all we send
	var first Response
	if err := readMessage(st, &first); err != nil {
		return nil, nil, c.connErr(err)
	}
	if err := fromWire(first.Err, "", cas.Ref{}); err != nil {
		return nil, nil, err
	}
	events := make(chan HeadEvent, 16)
	var end error
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	go func() {
		defer close(done)
		defer close(events)
		defer stop()
		for {
			var resp Response
			if err := readMessage(st, &resp); err != nil {
				if ctx.Err() != nil {
					end = ctx.Err()
				} else {
					end = c.connErr(err)
				}
				return
			}
			if resp.Err != nil {
				end = fromWire(resp.Err, "", cas.Ref{})
				return
			}
			if resp.Event == nil {
				continue
			}
			r, err := refFromWire(resp.Event.Ref)
			if err != nil {
				end = err
				return
			}
			select {
			case events <- HeadEvent{Root: resp.Event.Root, Ref: r, Time: time.Unix(0, resp.Event.Time)}:
			case <-ctx.Done():
				end = ctx.Err()
				return
			}
		}
	}()
	return events, func() error { <-done; return end }, nil
}

// DropHistory removes history entries of a root by sequence number
// (forget); the head's own entry is refused.
func (c *Client) DropHistory(ctx context.Context, root string, seqs []uint64) error {
	for len(seqs) > 0 {
		n := min(len(seqs), MaxRefs)
		if _, err := c.request(ctx, Request{Op: opDropHistory, Root: root, Seqs: seqs[:n]}); err != nil {
			return err
		}
		seqs = seqs[n:]
	}
	return nil
}

// GC asks the server to collect garbage now (server admin); the report
// is JSON (see gc.Stats). A failed collection may still send a report.
func (c *Client) GC(ctx context.Context, req MaintenanceRequest) (json.RawMessage, error) {
	r := Request{Op: opAdminGC, DryRun: req.DryRun}
	if req.Grace >= 0 {
		g := int64(req.Grace)
		r.GraceNS = &g
	}
	resp, err := c.request(ctx, r)
	return resp.Report, err
}

// CheckStore asks the server to check its whole store (server admin); the
// report is JSON (see engine.CheckResult), sent with damage too.
func (c *Client) CheckStore(ctx context.Context, req MaintenanceRequest) (json.RawMessage, error) {
	resp, err := c.request(ctx, Request{Op: opAdminCheck, ReadData: req.ReadData, SubsetN: req.SubsetN, SubsetM: req.SubsetM})
	return resp.Report, err
}

// AdminNamespace reads a namespace's settings (JSON of
// NamespaceSettings), and replaces them first when set is not nil (admin).
func (c *Client) AdminNamespace(ctx context.Context, namespace string, set []byte) ([]byte, error) {
	resp, err := c.request(ctx, Request{Op: opAdminNS, Namespace: namespace, Settings: set})
	return resp.Report, err
}

// Repair asks the server to re-verify its store (or, with a namespace's
// admin token, that namespace), record damage and report what it breaks
// and whether it can heal (see engine.RepairResult).
func (c *Client) Repair(ctx context.Context, req MaintenanceRequest) (json.RawMessage, error) {
	resp, err := c.request(ctx, Request{Op: opAdminRepair})
	return resp.Report, err
}

// Damaged lists up to limit blobs of the namespace that the server
// recorded as damaged: a device that holds their bytes should send them
// again (Has calls them missing).
func (c *Client) Damaged(ctx context.Context, limit int) ([]cas.Ref, error) {
	resp, err := c.request(ctx, Request{Op: opDamaged})
	if err != nil {
		return nil, err
	}
	refs, err := refsFromWire(resp.Refs)
	if err != nil {
		return nil, err
	}
	return refs[:min(len(refs), max(limit, 0))], nil
}

// Verify asks the server to re-read and re-hash blobs (a client that got
// bytes that fail verification says so); it reports which are damaged.
func (c *Client) Verify(ctx context.Context, refs []cas.Ref) ([]bool, error) {
	out := make([]bool, 0, len(refs))
	for len(refs) > 0 {
		n := min(len(refs), maxVerify)
		resp, err := c.request(ctx, Request{Op: opVerify, Refs: refsToWire(refs[:n])})
		if err != nil {
			return nil, err
		}
		if len(resp.Has) != (n+7)/8 {
			return nil, fmt.Errorf("%w: verify bitmap of %d bytes for %d refs", ErrProtocol, len(resp.Has), n)
		}
		for i := range n {
			out = append(out, resp.Has[i/8]&(1<<(i%8)) != 0)
		}
		refs = refs[n:]
	}
	return out, nil
}

// Usage returns the bytes the namespace holds and its quota (0: none).
func (c *Client) Usage(ctx context.Context) (used, limit int64, err error) {
	resp, err := c.request(ctx, Request{Op: opQuota})
	return resp.Used, resp.Limit, err
}

// AdminQuota reads a namespace's usage and quota, and sets the quota
// when set is not nil (0 removes it) (admin).
func (c *Client) AdminQuota(ctx context.Context, namespace string, set *int64) (used, limit int64, err error) {
	resp, err := c.request(ctx, Request{Op: opAdminQuota, Namespace: namespace, Quota: set})
	return resp.Used, resp.Limit, err
}

// AdminPolicy reads a namespace's retention policy (JSON), and sets it
// first when set is not nil ("null" clears it) (admin).
func (c *Client) AdminPolicy(ctx context.Context, namespace string, set []byte) ([]byte, error) {
	resp, err := c.request(ctx, Request{Op: opAdminPolicy, Namespace: namespace, Policy: set})
	return resp.Report, err
}
