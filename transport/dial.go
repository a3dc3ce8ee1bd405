package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/quic-go/quic-go"
)

// ParseURL splits quic://HOST:PORT/NAMESPACE. The port defaults to 7443;
// an empty namespace is an admin token's connection to none. A cluster's
// URL may list its servers, quic://A:7443,B:7443/NAMESPACE: addr is then
// the list, comma-separated, which Dial tries in turn.
func ParseURL(raw string) (addr, namespace string, err error) {
	if rest, ok := strings.CutPrefix(raw, "quic://"); ok {
		hosts, path, _ := strings.Cut(rest, "/")
		if strings.Contains(hosts, ",") {
			var addrs []string
			for _, h := range strings.Split(hosts, ",") {
				a, ns, err := ParseURL("quic://" + h + "/" + path)
				if err != nil || h == "" {
					return "", "", fmt.Errorf("remote %q: want quic://HOST:PORT[,HOST:PORT...]/NAMESPACE", raw)
				}
				addrs, namespace = append(addrs, a), ns
			}
			return strings.Join(addrs, ","), namespace, nil
		}
	}
	bad := fmt.Errorf("remote %q: want quic://HOST:PORT/NAMESPACE", raw)
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "quic" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", bad
	}
	if !validHost(u.Hostname()) || strings.Contains(u.Hostname(), ":") != strings.HasPrefix(u.Host, "[") {
		// An IPv6 address must be in brackets: quic://::1 would read as
		// host ":" and port 1.
		return "", "", bad
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return "", "", bad
		}
		port = "7443"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("remote %q: port %q", raw, port)
	}
	namespace = strings.Trim(u.Path, "/")
	if namespace != "" {
		if err := cas.ValidName(namespace); err != nil {
			return "", "", fmt.Errorf("remote %q: namespace: %w", raw, err)
		}
	}
	return net.JoinHostPort(u.Hostname(), port), namespace, nil
}

// validHost accepts an IP address or a DNS name (letters, digits, '-',
// '_' and '.'; at most 253 bytes).
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Dial connects and authenticates. namespace may be empty for an admin
// token that works across namespaces.
//
// addr may list a cluster's servers, comma-separated (see ParseURL): they
// are tried in turn from a random one, so that clients spread over them,
// until one answers; the error is the last one's.
func Dial(ctx context.Context, addr, namespace string, opts ClientOptions) (*Client, error) {
	addrs := strings.Split(addr, ",")
	if len(addrs) == 1 {
		return dialOne(ctx, addr, namespace, opts)
	}
	start := rand.IntN(len(addrs))
	order := make([]string, 0, len(addrs))
	for i := range addrs {
		order = append(order, addrs[(start+i)%len(addrs)])
	}
	// Servers the caller saw fail go last.
	slices.SortStableFunc(order, func(a, b string) int {
		return cmpBool(slices.Contains(opts.Avoid, a), slices.Contains(opts.Avoid, b))
	})
	var err error
	for _, a := range order {
		var c *Client
		if c, err = dialOne(ctx, a, namespace, opts); err == nil {
			return c, nil
		}
		if !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrUnavailable) {
			return nil, err // refused by a server: another would refuse too
		}
		opts.Logger.Info("server unreachable; trying the next", "addr", a, "err", err)
	}
	return nil, err
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// dialOne connects to one server, trying again a few times, a little
// later each time, while the server refuses at the QUIC level: a busy
// server refuses a connection whose handshake completes while its accept
// queue is full, and a moment later has room.
func dialOne(ctx context.Context, addr, namespace string, opts ClientOptions) (*Client, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	pause := 100 * time.Millisecond
	for try := 1; ; try++ {
		c, err := dialOnce(ctx, addr, namespace, opts)
		var te *quic.TransportError
		if err == nil || try == 6 || !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
			return c, err
		}
		opts.Logger.Info("server busy; dialing again", "addr", addr, "in", pause, "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause *= 2
	}
}

func dialOnce(ctx context.Context, addr, namespace string, opts ClientOptions) (*Client, error) {
	conn, err := quic.DialAddr(ctx, addr, clientTLS(opts.Fingerprint, opts.FirstUse), opts.quicConfig())
	if err != nil {
		if errors.Is(err, ErrFingerprint) {
			return nil, fmt.Errorf("dial %s: %w", addr, ErrFingerprint)
		}
		if unreachable(err) {
			return nil, fmt.Errorf("dial %s: %w: %w", addr, ErrUnreachable, err)
		}
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	conns := []*quic.Conn{conn}
	if opts.Connections > 1 {
		more, err := dialLanes(ctx, addr, conn, opts)
		if err != nil {
			conn.CloseWithError(closeOK, "")
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		conns = append(conns, more...)
	}
	c, err := newClient(ctx, conns, namespace, opts)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c.addr = addr
	return c, nil
}

// Addr is the address of the server the client is connected to (one of
// a cluster's, when Dial was given several).
func (c *Client) Addr() string { return c.addr }

// dialLanes makes a client's Connections-1 further connections, at once,
// pinned to the certificate the first one saw (which a first use may have
// just accepted).
func dialLanes(ctx context.Context, addr string, first *quic.Conn, opts ClientOptions) ([]*quic.Conn, error) {
	certs := first.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no server certificate", ErrProtocol)
	}
	fp := Fingerprint(certs[0].Raw)
	conns := make([]*quic.Conn, opts.Connections-1)
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			conns[i], errs[i] = quic.DialAddr(ctx, addr, clientTLS(fp, nil), opts.quicConfig())
		})
	}
	wg.Wait()
	var lost error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !laneLost(err) {
			for _, c := range conns {
				if c != nil {
					c.CloseWithError(closeOK, "")
				}
			}
			return nil, fmt.Errorf("more connections: %w", err)
		}
		lost = err
	}
	// Those a busy server refused are done without (see newClient).
	kept := conns[:0]
	for _, c := range conns {
		if c != nil {
			kept = append(kept, c)
		}
	}
	if lost != nil {
		opts.Logger.Info("further connections not made", "made", len(kept), "asked", len(conns), "err", lost)
	}
	return kept, nil
}
