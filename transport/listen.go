package transport

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

	"github.com/quic-go/quic-go"
)

// Listener accepts QUIC connections on one UDP socket.
type Listener struct {
	tr *quic.Transport
	ln *quic.Listener
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
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(ServerTLS(cert), QUICConfig())
	if err != nil {
		tr.Close()
		return nil, err
	}
	return &Listener{tr: tr, ln: ln}, nil
}

// Addr is the address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting and closes the socket.
func (l *Listener) Close() error { return errors.Join(l.ln.Close(), l.tr.Close()) }
