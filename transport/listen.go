package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// Listener accepts QUIC connections on one UDP socket.
type Listener struct {
	tr *quic.Transport
	ln *quic.Listener
	// gate admits connections once a Server serves the listener; before
	// that nothing is accepted anyway, and connections wait in its queue.
	gate atomic.Pointer[gate]
}

// Listen opens a UDP socket on addr with large buffers (quic-go loses a
// quarter to a third of its throughput at the common 208 KiB default)
// and listens on it with the server's TLS config.
func Listen(addr string, cert tls.Certificate, log *slog.Logger) (*Listener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	for _, set := range []func(int) error{udp.SetReadBuffer, udp.SetWriteBuffer} {
		if err := set(8 << 20); err != nil {
			log.Debug("udp buffer", "err", err)
		}
	}
	l := &Listener{}
	l.tr = &quic.Transport{
		Conn: udp,
		ConnContext: func(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
			if g := l.gate.Load(); g != nil {
				return g.admit(ctx, info)
			}
			return ctx, nil
		},
		VerifySourceAddress: func(a net.Addr) bool {
			g := l.gate.Load()
			return g != nil && g.verify(a)
		},
	}
	ln, err := l.tr.Listen(ServerTLS(cert), QUICConfig())
	if err != nil {
		l.tr.Close()
		return nil, err
	}
	l.ln = ln
	return l, nil
}

// Addr is the address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting and closes the socket.
func (l *Listener) Close() error { return errors.Join(l.ln.Close(), l.tr.Close()) }
