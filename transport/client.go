package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/quic-go/quic-go"
	"golang.org/x/sync/semaphore"
)

// ClientOptions tune a Client. Token is required.
type ClientOptions struct {
	Token string
	// Fingerprint pins the server's certificate (hex SHA-256). Empty:
	// FirstUse decides.
	Fingerprint string
	// FirstUse is called with the fingerprint of a server seen without a
	// pin (trust on first use); returning nil accepts it. Nil refuses.
	FirstUse func(fingerprint string) error
	// Streams is how many put streams run in parallel (default 8).
	Streams int
	// Connections is how many QUIC connections carry the put and get
	// streams (default 1). Each has its own congestion controller, and
	// quic-go's is loss-based: on a long lossy link one connection holds
	// a few Mbit/s however many streams share it, and N connections
	// together get about N times that (bench/results/wan.md).
	Connections int
	// Device and Version describe the client to the server's admins.
	Device, Version string
	// QueueBytes bounds the bytes waiting to be sent (default 32 MiB);
	// Put blocks beyond it.
	QueueBytes int64
	// IdleTimeout is how long a silent server counts as alive (default
	// QUICConfig's).
	IdleTimeout time.Duration
	// RequestTimeout bounds one request, its answer included (default 5
	// min; an admin's gc, check and repair of a whole store are bounded
	// only by the caller's context). A server that answers a byte at a
	// time is cut off by it.
	RequestTimeout time.Duration
	// FrameIdle is how long a download may wait for a blob's frame to
	// start (default 2 min); a frame of n bytes then has n/32 KiB more
	// seconds to arrive.
	FrameIdle time.Duration
	// LimitUpload and LimitDownload, if set, bound the bytes a second
	// this client sends and receives across all its streams.
	LimitUpload, LimitDownload *Limiter
	Logger                     *slog.Logger
	// Avoid lists servers of a cluster that failed the caller: Dial tries
	// them last.
	Avoid []string
}

// Client is a connection to a ferry server, scoped to one namespace. It
// implements cas.Store and cas.Heads, so the engine syncs with a server
// exactly as with a local store. It is safe for concurrent use.
type Client struct {
	conn *quic.Conn
	// lanes are the connections bulk streams go on: conn first, then
	// the Connections-1 more, each authenticated on its own.
	lanes    []*quic.Conn
	laneNext atomic.Uint32
	opts     ClientOptions
	ns       string
	perm     Perm
	params   chunk.Params
	server   string
	addr     string

	// Has batching: callers queue, one request at a time takes the queue.
	hasMu      sync.Mutex
	hasQueue   []*hasCall
	hasRunning bool

	// Uploads: Put queues, senders stream, Flush waits for acks.
	checkQ   chan *upItem
	sendQ    chan *upItem
	budget   *semaphore.Weighted // bytes queued, QueueBytes in all
	upMu     sync.Mutex
	upCond   *sync.Cond
	inFlight int
	upErr    error
	upRefs   map[cas.Ref]int // refs queued or in flight
	flushCh  chan struct{}   // closed by Flush: senders close their streams
	closing  chan struct{}
	senders  sync.WaitGroup

	// Counters: what crossed the wire.
	BlobsSent, BytesSent, BlobsFetched, BytesFetched atomic.Int64
}

var (
	_ cas.Store = (*Client)(nil)
	_ cas.Heads = (*Client)(nil)
)

func (opts ClientOptions) withDefaults() (ClientOptions, error) {
	if opts.Streams <= 0 {
		opts.Streams = 8
	}
	if opts.Connections <= 0 {
		opts.Connections = 1
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 32 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Minute
	}
	if opts.FrameIdle <= 0 {
		opts.FrameIdle = 2 * time.Minute
	}
	if opts.Token == "" {
		return opts, fmt.Errorf("%w: no token (set FERRY_TOKEN or --token-file)", ErrAuth)
	}
	if opts.Fingerprint != "" {
		fp, err := NormalizeFingerprint(opts.Fingerprint)
		if err != nil {
			return opts, err
		}
		opts.Fingerprint = fp
	}
	return opts, nil
}

func (opts ClientOptions) quicConfig() *quic.Config {
	qc := QUICConfig()
	if opts.IdleTimeout > 0 {
		qc.MaxIdleTimeout = opts.IdleTimeout
		qc.KeepAlivePeriod = opts.IdleTimeout / 3
		// A server that does not answer the handshake is unreachable
		// within the same time as one that falls silent.
		qc.HandshakeIdleTimeout = min(qc.HandshakeIdleTimeout, opts.IdleTimeout)
	}
	return qc
}

// newClient says hello on every connection (the first is the control
// connection, all carry bulk streams) and starts the upload machinery; on
// error the connections are closed.
func newClient(ctx context.Context, conns []*quic.Conn, namespace string, opts ClientOptions) (*Client, error) {
	c := &Client{conn: conns[0], lanes: conns, opts: opts, closing: make(chan struct{}), upRefs: map[cas.Ref]int{}, flushCh: make(chan struct{})}
	c.upCond = sync.NewCond(&c.upMu)
	fail := func(err error) (*Client, error) {
		for _, conn := range conns {
			conn.CloseWithError(closeOK, "")
		}
		return nil, err
	}
	reply, err := c.hello(ctx, c.conn, namespace)
	if err != nil {
		return fail(err)
	}
	c.ns, c.perm, c.server = reply.Namespace, Perm(reply.Perm), reply.Server
	if len(reply.Params) > 0 {
		if err := json.Unmarshal(reply.Params, &c.params); err != nil {
			return fail(fmt.Errorf("%w: chunk params: %v", ErrProtocol, err))
		}
		if err := c.params.Validate(); err != nil {
			return fail(fmt.Errorf("server chunk params: %w", err))
		}
	}
	kept := conns[:1]
	for i, lane := range conns[1:] {
		_, err := c.hello(ctx, lane, namespace)
		switch {
		case err == nil:
			kept = append(kept, lane)
		case laneLost(err):
			// A further connection is a speed-up, not a need: a busy
			// server may refuse it (its accept queue is full) while the
			// first one works. The server's own refusals (a token's
			// connection cap) still fail the dial.
			opts.Logger.Info("further connection not used", "connection", i+2, "of", len(conns), "err", err)
			lane.CloseWithError(closeOK, "")
		default:
			return fail(fmt.Errorf("connection %d of %d: %w", i+2, len(conns), err))
		}
	}
	conns, c.lanes = kept, kept
	// Four checkers of up to a has-many's MaxRefs each keep a long link's
	// round trips full of small blobs.
	c.checkQ = make(chan *upItem, MaxRefs)
	c.sendQ = make(chan *upItem, 256)
	c.budget = semaphore.NewWeighted(opts.QueueBytes)
	for i := range opts.Streams {
		c.senders.Add(1)
		go c.sender(conns[i%len(conns)])
	}
	for range 4 {
		c.senders.Add(1)
		go c.checker()
	}
	return c, nil
}

// laneLost reports whether err ended a connection at the QUIC level
// (refused, timed out), rather than a refusal by the server's policy.
func laneLost(err error) bool {
	var te *quic.TransportError
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	return errors.As(err, &te) || errors.As(err, &idle) || errors.As(err, &hs)
}

func (c *Client) hello(ctx context.Context, conn *quic.Conn, namespace string) (HelloReply, error) {
	var reply HelloReply
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return reply, err
	}
	defer st.CancelRead(0)
	w := append([]byte{kindHello}, nil...)
	if _, err := st.Write(w); err != nil {
		return reply, err
	}
	if err := writeMessage(st, Hello{Proto: ProtoVersion, Token: c.opts.Token, Namespace: namespace, Device: c.opts.Device, Client: c.opts.Version}); err != nil {
		return reply, err
	}
	st.Close()
	if err := readMessage(st, &reply); err != nil {
		return reply, fmt.Errorf("hello: %w", c.connErr(err))
	}
	if reply.Err != nil {
		return reply, fromWire(reply.Err, "", cas.Ref{})
	}
	return reply, nil
}

// lane is the connection the next get stream goes on.
func (c *Client) lane() *quic.Conn {
	return c.lanes[int(c.laneNext.Add(1))%len(c.lanes)]
}

// Alive reports whether the connection is still up.
func (c *Client) Alive() bool {
	for _, conn := range c.lanes {
		if conn.Context().Err() != nil {
			return false
		}
	}
	return true
}

// Params are the namespace's chunk params.
func (c *Client) Params() chunk.Params { return c.params }

// Namespace is the connection's namespace.
func (c *Client) Namespace() string { return c.ns }

// Perm is what the token allows.
func (c *Client) Perm() Perm { return c.perm }

// Close waits for queued uploads to be acknowledged, then closes.
func (c *Client) Close() error {
	err := c.Flush(context.Background())
	close(c.closing)
	c.senders.Wait()
	for _, conn := range c.lanes {
		conn.CloseWithError(closeOK, "")
	}
	return err
}

// request runs one request stream.
func (c *Client) request(ctx context.Context, req Request) (Response, error) {
	var resp Response
	switch req.Op {
	case opAdminGC, opAdminCheck, opAdminRepair:
	default:
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.opts.RequestTimeout,
			fmt.Errorf("%w: the server did not answer %s within %v", ErrUnavailable, req.Op, c.opts.RequestTimeout))
		defer cancel()
	}
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return resp, c.connErr(err)
	}
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	defer stop()
	if _, err := st.Write([]byte{kindRequest}); err != nil {
		return resp, c.connErr(err)
	}
	if err := writeMessage(st, req); err != nil {
		return resp, c.connErr(err)
	}
	st.Close()
	defer st.CancelRead(0) // the response is all we read; release the stream
	if err := readMessage(st, &resp); err != nil {
		if ctx.Err() != nil {
			return resp, context.Cause(ctx)
		}
		return resp, fmt.Errorf("%s: %w", req.Op, c.connErr(err))
	}
	old, _ := optRef(req.Old)
	if err := fromWire(resp.Err, req.Root, old); err != nil {
		return resp, err
	}
	return resp, nil
}

// connErr says why the connection is gone, when it is.
func (c *Client) connErr(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		switch ae.ErrorCode {
		case closeAuth:
			return fmt.Errorf("%w: %s", ErrAuth, ae.ErrorMessage)
		case closeRevoked:
			return fmt.Errorf("%w: the token was revoked", ErrAuth)
		case closeShutdown:
			return fmt.Errorf("%w: the server is shutting down", ErrUnavailable)
		}
	}
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) {
		return fmt.Errorf("%w: no packet from the server within the idle timeout: %w", ErrUnavailable, err)
	}
	return err
}

// Head returns the root's head or cas.ErrNotFound.
func (c *Client) Head(ctx context.Context, root string) (cas.Ref, error) {
	resp, err := c.request(ctx, Request{Op: opHead, Root: root})
	if err != nil {
		return cas.Ref{}, err
	}
	return refFromWire(resp.Ref)
}

// SwapHead moves the head by compare-and-swap, after Flush: the server
// checks that the version is complete before it moves.
func (c *Client) SwapHead(ctx context.Context, root string, old, new cas.Ref) error {
	if err := c.Flush(ctx); err != nil {
		return err
	}
	req := Request{Op: opSwapHead, Root: root, New: new[:]}
	if !old.IsZero() {
		req.Old = old[:]
	}
	_, err := c.request(ctx, req)
	return err
}

// maxHistory bounds the versions a history listing takes from a server:
// four million, a version every 10 seconds for over a year, in about
// 400 MiB.
var maxHistory = 4 << 20

// History lists the root's history, oldest first, page by page.
func (c *Client) History(ctx context.Context, root string) ([]cas.HistoryEntry, error) {
	return c.history(ctx, opHistory, "", root)
}

func (c *Client) history(ctx context.Context, op, ns, root string) ([]cas.HistoryEntry, error) {
	var out []cas.HistoryEntry
	var after uint64
	for {
		resp, err := c.request(ctx, Request{Op: op, Namespace: ns, Root: root, After: after})
		if err != nil {
			return nil, err
		}
		for _, h := range resp.History {
			r, err := refFromWire(h.Ref)
			if err != nil {
				return nil, err
			}
			// Pages go forward, and end: a server whose pages do not is
			// refused rather than followed.
			if h.Seq <= after && (after != 0 || len(out) > 0) {
				return nil, fmt.Errorf("%w: history entry %d after %d", ErrProtocol, h.Seq, after)
			}
			if len(out) >= maxHistory {
				return nil, fmt.Errorf("%w: history of more than %d versions", ErrProtocol, maxHistory)
			}
			out = append(out, cas.HistoryEntry{Seq: h.Seq, Time: time.Unix(0, h.Time).UTC(), Ref: r})
			after = h.Seq
		}
		if !resp.More || len(resp.History) == 0 {
			return out, nil
		}
	}
}

// Roots lists the namespace's roots.
func (c *Client) Roots(ctx context.Context) ([]string, error) {
	resp, err := c.request(ctx, Request{Op: opRoots})
	return resp.Roots, err
}

// SetTag names ref; the zero Ref removes the tag.
func (c *Client) SetTag(ctx context.Context, root, tag string, ref cas.Ref) error {
	if err := c.Flush(ctx); err != nil {
		return err
	}
	req := Request{Op: opSetTag, Root: root, Tag: tag}
	if !ref.IsZero() {
		req.New = ref[:]
	}
	_, err := c.request(ctx, req)
	return err
}

// Tags returns the root's tags.
func (c *Client) Tags(ctx context.Context, root string) (map[string]cas.Ref, error) {
	resp, err := c.request(ctx, Request{Op: opTags, Root: root})
	if err != nil {
		return nil, err
	}
	out := map[string]cas.Ref{}
	for _, t := range resp.Tags {
		r, err := refFromWire(t.Ref)
		if err != nil {
			return nil, err
		}
		out[t.Name] = r
	}
	return out, nil
}

// List calls fn for every ref the namespace owns (after uploads in flight
// are acknowledged).
func (c *Client) List(ctx context.Context, fn func(cas.Ref) error) error {
	if err := c.Flush(ctx); err != nil {
		return err
	}
	var after []byte
	for {
		resp, err := c.request(ctx, Request{Op: opList, Old: after, Limit: MaxRefs})
		if err != nil {
			return err
		}
		refs, err := refsFromWire(resp.Refs)
		if err != nil {
			return err
		}
		for _, r := range refs {
			// Refs come in order, each page after the last: a server
			// that repeats itself is refused, not listed forever.
			if bytes.Compare(r[:], after) <= 0 {
				return fmt.Errorf("%w: list went back to %s", ErrProtocol, r.Short())
			}
			after = r[:]
			if err := fn(r); err != nil {
				return err
			}
		}
		if !resp.More || len(refs) == 0 {
			return nil
		}
	}
}

// Delete drops the namespace's ownership of refs.
func (c *Client) Delete(ctx context.Context, refs []cas.Ref) error {
	if err := c.Flush(ctx); err != nil {
		return err
	}
	for len(refs) > 0 {
		n := min(len(refs), MaxRefs)
		if _, err := c.request(ctx, Request{Op: opDelete, Refs: refsToWire(refs[:n])}); err != nil {
			return err
		}
		refs = refs[n:]
	}
	return nil
}
