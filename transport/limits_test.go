package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/internal/failpoint"
	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
)

// countMetrics counts refusals by reason.
type countMetrics struct {
	noMetrics
	mu      sync.Mutex
	refused map[string]int
}

func (m *countMetrics) Refused(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refused == nil {
		m.refused = map[string]int{}
	}
	m.refused[reason]++
}

func (m *countMetrics) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprint(m.refused)
}

func (m *countMetrics) get(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused[reason]
}

// rawConn is a bare QUIC connection to s that has said hello with token.
func rawConn(t testing.TB, s *testServer, ns, token string) *quic.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := quic.DialAddr(ctx, s.addr, clientTLS(s.fp, nil), QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	c := &Client{conn: conn, opts: ClientOptions{Token: token}}
	if _, err := c.hello(ctx, conn, ns); err != nil {
		t.Fatal(err)
	}
	return conn
}

// rawRequest sends one request on its own stream and reads the reply.
func rawRequest(ctx context.Context, conn *quic.Conn, req Request) (Response, error) {
	var resp Response
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return resp, err
	}
	if _, err := st.Write([]byte{kindRequest}); err != nil {
		return resp, err
	}
	if err := writeMessage(st, req); err != nil {
		return resp, err
	}
	st.Close()
	if err := readMessage(st, &resp); err != nil {
		return resp, err
	}
	if _, err := io.Copy(io.Discard, st); err != nil {
		return resp, err
	}
	return resp, fromWire(resp.Err, "", cas.Ref{})
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestStreamChurn opens, writes and finishes 100,000 streams on one
// connection (D4): the server's goroutines and heap stay flat, and when
// the connection closes nothing it started is left running.
func TestStreamChurn(t *testing.T) {
	s := startServer(t)
	ignore := goleak.IgnoreCurrent()
	conn := rawConn(t, s, "a", s.token(t, "a", PermWrite))
	ctx := context.Background()
	const n, par = 100_000, 32
	churn := func(count int) {
		t.Helper()
		var g errgroup.Group
		g.SetLimit(par)
		for range count {
			g.Go(func() error {
				_, err := rawRequest(ctx, conn, Request{Op: opHas})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	churn(2000) // warm up: pools, stream maps, flow-control windows
	g0, h0 := runtime.NumGoroutine(), heapInUse()
	churn(n - 2000)
	g1, h1 := runtime.NumGoroutine(), heapInUse()
	t.Logf("after %d streams: goroutines %d -> %d, heap in use %.1f -> %.1f MiB", n, g0, g1, float64(h0)/(1<<20), float64(h1)/(1<<20))
	// A goroutine or a few hundred bytes kept per stream would show as
	// 100,000 goroutines or tens of MiB.
	if g1 > g0+par {
		t.Errorf("goroutines grew from %d to %d over %d streams", g0, g1, n)
	}
	if h1 > h0+8<<20 {
		t.Errorf("heap in use grew from %d to %d bytes over %d streams", h0, h1, n)
	}
	conn.CloseWithError(0, "")
	goleak.VerifyNone(t, ignore)
}

// TestSlowloris drips a request and a put frame one byte at a time: the
// server resets each stream at its deadline, before the drip could end.
func TestSlowloris(t *testing.T) {
	const idle = 300 * time.Millisecond
	s := startServerOpts(t, ServerOptions{StreamIdle: idle})
	conn := rawConn(t, s, "a", s.token(t, "a", PermWrite))
	ctx := context.Background()
	body, err := encMode.Marshal(Request{Op: opHas, Refs: make([][]byte, 64)})
	if err != nil {
		t.Fatal(err)
	}
	frame := AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum([]byte("x")), RawLen: 1 << 20, StoredLen: 1 << 20})
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"request", append(append([]byte{kindRequest}, byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))), body...)},
		{"put", append([]byte{kindPut}, append(frame, make([]byte, 1<<20)...)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer st.CancelRead(0)
			// Dripping the whole message would take len(msg)*20ms: hours.
			// The server must cut it off long before.
			start := time.Now()
			gone := make(chan error, 1)
			go func() { _, err := io.Copy(io.Discard, st); gone <- err }()
			for i := 0; ; i++ {
				if i >= len(tc.msg) {
					t.Fatal("the whole message was accepted a byte at a time")
				}
				select {
				case err := <-gone:
					var se *quic.StreamError
					if err != nil && !errors.As(err, &se) {
						t.Fatalf("stream ended with %v, want a reset", err)
					}
					if took := time.Since(start); took > 20*idle {
						t.Errorf("the stream was cut after %v, its deadline is %v", took, idle)
					}
					t.Logf("cut after %d bytes, %v", i, time.Since(start).Round(time.Millisecond))
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := st.Write(tc.msg[i : i+1]); err != nil {
					var se *quic.StreamError
					if !errors.As(err, &se) {
						t.Fatalf("write: %v", err)
					}
					t.Logf("write refused after %d bytes, %v", i, time.Since(start).Round(time.Millisecond))
					return
				}
			}
		})
	}
}

// putRandom stores k incompressible blobs of size bytes through a client
// and returns their refs.
func putRandom(t testing.TB, c *Client, k, size int) []cas.Ref {
	t.Helper()
	ctx := context.Background()
	var refs []cas.Ref
	for range k {
		b := make([]byte, size)
		rand.Read(b)
		r := cas.Sum(b)
		if err := c.Put(ctx, r, b); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return refs
}

// TestNonReader asks for many large blobs on many streams and never reads
// a reply (D5): the server holds only its connection's share of the
// download budget, stops taking the client's new streams once every
// stream slot is stuck, and serves another client meanwhile.
func TestNonReader(t *testing.T) {
	const blob = 4 << 20
	s := startServerOpts(t, ServerOptions{Limits: Limits{DownloadBytes: 64 << 20}})
	tok := s.token(t, "a", PermWrite)
	refs := putRandom(t, s.dial(t, "a", tok), 16, blob)
	h0 := heapInUse()

	conn := rawConn(t, s, "a", tok)
	ctx := context.Background()
	wire := refsToWire(refs)
	var stuck []*quic.Stream
	opened := 0
	for {
		octx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := conn.OpenStreamSync(octx)
		cancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
		opened++
		if opened > 200 {
			t.Fatal("the server kept taking streams from a client that reads none of its replies")
		}
		st.Write([]byte{kindGet})
		writeMessage(st, Request{Refs: wire})
		st.Close()
		stuck = append(stuck, st)
	}
	t.Logf("the server stopped taking streams after %d", opened)

	// Another client reads every blob meanwhile.
	other := s.dial(t, "a", tok)
	for _, r := range refs {
		b, err := other.Get(ctx, r)
		if err != nil || cas.Sum(b) != r {
			t.Fatalf("get %s while a non-reader holds its streams: %v", r.Short(), err)
		}
	}
	h1 := heapInUse()
	t.Logf("heap in use %.1f -> %.1f MiB with %d streams of %d x %d MiB unread", float64(h0)/(1<<20), float64(h1)/(1<<20), opened, len(refs), blob>>20)
	// Without the budget each stuck stream holds a blob: 64 x 4 MiB. With
	// it the connection holds its share (32 MiB), plus what its flow-control
	// windows took.
	if limit := uint64(64 << 20); h1 > h0+limit {
		t.Errorf("heap grew by %d MiB, bound %d MiB", (h1-h0)>>20, limit>>20)
	}
	for _, st := range stuck {
		st.CancelRead(0)
	}
}

// TestUploadBudgetWaits fills a one-frame upload budget with a frame whose
// payload never comes: another connection's put waits for credit instead
// of allocating, and goes on once the stuck stream is reset.
func TestUploadBudgetWaits(t *testing.T) {
	const idle = time.Second
	s := startServerOpts(t, ServerOptions{StreamIdle: idle, Limits: Limits{UploadBytes: 2 * cas.MaxBlobSize}})
	tok := s.token(t, "a", PermWrite)
	conn := rawConn(t, s, "a", tok)
	ctx := context.Background()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := FrameHeader{Ref: cas.Sum([]byte("never")), Flags: 1, RawLen: cas.MaxBlobSize, StoredLen: cas.MaxBlobSize}
	st.Write(append([]byte{kindPut}, AppendFrameHeader(nil, h)...))
	start := time.Now()
	c := s.dial(t, "a", tok)
	refs := putRandom(t, c, 1, 1<<20)
	waited := time.Since(start)
	t.Logf("a put waited %v for credit held by a stalled frame (deadline %v)", waited.Round(time.Millisecond), idle)
	if waited < idle/2 {
		t.Errorf("the put went through in %v while the whole budget was held", waited)
	}
	if has, err := c.Has(ctx, refs); err != nil || !has[0] {
		t.Fatalf("has after the wait: %v %v", has, err)
	}
}

// TestConnCaps refuses connections past the per-address and per-token
// caps, with a clear error, and counts them.
func TestConnCaps(t *testing.T) {
	m := &countMetrics{}
	s := startServerOpts(t, ServerOptions{Metrics: m, Limits: Limits{ConnsPerIP: 6, ConnsPerToken: 3}})
	ctx := context.Background()
	tok := s.token(t, "a", PermWrite)
	for range 3 {
		s.dial(t, "a", tok)
	}
	_, err := Dial(ctx, s.addr, "a", ClientOptions{Token: tok, Fingerprint: s.fp})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "max 3") {
		t.Fatalf("4th connection of a token: %v, want ErrUnavailable naming the cap", err)
	}
	other := s.token(t, "b", PermWrite)
	for range 3 {
		s.dial(t, "b", other)
	}
	_, err = Dial(ctx, s.addr, "b", ClientOptions{Token: other, Fingerprint: s.fp})
	if err == nil {
		t.Fatal("7th connection from one address accepted")
	}
	if m.get(RefusedConnsToken) != 1 || m.get(RefusedConnsIP) == 0 {
		t.Errorf("refusals counted %v", m)
	}
}

// TestAuthRateLimit: an address that keeps presenting wrong tokens is
// slowed to the bucket's rate, and then even a right token waits; other
// addresses are not affected, and the failures are counted and logged
// with the token's id, never the token.
func TestAuthRateLimit(t *testing.T) {
	m := &countMetrics{}
	var logBuf lockedBuf
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	s := startServerOpts(t, ServerOptions{Metrics: m, Logger: newTestLogger(&logBuf), Now: clock.now, Limits: Limits{AuthFailures: 3, AuthFailEvery: time.Minute}})
	ctx := context.Background()
	good := s.token(t, "a", PermWrite)
	bad := "ferry_" + strings.Repeat("z", 32)
	for i := range 3 {
		_, err := Dial(ctx, s.addr, "a", ClientOptions{Token: bad, Fingerprint: s.fp})
		if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "too many") {
			t.Fatalf("wrong token %d: %v", i, err)
		}
	}
	_, err := Dial(ctx, s.addr, "a", ClientOptions{Token: good, Fingerprint: s.fp})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "too many failed authentications") {
		t.Fatalf("right token after the burst: %v, want refused until the bucket refills", err)
	}
	// From another address the right token works.
	c, err := dialFrom(ctx, s, "127.0.0.2", "a", good)
	if err != nil {
		t.Fatalf("another address: %v", err)
	}
	c.Close()
	clock.advance(time.Minute)
	c, err = Dial(ctx, s.addr, "a", ClientOptions{Token: good, Fingerprint: s.fp})
	if err != nil {
		t.Fatalf("after a refill: %v", err)
	}
	c.Close()
	if m.get(RefusedAuth) != 3 || m.get(RefusedAuthRate) != 1 {
		t.Errorf("refusals counted %v", m)
	}
	logs := logBuf.String()
	if strings.Contains(logs, bad) || !strings.Contains(logs, "token_id="+TokenID(bad)) || !strings.Contains(logs, "remote=127.0.0.1:") {
		t.Errorf("auth failures must be logged with address and token id, never the token:\n%s", logs)
	}
}

// dialFrom dials s from a local address (127.0.0.0/8 is all loopback).
func dialFrom(ctx context.Context, s *testServer, local, ns, token string) (*Client, error) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(local)})
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp}
	ra, err := net.ResolveUDPAddr("udp", s.addr)
	if err != nil {
		return nil, err
	}
	conn, err := tr.Dial(ctx, ra, clientTLS(s.fp, nil), QUICConfig())
	if err != nil {
		tr.Close()
		return nil, err
	}
	context.AfterFunc(conn.Context(), func() { tr.Close() })
	opts, err := ClientOptions{Token: token}.withDefaults()
	if err != nil {
		return nil, err
	}
	return newClient(ctx, []*quic.Conn{conn}, ns, opts)
}

// TestHandshakeFlood: thousands of handshakes from 127.0.0.2, each from
// its own port, half abandoned after the first flight and half completed
// and then silent, while a client on 127.0.0.1 pushes and reads back (D6).
// The server asks for Retry and refuses past the per-address cap, and the
// client's sync is not refused.
func TestHandshakeFlood(t *testing.T) {
	m := &countMetrics{}
	s := startServerOpts(t, ServerOptions{Metrics: m, HandshakeTimeout: 2 * time.Second, Limits: Limits{ConnsPerIP: 128, Handshakes: 32}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ra, err := net.ResolveUDPAddr("udp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	const attempts, par = 2000, 192
	var done, completed atomic.Int64
	flood := make(chan struct{})
	var fg errgroup.Group
	fg.SetLimit(par)
	go func() {
		defer close(flood)
		for i := range attempts {
			if ctx.Err() != nil {
				break
			}
			fg.Go(func() error {
				defer done.Add(1)
				udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
				if err != nil {
					return err
				}
				tr := &quic.Transport{Conn: udp}
				defer tr.Close()
				wait := 20 * time.Millisecond // abandoned mid-handshake
				if i%2 == 0 {
					wait = 500 * time.Millisecond
				}
				dctx, dcancel := context.WithTimeout(ctx, wait)
				defer dcancel()
				conn, err := tr.Dial(dctx, ra, clientTLS(s.fp, nil), QUICConfig())
				if err == nil {
					completed.Add(1)
					<-dctx.Done() // a connection that never says hello
					conn.CloseWithError(0, "")
				}
				return nil
			})
		}
		fg.Wait()
	}()

	tok := s.token(t, "a", PermWrite)
	rounds := 0
	for done.Load() < attempts/2 || rounds < 3 {
		c, err := Dial(ctx, s.addr, "a", ClientOptions{Token: tok, Fingerprint: s.fp})
		if err != nil {
			t.Fatalf("an authenticated client during the flood (round %d, %d handshakes in): %v", rounds, done.Load(), err)
		}
		refs := putRandom(t, c, 4, 256<<10)
		for _, r := range refs {
			if b, err := c.Get(ctx, r); err != nil || cas.Sum(b) != r {
				t.Fatalf("read back during the flood: %v", err)
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		rounds++
	}
	<-flood
	t.Logf("%d flood handshakes (%d completed), %d client rounds; refusals %v", attempts, completed.Load(), rounds, m)
	// Past the cap of concurrent handshakes the server asks for a Retry;
	// how many reach the per-address cap as well depends on the timing
	// (TestConnCaps tests that cap).
	if m.get(RefusedRetry) == 0 {
		t.Errorf("the flood never made the server ask for a Retry: %v", m)
	}
}

// TestRevokedTokenNoResumption: a client with a TLS session cache cannot
// resume its way past a revocation; the server never resumes a session or
// takes 0-RTT (startServer's cleanup checks every connection of every
// test for that).
func TestRevokedTokenNoResumption(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	tok, info, err := s.tokens.Create("a", PermWrite, "")
	if err != nil {
		t.Fatal(err)
	}
	cache := tls.NewLRUClientSessionCache(8)
	dial := func() (*quic.Conn, error) {
		tc := clientTLS(s.fp, nil)
		tc.ClientSessionCache = cache
		qc := QUICConfig()
		qc.Allow0RTT = true // the client would, if the server let it
		conn, err := quic.DialAddrEarly(ctx, s.addr, tc, qc)
		if err != nil {
			return nil, err
		}
		c := &Client{conn: conn, opts: ClientOptions{Token: tok}}
		if _, err := c.hello(ctx, conn, "a"); err != nil {
			conn.CloseWithError(0, "")
			return nil, err
		}
		return conn, nil
	}
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	if cs := conn.ConnectionState(); cs.Used0RTT || cs.TLS.DidResume {
		t.Fatalf("first connection: 0-RTT %v, resumed %v", cs.Used0RTT, cs.TLS.DidResume)
	}
	admin := rawConn(t, s, "", s.admin)
	if _, err := rawRequest(ctx, admin, Request{Op: opTokenRevoke, ID: info.ID}); err != nil {
		t.Fatal(err)
	}
	<-conn.Context().Done() // the revocation closes it
	_, err = dial()
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("revoked token with a session cache: %v, want ErrAuth", err)
	}
}

// TestRevokeLockout: no token revokes itself, and the last server admin
// token cannot be revoked.
func TestRevokeLockout(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	list, err := s.tokens.List()
	if err != nil {
		t.Fatal(err)
	}
	adminID := list[0].ID
	admin := rawConn(t, s, "", s.admin)
	_, err = rawRequest(ctx, admin, Request{Op: opTokenRevoke, ID: adminID})
	if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "itself") {
		t.Fatalf("admin revoking itself: %v", err)
	}
	second, info2, err := s.tokens.Create(AllNamespaces, PermAdmin, "second")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawRequest(ctx, rawConn(t, s, "", second), Request{Op: opTokenRevoke, ID: adminID}); err != nil {
		t.Fatalf("one admin revoking another: %v", err)
	}
	// second is now the last server admin; a namespace admin cannot see
	// it, and it cannot revoke itself.
	if _, err := rawRequest(ctx, rawConn(t, s, "", second), Request{Op: opTokenRevoke, ID: info2.ID}); !errors.Is(err, ErrPermission) {
		t.Fatalf("last admin revoking itself: %v", err)
	}
	nsAdmin := s.token(t, "a", PermAdmin)
	if _, err := rawRequest(ctx, rawConn(t, s, "a", nsAdmin), Request{Op: opTokenRevoke, ID: info2.ID}); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("namespace admin revoking the server admin: %v", err)
	}
}

// TestErrorsCarryNoServerPaths: an operating-system error (a full disk
// naming a pack file) reaches the client as its code and a fixed message;
// other messages have absolute paths cut.
func TestErrorsCarryNoServerPaths(t *testing.T) {
	for _, tc := range []struct {
		err      error
		code     string
		contains string
	}{
		{fmt.Errorf("blob 1234: %w", errors.Join(cas.ErrFull, &fsPathErr)), codeFull, cas.ErrFull.Error()},
		{fmt.Errorf("open: %w", &fsPathErr), codeInternal, "internal server error"},
		{fmt.Errorf("%w: pebble: /srv/ferry/store/000012.sst: checksum", cas.ErrFailed), codeUnavailable, "cannot serve"},
		{fmt.Errorf("%w: bad path in /var/lib/ferry/x (ok a/b)", ErrProtocol), codeProtocol, "<path>"},
	} {
		w := toWire(tc.err)
		if w.Code != tc.code || !strings.Contains(w.Msg, tc.contains) || strings.Contains(w.Msg, "/srv") || strings.Contains(w.Msg, "/var") {
			t.Errorf("%v -> %s %q, want %s containing %q and no server path", tc.err, w.Code, w.Msg, tc.code, tc.contains)
		}
	}
}

// TestHelloPanicRecovered: a hello that panics closes its connection and
// the server goes on.
func TestHelloPanicRecovered(t *testing.T) {
	m := &countMetrics{}
	s := startServerOpts(t, ServerOptions{Metrics: m})
	tok := s.token(t, "a", PermWrite)
	remove := failpoint.Set("server-hello", func() { panic("injected") })
	_, err := Dial(context.Background(), s.addr, "a", ClientOptions{Token: tok, Fingerprint: s.fp})
	remove()
	if err == nil {
		t.Fatal("a hello that panicked succeeded")
	}
	c := s.dial(t, "a", tok)
	if _, err := c.Has(context.Background(), []cas.Ref{{}}); err != nil {
		t.Fatalf("after a panicking hello: %v", err)
	}
	if m.get(RefusedHelloPanics) != 1 {
		t.Errorf("refusals counted %v", m)
	}
}

var fsPathErr = fs.PathError{Op: "write", Path: "/srv/ferry/store/packs/000001.pack", Err: syscall.ENOSPC}

// lockedBuf is a log sink for a server's goroutines.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// fakeClock is time a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestHelloOtherProtocolVersion: a hello in another protocol version, with
// a good token, is refused with a reply that names both versions, and no
// request is served on that connection.
func TestHelloOtherProtocolVersion(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	tok := s.token(t, "a", PermWrite)
	conn, err := quic.DialAddr(ctx, s.addr, clientTLS(s.fp, nil), QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte{kindHello}); err != nil {
		t.Fatal(err)
	}
	if err := writeMessage(st, Hello{Proto: ProtoVersion + 1, Token: tok, Namespace: "a"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var reply HelloReply
	if err := readMessage(st, &reply); err != nil {
		t.Fatalf("no reply to a hello in another version: %v", err)
	}
	err = fromWire(reply.Err, "", cas.Ref{})
	want := fmt.Sprintf("protocol version %d, this server speaks %d", ProtoVersion+1, ProtoVersion)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(fmt.Sprint(err), want) {
		t.Fatalf("hello in version %d: %v, want ErrProtocol saying %q", ProtoVersion+1, err, want)
	}
	if _, err := rawRequest(ctx, conn, Request{Op: opHead, Root: "r"}); err == nil {
		t.Fatal("a request was served after a refused hello")
	}
}
