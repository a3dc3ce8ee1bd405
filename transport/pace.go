package transport

import (
	"context"
	"io"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
)

// pacePiece is how many bytes move between two waits on a bandwidth
// limit: small enough that a limit holds smoothly, large enough that
// waiting costs nothing at speed.
const pacePiece = 16 << 10

// Limiter is a bandwidth limit shared by every stream of a client
// (restic's --limit-upload and --limit-download): a token bucket of bytes.
type Limiter struct{ l *rate.Limiter }

// NewLimiter limits to bytesPerSec; zero or less is no limit (nil).
func NewLimiter(bytesPerSec int64) *Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	return &Limiter{l: rate.NewLimiter(rate.Limit(bytesPerSec), pacePiece)}
}

// wait takes n bytes from the bucket, a piece at a time.
func (l *Limiter) wait(ctx context.Context, n int) error {
	for n > 0 {
		k := min(n, pacePiece)
		if err := l.l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// rate is the limit in bytes a second.
func (l *Limiter) rate() int64 { return int64(l.l.Limit()) }

// slowest is the lowest rate at which n bytes may move before a deadline
// fires: frameRate, or the limit when it is lower.
func slowest(l *Limiter) int64 {
	if l != nil && l.rate() < frameRate {
		return max(l.rate(), 1)
	}
	return frameRate
}

// pacedWrite writes b through l, a piece at a time.
func pacedWrite(ctx context.Context, w io.Writer, l *Limiter, b []byte) error {
	if l == nil {
		_, err := w.Write(b)
		return err
	}
	for len(b) > 0 {
		k := min(len(b), pacePiece)
		if err := l.wait(ctx, k); err != nil {
			return err
		}
		if _, err := w.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

// pacedReader reads through a limit: each read's bytes are taken from
// the bucket after they arrive, so the stream's flow control holds the
// sender to the rate the reader allows.
type pacedReader struct {
	ctx context.Context
	r   io.Reader
	l   *Limiter
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(b) > pacePiece {
		b = b[:pacePiece]
	}
	n, err := p.r.Read(b)
	if n > 0 {
		if werr := p.l.wait(p.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// idleReader moves a stream's read deadline on with every read that
// brings bytes: the stream may take as long as it likes, as long as it
// never stalls for idle (a client under a bandwidth limit sends a large
// frame slowly but steadily).
type idleReader struct {
	st   *quic.Stream
	idle time.Duration
}

func (r idleReader) Read(b []byte) (int, error) {
	_ = r.st.SetReadDeadline(time.Now().Add(r.idle))
	return r.st.Read(b)
}

// idleWrite writes b in pieces, moving the write deadline on with each:
// a reader under a bandwidth limit takes a large frame slowly.
func idleWrite(st *quic.Stream, idle time.Duration, b []byte) error {
	for len(b) > 0 {
		k := min(len(b), 256<<10)
		_ = st.SetWriteDeadline(time.Now().Add(idle))
		if _, err := st.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}
