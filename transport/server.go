package transport

import (
	"context"
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
}

type noMetrics struct{}

func (noMetrics) Conn(int)                             {}
func (noMetrics) BytesIn(int)                          {}
func (noMetrics) BytesOut(int)                         {}
func (noMetrics) Blob(bool)                            {}
func (noMetrics) Request(string, time.Duration, error) {}

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

	// commitMu is held shared by every head move from its check to the
	// move, and exclusively by a collection while it starts (PauseCommits).
	commitMu sync.RWMutex

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
	return &Server{db: db, tokens: tokens, opts: opts, sessions: map[*session]struct{}{}, subs: map[string]map[*subscriber]struct{}{}}
}

// PauseCommits waits until no head move is between its check and the
// move, and holds new ones until resume is called: a garbage collection
// starts protecting blobs at a moment when no commit is half done.
func (s *Server) PauseCommits() (resume func()) {
	s.commitMu.Lock()
	return s.commitMu.Unlock
}

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
		MaxConnectionReceiveWindow:     32 << 20,
		MaxIncomingStreams:             64,
		MaxIncomingUniStreams:          -1,
		Allow0RTT:                      false,
	}
}

// Serve accepts connections until ctx is done or the listener closes.
func (s *Server) Serve(ctx context.Context, l *Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) {
				return nil
			}
			return err
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
		log.Info("connection refused", "err", err)
		return
	}
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

// hello authenticates the connection's first stream.
func (s *Server) hello(ctx context.Context, conn *quic.Conn, log *slog.Logger) (*session, error) {
	hctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	st, err := conn.AcceptStream(hctx)
	if err != nil {
		conn.CloseWithError(closeAuth, "no hello")
		return nil, err
	}
	_ = st.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	var kind [1]byte
	var h Hello
	if _, err := io.ReadFull(st, kind[:]); err != nil || kind[0] != kindHello {
		conn.CloseWithError(closeProtocol, "the first stream must be a hello")
		return nil, fmt.Errorf("%w: first stream is not a hello", ErrProtocol)
	}
	if err := readLast(st, &h); err != nil {
		conn.CloseWithError(closeProtocol, "malformed hello")
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
		conn.CloseWithError(closeAuth, err.Error())
		return nil, err
	}
	if err := writeMessage(st, reply); err != nil {
		conn.CloseWithError(closeProtocol, "hello reply failed")
		return nil, err
	}
	st.Close()
	return sess, nil
}

func (s *Server) authenticate(ctx context.Context, conn *quic.Conn, h Hello, log *slog.Logger) (*session, HelloReply, error) {
	if h.Proto != ProtoVersion {
		return nil, HelloReply{}, fmt.Errorf("%w: protocol version %d, this server speaks %d", ErrProtocol, h.Proto, ProtoVersion)
	}
	tok, err := s.tokens.Lookup(h.Token)
	if err != nil {
		return nil, HelloReply{}, err
	}
	sess := &session{srv: s, conn: conn, tok: tok, device: h.Device, client: h.Client, since: s.opts.Now()}
	nsName := h.Namespace
	switch {
	case tok.Namespace == AllNamespaces:
	case nsName == "":
		nsName = tok.Namespace
	case nsName != tok.Namespace:
		return nil, HelloReply{}, fmt.Errorf("%w: the token is not for namespace %q", ErrAuth, nsName)
	}
	reply := HelloReply{Perm: string(tok.Perm), Namespace: nsName, Server: s.opts.Version}
	if nsName != "" {
		if sess.ns, err = s.db.Namespace(nsName); err != nil {
			return nil, HelloReply{}, err
		}
		if reply.Params, err = s.params(ctx, sess.ns, tok.Perm.Allows(PermWrite)); err != nil {
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
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	var resp Response
	for {
		_ = st.SetReadDeadline(time.Now().Add(s.srv.opts.StreamIdle))
		h, payload, err := readFrame(st, *bp)
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
		*bp = payload[:0]
		n := frameHead + len(payload)
		s.bytesIn.Add(int64(n))
		s.srv.opts.Metrics.BytesIn(n)
		stored, err := s.ns.PutEncoded(ctx, h.Ref, h.Flags, payload, int(h.RawLen))
		if err != nil {
			fail(fmt.Errorf("blob %s: %w", h.Ref.Short(), err))
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

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

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
	var head []byte
	for _, r := range refs {
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
			return
		}
		head = AppendFrameHeader(head[:0], h)
		if _, err := st.Write(head); err != nil {
			return
		}
		if _, err := st.Write(payload); err != nil {
			return
		}
		n := frameHead + len(payload)
		s.bytesOut.Add(int64(n))
		s.srv.opts.Metrics.BytesOut(n)
	}
	st.Close()
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
