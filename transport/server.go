package transport

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/internal/failpoint"
	"github.com/quic-go/quic-go"
)

// Metrics receives what the server counts; the daemon binds it to
// Prometheus. Every method must be safe for concurrent use.
type Metrics interface {
	Conn(delta int)
	BytesIn(n int)
	BytesOut(n int)
	Blob(stored bool) // stored: new bytes; false: a dedup hit
	Request(op string, d time.Duration, err error)
	// Refused counts a connection refused or a handshake that failed, by
	// reason (the Refused constants).
	Refused(reason string)
}

type noMetrics struct{}

func (noMetrics) Conn(int)                             {}
func (noMetrics) BytesIn(int)                          {}
func (noMetrics) BytesOut(int)                         {}
func (noMetrics) Blob(bool)                            {}
func (noMetrics) Request(string, time.Duration, error) {}
func (noMetrics) Refused(string)                       {}

// ServerOptions tune a Server. The zero value works.
type ServerOptions struct {
	Logger  *slog.Logger
	Metrics Metrics
	Now     func() time.Time
	// Version is reported to clients.
	Version string
	// HandshakeTimeout bounds the time to a successful hello (default 10s).
	HandshakeTimeout time.Duration
	// StreamIdle is how long a stream may go without progress (default 2m).
	StreamIdle time.Duration
	// RequestTimeout bounds the whole of one request (default 5m): a
	// commit check of a large version, a history listing. An admin's gc,
	// check and repair of the whole store are not bounded by it.
	RequestTimeout time.Duration
	// Limits bound connections, memory and failed authentications.
	Limits Limits
	// Maintenance runs store-wide work a server admin asks for (gc,
	// check, repair); nil refuses those requests.
	Maintenance Maintenance
}

// Maintenance is store-wide work a server admin may ask for over the
// wire. Each method returns its report as JSON, which the client passes on.
type Maintenance interface {
	GC(ctx context.Context, req MaintenanceRequest) (json.RawMessage, error)
	Check(ctx context.Context, req MaintenanceRequest) (json.RawMessage, error)
	Repair(ctx context.Context, req MaintenanceRequest) (json.RawMessage, error)
}

// MaintenanceRequest carries a gc or check request's options.
type MaintenanceRequest struct {
	DryRun bool
	// Grace below zero asks for the server's default.
	Grace            time.Duration
	ReadData         bool
	SubsetN, SubsetM int
	// Namespace limits a check to one namespace (a namespace's token);
	// empty is the whole store (a server admin token).
	Namespace string
}

// Server serves a store to many clients and namespaces over QUIC.
type Server struct {
	db     *cas.DB
	tokens *Tokens
	opts   ServerOptions
	gate   *gate

	// commitMu is held shared by every head move from its check to the
	// move, and exclusively by a collection while it starts (PauseCommits).
	commitMu sync.RWMutex

	// settled is what puts stored since each namespace's last commit.
	settled settled

	// resumed counts connections that used 0-RTT or resumed a session.
	resumed atomic.Int64

	mu       sync.Mutex
	sessions map[*session]struct{}
	subs     map[string]map[*subscriber]struct{} // by namespace
}

// NewServer returns a server of db; tokens authenticate its clients.
func NewServer(db *cas.DB, tokens *Tokens, opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = noMetrics{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.StreamIdle == 0 {
		opts.StreamIdle = 2 * time.Minute
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 5 * time.Minute
	}
	opts.Limits = opts.Limits.WithDefaults()
	return &Server{db: db, tokens: tokens, opts: opts, gate: newGate(opts.Limits, opts.Now, opts.Logger, opts.Metrics),
		sessions: map[*session]struct{}{}, subs: map[string]map[*subscriber]struct{}{}}
}

// PauseCommits waits until no head move is between its check and the
// move, and holds new ones until resume is called: a garbage collection
// starts protecting blobs at a moment when no commit is half done.
func (s *Server) PauseCommits() (resume func()) {
	s.commitMu.Lock()
	return s.commitMu.Unlock
}

// ConnWindow is the most a connection's receive window grows to: what a
// server may buffer for one connection before it reads (a term of its
// memory bound), and what one connection may have in flight (16 MiB fills
// 1.3 Gbit/s at 100 ms).
const ConnWindow = 16 << 20

// QUICConfig is the QUIC configuration both ends use: large flow-control
// windows so that one connection fills a long, fat link, a bound on
// concurrent streams per connection, no 0-RTT, keep-alives.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           10 * time.Second,
		MaxIdleTimeout:                 30 * time.Second,
		KeepAlivePeriod:                10 * time.Second,
		InitialStreamReceiveWindow:     2 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     ConnWindow,
		MaxIncomingStreams:             64,
		MaxIncomingUniStreams:          -1,
		Allow0RTT:                      false,
	}
}

// Serve accepts connections until ctx is done or the listener closes.
func (s *Server) Serve(ctx context.Context, l *Listener) error {
	l.gate.Store(s.gate)
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.db.Shared() {
		// Other servers' head moves reach this server's watchers, and
		// their collections protect what this server reports present.
		// Clients are answered once the server knows whether one runs.
		ready := make(chan struct{})
		wg.Go(func() {
			_ = s.db.RunCluster(ctx, cas.ClusterHooks{
				Head: func(ns, root string, ref cas.Ref) {
					s.publish(ns, Event{Root: root, Ref: ref[:], Time: s.opts.Now().UnixNano()})
				},
				Pause: s.PauseCommits,
				Ready: func() { close(ready) },
			})
		})
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
	}
	for {
		conn, err := l.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) {
				return nil
			}
			return err
		}
		s.gate.established(conn)
		if cs := conn.ConnectionState(); cs.Used0RTT || cs.TLS.DidResume {
			// Neither is configured (no session tickets, no 0-RTT): a
			// connection that has either is a bug, refused, and counted
			// for the tests that assert it never happens.
			s.resumed.Add(1)
			s.gate.refused(RefusedResumed, "remote", conn.RemoteAddr().String())
			conn.CloseWithError(closeProtocol, "session resumption and 0-RTT are not allowed")
			continue
		}
		wg.Go(func() { s.handleConn(ctx, conn) })
	}
}

// session is one authenticated connection.
type session struct {
	srv      *Server
	conn     *quic.Conn
	log      *slog.Logger
	tok      tokenRecord
	ns       *cas.Namespace // nil: an admin connection to no namespace
	device   string
	client   string
	since    time.Time
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	// shareSet is what a share link's session may read, walked once.
	shareMu  sync.Mutex
	shareSet cas.RefSet
	// release gives back the session's connection slot of its token.
	release func()
	// up and down are the connection's shares of the server's budgets.
	up, down budget
}

// Connection close codes.
const (
	closeOK       quic.ApplicationErrorCode = 0
	closeAuth     quic.ApplicationErrorCode = 1
	closeProtocol quic.ApplicationErrorCode = 2
	closeRevoked  quic.ApplicationErrorCode = 3
	closeShutdown quic.ApplicationErrorCode = 4
)

// Stream reset codes.
const (
	resetError    quic.StreamErrorCode = 1
	resetInternal quic.StreamErrorCode = 2
)

func (s *Server) handleConn(ctx context.Context, conn *quic.Conn) {
	log := s.opts.Logger.With("remote", conn.RemoteAddr().String())
	sess, err := s.hello(ctx, conn, log)
	if err != nil {
		return
	}
	defer sess.release()
	s.opts.Metrics.Conn(1)
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
		s.opts.Metrics.Conn(-1)
	}()
	log.Info("client connected", "namespace", sess.nsName(), "device", sess.device, "perm", sess.tok.Perm, "token", sess.tok.ID)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				conn.CloseWithError(closeShutdown, "server shutting down")
			}
			log.Debug("client gone", "err", err)
			return
		}
		wg.Go(func() { sess.serveStream(st) })
	}
}

func (s *session) nsName() string {
	if s.ns == nil {
		return ""
	}
	return s.ns.Name()
}

// hello authenticates the connection's first stream. A panic in it
// closes the connection, not the server.
func (s *Server) hello(ctx context.Context, conn *quic.Conn, log *slog.Logger) (sess *session, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("hello panicked", "panic", p, "stack", string(debug.Stack()))
			s.opts.Metrics.Refused(RefusedHelloPanics)
			conn.CloseWithError(closeProtocol, "internal error")
			sess, err = nil, fmt.Errorf("%w: hello panicked", ErrProtocol)
		}
	}()
	hctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	st, err := conn.AcceptStream(hctx)
	if err != nil {
		conn.CloseWithError(closeAuth, "no hello")
		s.gate.refused(RefusedHandshake, "remote", conn.RemoteAddr().String(), "err", "no hello")
		return nil, err
	}
	_ = st.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	var kind [1]byte
	var h Hello
	if _, err := io.ReadFull(st, kind[:]); err != nil || kind[0] != kindHello {
		conn.CloseWithError(closeProtocol, "the first stream must be a hello")
		s.gate.refused(RefusedHandshake, "remote", conn.RemoteAddr().String(), "err", "first stream is not a hello")
		return nil, fmt.Errorf("%w: first stream is not a hello", ErrProtocol)
	}
	err = readLast(st, &h)
	failpoint.Hit("server-hello")
	if err != nil {
		conn.CloseWithError(closeProtocol, "malformed hello")
		s.gate.refused(RefusedHandshake, "remote", conn.RemoteAddr().String(), "err", err)
		return nil, err
	}
	sess, reply, err := s.authenticate(ctx, conn, h, log)
	if err != nil {
		_ = writeMessage(st, HelloReply{Err: toWire(err)})
		st.Close()
		// Let the reply arrive before the close overtakes it: the client
		// hangs up when it has read it; a client that does not is cut off
		// after a moment.
		select {
		case <-conn.Context().Done():
		case <-time.After(time.Second):
		}
		conn.CloseWithError(closeAuth, "refused")
		return nil, err
	}
	if err := writeMessage(st, reply); err != nil {
		sess.release()
		conn.CloseWithError(closeProtocol, "hello reply failed")
		return nil, err
	}
	st.Close()
	return sess, nil
}

// TokenID is the id a presented token has or would have: what logs and
// token lists name instead of the token.
func TokenID(token string) string {
	h := tokenHash(token)
	return hex.EncodeToString(h[:6])
}

func (s *Server) authenticate(ctx context.Context, conn *quic.Conn, h Hello, log *slog.Logger) (*session, HelloReply, error) {
	remote := conn.RemoteAddr().String()
	if h.Proto != ProtoVersion {
		s.gate.refused(RefusedHandshake, "remote", remote, "err", "protocol version", "proto", h.Proto)
		return nil, HelloReply{}, fmt.Errorf("%w: protocol version %d, this server speaks %d", ErrProtocol, h.Proto, ProtoVersion)
	}
	ip := addrIP(conn.RemoteAddr())
	if ok, wait := s.gate.authAllowed(ip); !ok {
		s.gate.refused(RefusedAuthRate, "remote", remote, "token_id", TokenID(h.Token))
		return nil, HelloReply{}, fmt.Errorf("%w: too many failed authentications from this address; try again in %s", ErrAuth, wait.Round(time.Second))
	}
	tok, err := s.tokens.Lookup(h.Token)
	if err == nil && h.Namespace != "" && tok.Namespace != AllNamespaces && h.Namespace != tok.Namespace {
		err = fmt.Errorf("%w: the token is not for namespace %q", ErrAuth, h.Namespace)
	}
	if errors.Is(err, ErrAuth) {
		s.gate.authFailed(ip)
		s.gate.refused(RefusedAuth, "remote", remote, "token_id", TokenID(h.Token), "err", err)
	}
	if err != nil {
		return nil, HelloReply{}, err
	}
	release, err := s.gate.holdToken(tok.ID)
	if err != nil {
		s.gate.refused(RefusedConnsToken, "remote", remote, "token_id", tok.ID)
		return nil, HelloReply{}, err
	}
	sess := &session{srv: s, conn: conn, tok: tok, device: h.Device, client: h.Client, since: s.opts.Now(), release: release,
		up: s.gate.up.share(), down: s.gate.down.share()}
	nsName := h.Namespace
	if tok.Namespace != AllNamespaces && nsName == "" {
		nsName = tok.Namespace
	}
	reply := HelloReply{Perm: string(tok.Perm), Namespace: nsName, Server: s.opts.Version}
	if nsName != "" {
		if sess.ns, err = s.db.Namespace(nsName); err == nil {
			reply.Params, err = s.params(ctx, sess.ns, tok.Perm.Allows(PermWrite))
		}
		if err != nil {
			release()
			return nil, HelloReply{}, err
		}
	}
	sess.log = log.With("namespace", nsName, "token", tok.ID)
	return sess, reply, nil
}

// params returns the namespace's chunk params, making a fresh random
// polynomial for a new namespace when the client may write to it.
func (s *Server) params(ctx context.Context, ns *cas.Namespace, create bool) ([]byte, error) {
	b, err := ns.Config(ctx)
	if errors.Is(err, cas.ErrNotFound) && create {
		p, err := chunk.New()
		if err != nil {
			return nil, err
		}
		b, _ = json.Marshal(p)
		return b, ns.SetConfig(ctx, b)
	}
	if errors.Is(err, cas.ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// serveStream runs one stream. A panic in a handler resets the stream and
// is logged; the connection and the server go on.
func (s *session) serveStream(st *quic.Stream) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("stream handler panicked", "panic", p, "stack", string(debug.Stack()))
			st.CancelRead(resetInternal)
			st.CancelWrite(resetInternal)
		}
	}()
	_ = st.SetReadDeadline(time.Now().Add(s.srv.opts.StreamIdle))
	var kind [1]byte
	if _, err := io.ReadFull(st, kind[:]); err != nil {
		st.CancelWrite(resetError)
		return
	}
	switch kind[0] {
	case kindRequest:
		s.serveRequest(st)
	case kindPut:
		s.servePut(st)
	case kindGet:
		s.serveGet(st)
	case kindSubscribe:
		s.serveSubscribe(st)
	default:
		s.log.Info("unknown stream kind", "kind", kind[0])
		_ = writeMessage(st, Response{Err: toWire(fmt.Errorf("%w: unknown stream kind %#x", ErrProtocol, kind[0]))})
		st.CancelRead(resetError)
		st.Close()
	}
}

// need checks the session may do what needs perm in its namespace.
func (s *session) need(perm Perm) error {
	if !s.tok.Perm.Allows(perm) {
		return fmt.Errorf("%w: the token allows %s, this needs %s", ErrPermission, s.tok.Perm, perm)
	}
	if s.ns == nil && perm != PermAdmin {
		return fmt.Errorf("%w: the connection has no namespace", ErrPermission)
	}
	return nil
}

// readLast reads a stream's one message and its end: a stream whose
// receive side is not read to its end is never released, and its credit
// never returns to the client (quic-go's MAX_STREAMS).
func readLast(st *quic.Stream, v any) error {
	if err := readMessage(st, v); err != nil {
		return err
	}
	var extra [1]byte
	if n, err := io.ReadFull(st, extra[:]); n > 0 {
		return fmt.Errorf("%w: data after the request", ErrProtocol)
	} else if err != io.EOF {
		return err
	}
	return nil
}

func (s *session) serveRequest(st *quic.Stream) {
	var req Request
	if err := readLast(st, &req); err != nil {
		_ = writeMessage(st, Response{Err: toWire(err)})
		st.CancelRead(resetError)
		st.Close()
		return
	}
	start := time.Now()
	ctx := st.Context()
	switch req.Op {
	case opAdminGC, opAdminCheck, opAdminRepair:
	default:
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.srv.opts.RequestTimeout)
		defer cancel()
	}
	resp, err := s.handle(ctx, req)
	s.srv.opts.Metrics.Request(req.Op, time.Since(start), err)
	if err != nil {
		if !errors.Is(err, cas.ErrStale) && !errors.Is(err, cas.ErrNotFound) {
			s.log.Info("request failed", "op", req.Op, "err", err)
		}
		resp = Response{Err: toWire(err)}
	}
	_ = st.SetWriteDeadline(time.Now().Add(s.srv.opts.StreamIdle))
	if err := writeMessage(st, resp); err != nil {
		st.CancelWrite(resetError)
		return
	}
	st.Close()
}

// servePut stores verified frames until FIN, then makes them durable and
// answers. A bad frame ends the stream with an error.
func (s *session) servePut(st *quic.Stream) {
	fail := func(err error) {
		s.log.Info("put refused", "err", err)
		_ = writeMessage(st, Response{Err: toWire(err)})
		st.CancelRead(resetError)
		st.Close()
	}
	if err := s.need(PermWrite); err != nil {
		fail(err)
		return
	}
	ctx := st.Context()
	var resp Response
	for {
		_ = st.SetReadDeadline(time.Now().Add(s.srv.opts.StreamIdle))
		h, err := readFrameHeader(st)
		if err == io.EOF {
			break
		}
		if err == nil && h.NotFound() {
			err = fmt.Errorf("%w: not-found frame on a put stream", ErrProtocol)
		}
		if err != nil {
			fail(err)
			return
		}
		stored, err := s.storeFrame(ctx, st, h)
		if err != nil {
			fail(err)
			return
		}
		s.srv.opts.Metrics.Blob(stored)
		failpoint.Hit("server-blob-stored")
		if stored {
			resp.Stored++
		} else {
			resp.Dedup++
		}
	}
	if err := s.ns.Flush(ctx); err != nil {
		fail(err)
		return
	}
	s.log.Debug("put stream stored", "stored", resp.Stored, "dedup", resp.Dedup)
	failpoint.Hit("server-put-durable")
	_ = writeMessage(st, resp)
	st.Close()
}

// storeFrame reads the payload of the frame h heads and stores it. The
// memory it needs is taken from the budgets first: until there is credit,
// the payload stays in the stream's flow-control window, and the sender
// waits. The buffer comes from a pool only with the credit, so a stream
// waiting holds nothing.
func (s *session) storeFrame(ctx context.Context, st *quic.Stream, h FrameHeader) (bool, error) {
	bp, class := payloadBuf(int(h.StoredLen))
	cost := int64(class)
	if h.Flags != 0 {
		cost += int64(h.RawLen) // the buffer decompression needs
	}
	release, err := acquire(ctx, s.up, s.srv.gate.up, cost)
	if err != nil {
		return false, err
	}
	defer release()
	buf := bp.Get().(*[]byte)
	defer bp.Put(buf)
	payload, err := readFramePayload(idleReader{st: st, idle: s.srv.opts.StreamIdle}, h, (*buf)[:0])
	if err != nil {
		return false, err
	}
	*buf = payload[:0]
	n := frameHead + len(payload)
	s.bytesIn.Add(int64(n))
	s.srv.opts.Metrics.BytesIn(n)
	db := s.srv.db
	gen := db.Removals()
	stored, err := s.ns.PutEncoded(ctx, h.Ref, h.Flags, payload, int(h.RawLen))
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", h.Ref.Short(), err)
	}
	if !db.Shared() {
		s.srv.settled.add(s.ns.Name(), h.Ref, int(h.RawLen), gen, db.Removals())
	}
	return stored, nil
}

// payloadPools hold frame buffers by size class, 256 KiB to 16 MiB in
// powers of two, so a buffer's capacity is at most twice what it holds
// and the budget can charge it.
var payloadPools = func() (p [7]sync.Pool) {
	for i := range p {
		size := 256 << 10 << i
		p[i].New = func() any { b := make([]byte, 0, size); return &b }
	}
	return
}()

func payloadBuf(n int) (*sync.Pool, int) {
	for i := range payloadPools {
		if size := 256 << 10 << i; n <= size {
			return &payloadPools[i], size
		}
	}
	return &payloadPools[len(payloadPools)-1], cas.MaxBlobSize
}

// serveGet sends the stored form of each requested blob the namespace
// owns, and a not-found frame for each it does not.
func (s *session) serveGet(st *quic.Stream) {
	var req Request
	err := readLast(st, &req)
	if err == nil && s.tok.Share == nil {
		err = s.need(PermRead)
	}
	var refs []cas.Ref
	if err == nil {
		if len(req.Refs) > MaxRefs {
			err = fmt.Errorf("%w: %d refs in one get (max %d)", ErrProtocol, len(req.Refs), MaxRefs)
		} else {
			refs, err = refsFromWire(req.Refs)
		}
	}
	if err == nil && s.tok.Share != nil {
		// A share link reads only what its share names.
		err = s.shareAllows(st.Context(), refs)
	}
	if err != nil {
		s.log.Info("get refused", "err", err)
		st.CancelRead(resetError)
		st.CancelWrite(resetError)
		return
	}
	ctx := st.Context()
	// What each blob will hold in memory until the client has read it.
	sizes, err := s.ns.Sizes(ctx, refs)
	if err != nil {
		s.log.Warn("get failed", "err", err)
		st.CancelWrite(resetInternal)
		return
	}
	var head []byte
	for i, r := range refs {
		release, err := acquire(ctx, s.down, s.srv.gate.down, sizes[i])
		if err != nil {
			st.CancelWrite(resetError)
			return
		}
		ok := s.sendBlob(ctx, st, r, &head)
		release()
		if !ok {
			return
		}
	}
	st.Close()
}

// sendBlob writes one blob's frame, or a not-found frame; false ends the
// stream.
func (s *session) sendBlob(ctx context.Context, st *quic.Stream, r cas.Ref, headp *[]byte) bool {
	_ = st.SetWriteDeadline(time.Now().Add(s.srv.opts.StreamIdle))
	flags, payload, rawLen, err := s.ns.GetEncoded(ctx, r)
	h := FrameHeader{Ref: r, Flags: flags, RawLen: uint32(rawLen), StoredLen: uint32(len(payload))}
	switch {
	case errors.Is(err, cas.ErrNotFound):
		h = FrameHeader{Ref: r, StoredLen: notFoundLen}
		payload = nil
	case err != nil:
		s.log.Warn("get failed", "ref", r.Short(), "err", err)
		st.CancelWrite(resetInternal)
		return false
	}
	*headp = AppendFrameHeader((*headp)[:0], h)
	if _, err := st.Write(*headp); err != nil {
		return false
	}
	if err := idleWrite(st, s.srv.opts.StreamIdle, payload); err != nil {
		return false
	}
	n := frameHead + len(payload)
	s.bytesOut.Add(int64(n))
	s.srv.opts.Metrics.BytesOut(n)
	return true
}

// SetPolicy keeps a namespace's retention policy (JSON, given meaning by
// the daemon, which applies it before each scheduled collection); "null"
// or empty clears it.
func (s *Server) SetPolicy(namespace string, policy []byte) error {
	if err := cas.ValidName(namespace); err != nil {
		return err
	}
	kv, err := s.db.KV("policies")
	if err != nil {
		return err
	}
	b := kv.Batch()
	if len(policy) == 0 || string(policy) == "null" {
		err = b.Delete([]byte(namespace))
	} else {
		err = b.Set([]byte(namespace), policy)
	}
	if err != nil {
		b.Close()
		return err
	}
	return b.Commit(true)
}

// Policy returns a namespace's retention policy, nil when it has none.
func (s *Server) Policy(namespace string) ([]byte, error) {
	kv, err := s.db.KV("policies")
	if err != nil {
		return nil, err
	}
	v, err := kv.Get([]byte(namespace))
	if errors.Is(err, cas.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// Policies returns every namespace's retention policy.
func (s *Server) Policies() (map[string][]byte, error) {
	kv, err := s.db.KV("policies")
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err = kv.Scan(nil, func(k, v []byte) error {
		out[string(k)] = append([]byte(nil), v...)
		return nil
	})
	return out, err
}
