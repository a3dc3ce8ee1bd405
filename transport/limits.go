package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/quic-go/quic-go"
	"golang.org/x/sync/semaphore"
)

// Limits bound what clients together may hold of a server (RELIABILITY
// D4-D7). The zero value takes the defaults; a negative field turns that
// limit off.
type Limits struct {
	// ConnsPerIP caps connections, handshakes included, from one source
	// address (default 256: a NAT can put an office behind one address).
	ConnsPerIP int
	// ConnsPerToken caps authenticated connections of one token
	// (default 64).
	ConnsPerToken int
	// UploadBytes is the budget of upload bytes held in memory at once,
	// over every connection: a put frame waits for credit before its
	// payload is read (default 256 MiB). Frames beyond it stay in QUIC's
	// flow-control windows, which the sender cannot pass.
	UploadBytes int64
	// DownloadBytes is the same for blobs read to be sent (default 256 MiB).
	DownloadBytes int64
	// AuthFailures is how many failed authentications an address may make
	// in a burst; one more is allowed every AuthFailEvery (defaults 10 and
	// 6s). Past it, hellos from the address are refused unread.
	AuthFailures  int
	AuthFailEvery time.Duration
	// Handshakes is how many handshakes may be in progress before new
	// clients must prove their address with a Retry round trip first
	// (default 64), so a flood of spoofed Initials costs the server one
	// stateless packet each.
	Handshakes int
}

// WithDefaults returns l with its zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.ConnsPerIP, 256)
	def(&l.ConnsPerToken, 64)
	def(&l.AuthFailures, 10)
	def(&l.Handshakes, 64)
	if l.UploadBytes == 0 {
		l.UploadBytes = 256 << 20
	}
	if l.DownloadBytes == 0 {
		l.DownloadBytes = 256 << 20
	}
	if l.AuthFailEvery == 0 {
		l.AuthFailEvery = 6 * time.Second
	}
	return l
}

// Refusal reasons, the label of the refused-connections metric.
const (
	RefusedHandshake   = "handshake"    // the TLS handshake or the hello failed
	RefusedAuth        = "auth"         // a wrong, revoked or foreign token
	RefusedAuthRate    = "auth-rate"    // too many failed authentications from the address
	RefusedConnsIP     = "conns-ip"     // ConnsPerIP reached
	RefusedConnsToken  = "conns-token"  // ConnsPerToken reached
	RefusedRetry       = "retry"        // asked to prove its address (a Retry sent)
	RefusedHelloPanics = "hello-panics" // the hello handler panicked
	RefusedResumed     = "resumed"      // used 0-RTT or resumed a TLS session (never allowed)
)

// errBusy refuses a connection past a cap; the client may try again later.
var errBusy = fmt.Errorf("%w: too many connections", ErrUnavailable)

// gate admits connections: per-address and per-token counts, the failed
// authentication buckets, and the handshakes in progress that decide
// when to ask for a Retry.
type gate struct {
	lim     Limits
	now     func() time.Time
	log     *slog.Logger
	metrics Metrics
	up      budget // upload bytes held
	down    budget // download bytes held

	mu          sync.Mutex
	perIP       map[netip.Addr]int
	perToken    map[string]int
	fails       map[netip.Addr]*bucket
	handshaking int
	logged      bucket // failure log lines, so a flood does not flood the log
	suppressed  int
}

func newGate(lim Limits, now func() time.Time, log *slog.Logger, m Metrics) *gate {
	lim = lim.WithDefaults()
	g := &gate{lim: lim, now: now, log: log, metrics: m, perIP: map[netip.Addr]int{}, perToken: map[string]int{}, fails: map[netip.Addr]*bucket{}}
	g.up, g.down = newBudget(lim.UploadBytes), newBudget(lim.DownloadBytes)
	g.logged = bucket{tokens: 20, last: now()}
	return g
}

// connKey marks a connection's context with its admission, so that Serve
// can tell the gate its handshake completed.
type connKey struct{}

type admission struct {
	g    *gate
	ip   netip.Addr
	once sync.Once // the handshake's end, completed or failed
}

func addrIP(a net.Addr) netip.Addr {
	if ua, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ua.IP); ok {
			return ip.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// admit is quic.Transport.ConnContext: it counts the connection against
// its address until the connection's context ends.
func (g *gate) admit(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	ip := addrIP(info.RemoteAddr)
	g.mu.Lock()
	if g.lim.ConnsPerIP > 0 && g.perIP[ip] >= g.lim.ConnsPerIP {
		g.mu.Unlock()
		g.refused(RefusedConnsIP, "remote", info.RemoteAddr.String(), "max", g.lim.ConnsPerIP)
		return nil, errBusy
	}
	g.perIP[ip]++
	g.handshaking++
	g.mu.Unlock()
	a := &admission{g: g, ip: ip}
	remote := info.RemoteAddr.String()
	context.AfterFunc(ctx, func() {
		g.mu.Lock()
		if g.perIP[ip]--; g.perIP[ip] <= 0 {
			delete(g.perIP, ip)
		}
		g.mu.Unlock()
		a.once.Do(func() {
			g.handshakeDone()
			g.refused(RefusedHandshake, "remote", remote, "err", context.Cause(ctx))
		})
	})
	return context.WithValue(ctx, connKey{}, a), nil
}

func (g *gate) handshakeDone() {
	g.mu.Lock()
	g.handshaking--
	g.mu.Unlock()
}

// established tells the gate a connection finished its handshake.
func (g *gate) established(conn *quic.Conn) {
	if a, ok := conn.Context().Value(connKey{}).(*admission); ok {
		a.once.Do(g.handshakeDone)
	}
}

// verify is quic.Transport.VerifySourceAddress: past the handshake
// limit, a client proves it receives at its address before the server
// keeps any state for it.
func (g *gate) verify(net.Addr) bool {
	if g.lim.Handshakes <= 0 {
		return false
	}
	g.mu.Lock()
	busy := g.handshaking >= g.lim.Handshakes
	g.mu.Unlock()
	if busy {
		g.metrics.Refused(RefusedRetry)
	}
	return busy
}

// authAllowed reports whether the address may try a token now.
func (g *gate) authAllowed(ip netip.Addr) (bool, time.Duration) {
	if g.lim.AuthFailures <= 0 {
		return true, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.fails[ip]
	if b == nil {
		return true, 0
	}
	b.refill(g.now(), g.lim.AuthFailEvery, g.lim.AuthFailures)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(g.lim.AuthFailEvery))
}

// authFailed takes one attempt from the address's bucket.
func (g *gate) authFailed(ip netip.Addr) {
	if g.lim.AuthFailures <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	b := g.fails[ip]
	if b == nil {
		if len(g.fails) >= 1<<16 {
			g.pruneLocked(now)
		}
		b = &bucket{tokens: float64(g.lim.AuthFailures), last: now}
		g.fails[ip] = b
	}
	b.refill(now, g.lim.AuthFailEvery, g.lim.AuthFailures)
	b.tokens = max(b.tokens-1, 0)
}

// pruneLocked forgets addresses whose buckets have refilled: they are
// indistinguishable from addresses never seen.
func (g *gate) pruneLocked(now time.Time) {
	for ip, b := range g.fails {
		b.refill(now, g.lim.AuthFailEvery, g.lim.AuthFailures)
		if b.tokens >= float64(g.lim.AuthFailures) {
			delete(g.fails, ip)
		}
	}
}

// holdToken counts an authenticated connection of token id; release
// gives the slot back.
func (g *gate) holdToken(id string) (release func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lim.ConnsPerToken > 0 && g.perToken[id] >= g.lim.ConnsPerToken {
		return nil, fmt.Errorf("%w: the token has %d connections open (max %d)", ErrUnavailable, g.perToken[id], g.lim.ConnsPerToken)
	}
	g.perToken[id]++
	return func() {
		g.mu.Lock()
		if g.perToken[id]--; g.perToken[id] <= 0 {
			delete(g.perToken, id)
		}
		g.mu.Unlock()
	}, nil
}

// refused counts a refusal and logs it, at most about one line a second
// after a burst of twenty, saying how many it left out.
func (g *gate) refused(reason string, args ...any) {
	g.metrics.Refused(reason)
	g.mu.Lock()
	g.logged.refill(g.now(), time.Second, 20)
	ok := g.logged.tokens >= 1
	var skipped int
	if ok {
		g.logged.tokens--
		skipped, g.suppressed = g.suppressed, 0
	} else {
		g.suppressed++
	}
	g.mu.Unlock()
	if !ok {
		return
	}
	if skipped > 0 {
		args = append(args, "suppressed", skipped)
	}
	g.log.Info("connection refused", append([]any{"reason", reason}, args...)...)
}

// budget is bytes of memory shared by waiting: a connection's share of a
// server's, or the server's whole.
type budget struct {
	sem  *semaphore.Weighted // nil: unlimited
	size int64
}

func newBudget(size int64) budget {
	if size <= 0 {
		return budget{}
	}
	return budget{sem: semaphore.NewWeighted(size), size: size}
}

// share is a connection's part of a server's budget: an eighth, but room
// for the largest frame's payload and its decompression, so one
// connection cannot hold the whole and any frame fits.
func (b budget) share() budget {
	if b.sem == nil {
		return budget{}
	}
	return newBudget(min(b.size, max(b.size/8, 2*cas.MaxBlobSize)))
}

// acquire takes n bytes of the connection's share and then of the
// server's budget, waiting for both; a request larger than a budget takes
// all of it.
func acquire(ctx context.Context, conn, server budget, n int64) (release func(), err error) {
	if n <= 0 {
		return func() {}, nil
	}
	var held []func()
	release = func() {
		for _, r := range held {
			r()
		}
	}
	for _, b := range []budget{conn, server} {
		if b.sem == nil {
			continue
		}
		k := min(n, b.size)
		if err := b.sem.Acquire(ctx, k); err != nil {
			release()
			return nil, err
		}
		held = append(held, func() { b.sem.Release(k) })
	}
	return release, nil
}

// bucket is a token bucket refilled at one token per interval.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) refill(now time.Time, every time.Duration, burst int) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(burst), b.tokens+float64(d)/float64(every))
		b.last = now
	}
}
