package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/quic-go/quic-go"
)

// readFrame reads one frame of a download with deadlines: FrameIdle for
// its header, and then time for its length at frameRate, so a server
// that sends a byte now and then is cut off.
func (c *Client) readFrame(conn *quic.Conn, st *quic.Stream, buf []byte) (FrameHeader, []byte, error) {
	_ = st.SetReadDeadline(time.Now().Add(c.opts.FrameIdle))
	h, err := readFrameHeader(st)
	switch {
	case err == io.EOF:
		return h, nil, err
	case isTimeout(err) && conn.Context().Err() == nil:
		return h, nil, fmt.Errorf("%w: the server sent no blob within %v", ErrUnavailable, c.opts.FrameIdle)
	case err != nil && !errors.Is(err, ErrProtocol):
		// A header that does not parse (too large, unknown flags) is the
		// server breaking the protocol, whatever the parser calls it.
		return h, nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	case err != nil || h.NotFound():
		return h, nil, err
	}
	d := c.opts.FrameIdle + time.Duration(h.StoredLen)*time.Second/time.Duration(slowest(c.opts.LimitDownload))
	_ = st.SetReadDeadline(time.Now().Add(d))
	var r io.Reader = st
	if c.opts.LimitDownload != nil {
		r = &pacedReader{ctx: conn.Context(), r: st, l: c.opts.LimitDownload}
	}
	buf, err = readFramePayload(r, h, buf)
	if isTimeout(err) && conn.Context().Err() == nil {
		return h, nil, fmt.Errorf("%w: the server did not send blob %s (%d bytes) within %v", ErrUnavailable, h.Ref.Short(), h.StoredLen, d.Round(time.Second))
	}
	return h, buf, err
}

// isTimeout reports a stream deadline that passed. A connection's idle
// timeout is not one: it is the whole connection going silent, and
// connErr names it.
func isTimeout(err error) bool {
	var idle *quic.IdleTimeoutError
	return errors.Is(err, os.ErrDeadlineExceeded) && !errors.As(err, &idle)
}

// refusedGet says why the server refused a download, which a stream reset
// cannot carry: a share link is asked about itself (it may have expired
// meanwhile), anything else was not the token's to read.
func (c *Client) refusedGet(ctx context.Context) error {
	if c.perm == PermShare {
		if _, err := c.ShareInfo(ctx); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: the server refused the download", ErrPermission)
}

// Get fetches one blob and verifies it. A blob still being uploaded is
// waited for first.
func (c *Client) Get(ctx context.Context, ref cas.Ref) ([]byte, error) {
	if c.uploading(ref) {
		if err := c.Flush(ctx); err != nil {
			return nil, err
		}
	}
	var out []byte
	err := c.GetMany(ctx, []cas.Ref{ref}, func(r cas.Ref, b []byte) error {
		out = append([]byte(nil), b...)
		return nil
	})
	return out, err
}

// GetMany fetches blobs in one stream, calling fn for each, in order,
// with its verified raw bytes (valid during the call). An absent blob is
// cas.ErrNotFound.
func (c *Client) GetMany(ctx context.Context, refs []cas.Ref, fn func(cas.Ref, []byte) error) error {
	for len(refs) > MaxRefs {
		if err := c.GetMany(ctx, refs[:MaxRefs], fn); err != nil {
			return err
		}
		refs = refs[MaxRefs:]
	}
	conn := c.lane()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return c.connErr(err)
	}
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	defer stop()
	defer st.CancelRead(0)
	if _, err := st.Write([]byte{kindGet}); err != nil {
		return c.connErr(err)
	}
	if err := writeMessage(st, Request{Refs: refsToWire(refs)}); err != nil {
		return c.connErr(err)
	}
	st.Close()
	var buf, raw []byte
	for _, want := range refs {
		h, payload, err := c.readFrame(conn, st, buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				err = fmt.Errorf("%w: get stream ended early", ErrProtocol)
			}
			var se *quic.StreamError
			if errors.As(err, &se) && se.Remote && se.ErrorCode == resetError {
				return c.refusedGet(ctx)
			}
			return c.connErr(err)
		}
		if h.Ref != want {
			return fmt.Errorf("%w: asked for %s, got %s", ErrProtocol, want.Short(), h.Ref.Short())
		}
		if h.NotFound() {
			return fmt.Errorf("get %s: %w", want.Short(), cas.ErrNotFound)
		}
		buf = payload[:0]
		c.BlobsFetched.Add(1)
		c.BytesFetched.Add(int64(frameHead + len(payload)))
		data, err := cas.Decode(raw, want, h.Flags, payload, int(h.RawLen))
		if err != nil {
			// Tell the server, which re-reads the blob and records the
			// damage, so that a device holding the bytes sends them again.
			vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, verr := c.Verify(vctx, []cas.Ref{want})
			cancel()
			return errors.Join(fmt.Errorf("from the server: %w", err), verr)
		}
		if h.Flags&cas.FlagZstd != 0 {
			raw = data[:0]
		}
		if err := fn(want, data); err != nil {
			return err
		}
	}
	return nil
}
