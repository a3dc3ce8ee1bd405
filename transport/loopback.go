package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"
)

// LoopbackCopy moves n bytes over a QUIC connection on 127.0.0.1, split
// across streams, with the same TLS and flow-control settings as ferry,
// and no ferry protocol: the raw speed a push is measured against. Both
// ends run in this process.
func LoopbackCopy(ctx context.Context, cert tls.Certificate, n int64, streams int) (time.Duration, error) {
	ln, err := Listen("127.0.0.1:0", cert, nil)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	var g errgroup.Group
	g.Go(func() error {
		conn, err := ln.ln.Accept(ctx)
		if err != nil {
			return err
		}
		var rg errgroup.Group
		for range streams {
			st, err := conn.AcceptStream(ctx)
			if err != nil {
				return err
			}
			rg.Go(func() error {
				_, err := io.Copy(io.Discard, st)
				st.Close()
				return err
			})
		}
		return rg.Wait()
	})
	start := time.Now()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), clientTLS(Fingerprint(cert.Certificate[0]), nil), QUICConfig())
	if err != nil {
		return 0, err
	}
	defer conn.CloseWithError(0, "")
	buf := make([]byte, 1<<20)
	var sg errgroup.Group
	for i := range streams {
		share := n / int64(streams)
		if i == streams-1 {
			share = n - share*int64(streams-1)
		}
		sg.Go(func() error {
			st, err := conn.OpenStreamSync(ctx)
			if err != nil {
				return err
			}
			for left := share; left > 0; {
				k := min(left, int64(len(buf)))
				if _, err := st.Write(buf[:k]); err != nil {
					return err
				}
				left -= k
			}
			st.Close()
			_, err = io.Copy(io.Discard, st) // until the receiver closes
			return err
		})
	}
	if err := sg.Wait(); err != nil {
		return 0, fmt.Errorf("loopback copy: %w", err)
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("loopback copy: %w", err)
	}
	return time.Since(start), nil
}
