package transport

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/internal/failpoint"
	"github.com/quic-go/quic-go"
)

// upItem is one blob on its way to the server, in its stored form.
type upItem struct {
	ref     cas.Ref
	flags   cas.Flags
	rawLen  int
	payload []byte
	held    int64 // bytes of the queue budget it holds
}

const (
	// itemCost is what the queue budget charges a blob beyond its bytes
	// (its upItem, map entry and frame header), so a queue of tiny blobs
	// is bounded too, without charging each a large unit: at 64 KiB a
	// blob, 32 MiB held 512 of a tree's small files, one has-many round
	// trip's worth, and a push over a long link waited on it.
	itemCost = 256
	// streamBytes is how much one put stream carries before it is closed
	// and acknowledged; acknowledgements are the durability points.
	streamBytes = 8 << 20
	// streamFrames bounds the frames of one put stream, so many small
	// blobs are acknowledged (and made durable) as they go.
	streamFrames = 1024
	// streamIdle closes a put stream that has had nothing to send for a
	// while; Flush closes streams at once.
	streamIdle = 50 * time.Millisecond
)

// Put queues a blob for upload and returns; the blob is durable once
// Flush returns without error. The bytes are checked against ref first,
// compressed once (the stored form is what travels), and copied, so the
// caller may reuse data.
func (c *Client) Put(ctx context.Context, ref cas.Ref, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(data) > cas.MaxBlobSize {
		return fmt.Errorf("%w: %d bytes", cas.ErrTooBig, len(data))
	}
	if got := cas.Sum(data); got != ref {
		return fmt.Errorf("%w: put %s: bytes hash to %s", cas.ErrCorrupt, ref.Short(), got.Short())
	}
	if err := c.stickyErr(); err != nil {
		return err
	}
	if c.uploading(ref) {
		return nil // already on its way
	}
	// One buffer the size of data serves both outcomes: the encoder never
	// grows it, and raw bytes are copied into it. A payload that shrank a
	// lot is copied out, so that what waits in flight is what the budget
	// counts.
	buf := make([]byte, 0, len(data))
	payload, flags := cas.Encode(buf, data)
	switch {
	case flags == 0:
		payload = append(buf, data...)
	case cap(payload) > 2*len(payload):
		payload = slices.Clone(payload)
	}
	it := &upItem{ref: ref, flags: flags, rawLen: len(data), payload: payload, held: min(int64(len(payload)+itemCost), c.opts.QueueBytes)}
	if err := c.budget.Acquire(ctx, it.held); err != nil {
		return err
	}
	c.upMu.Lock()
	c.inFlight++
	c.upRefs[ref]++
	c.upMu.Unlock()
	select {
	case c.checkQ <- it:
		return nil
	case <-ctx.Done():
		c.finish([]*upItem{it}, ctx.Err())
		return ctx.Err()
	}
}

// checker asks the server, in batches, which queued blobs it already has:
// those are done, the rest go to the senders. Put never waits for this
// round trip, so a caller that did not ask Has first pays nothing for it.
func (c *Client) checker() {
	defer c.senders.Done()
	for {
		var batch []*upItem
		select {
		case it := <-c.checkQ:
			batch = append(batch, it)
		case <-c.closing:
			return
		}
	drain:
		for len(batch) < MaxRefs {
			select {
			case it := <-c.checkQ:
				batch = append(batch, it)
			default:
				break drain
			}
		}
		refs := make([][]byte, len(batch))
		for i, it := range batch {
			refs[i] = it.ref[:]
		}
		resp, err := c.request(context.Background(), Request{Op: opHas, Refs: refs})
		if err == nil && len(resp.Has) != (len(batch)+7)/8 {
			err = fmt.Errorf("%w: has bitmap of %d bytes for %d refs", ErrProtocol, len(resp.Has), len(batch))
		}
		if err != nil {
			c.finish(batch, fmt.Errorf("put: %w", err))
			continue
		}
		var had []*upItem
		for i, it := range batch {
			if resp.Has[i/8]&(1<<(i%8)) != 0 {
				had = append(had, it)
				continue
			}
			c.sendQ <- it
		}
		c.finish(had, nil)
	}
}

// release gives back what an item holds of the queue budget.
func (c *Client) release(it *upItem) {
	if it.held > 0 {
		c.budget.Release(it.held)
		it.held = 0
	}
}

// uploading reports whether ref is queued or in flight.
func (c *Client) uploading(ref cas.Ref) bool {
	c.upMu.Lock()
	defer c.upMu.Unlock()
	return c.upRefs[ref] > 0
}

func (c *Client) stickyErr() error {
	c.upMu.Lock()
	defer c.upMu.Unlock()
	return c.upErr
}

// finish settles items: they are acknowledged (err nil) or failed.
func (c *Client) finish(items []*upItem, err error) {
	for _, it := range items {
		c.release(it)
	}
	c.upMu.Lock()
	c.inFlight -= len(items)
	for _, it := range items {
		if c.upRefs[it.ref]--; c.upRefs[it.ref] <= 0 {
			delete(c.upRefs, it.ref)
		}
	}
	if err != nil && c.upErr == nil {
		c.upErr = err
	}
	c.upCond.Broadcast()
	c.upMu.Unlock()
}

// Flush waits until every blob put so far is acknowledged (stored
// durably), and reports the first upload error. After an error the client
// takes no more puts; a new client (a rerun) resumes, sending only what
// the server lacks.
func (c *Client) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		c.upMu.Lock()
		c.upCond.Broadcast()
		c.upMu.Unlock()
	})
	defer stop()
	c.upMu.Lock()
	defer c.upMu.Unlock()
	// Tell the senders to close their streams now rather than when idle.
	close(c.flushCh)
	c.flushCh = make(chan struct{})
	for c.inFlight > 0 && c.upErr == nil && ctx.Err() == nil {
		c.upCond.Wait()
	}
	if c.upErr != nil {
		return c.upErr
	}
	return ctx.Err()
}

// putStream is one open put stream and the items written to it.
type putStream struct {
	conn  *quic.Conn
	st    *quic.Stream
	items []*upItem
	bytes int
}

// sender owns one put stream at a time: it writes queued blobs into it
// and closes it after streamBytes, or when the queue has been empty for
// streamIdle, then waits for the server's acknowledgement.
func (c *Client) sender(conn *quic.Conn) {
	defer c.senders.Done()
	var ps *putStream
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	head := make([]byte, 0, frameHead)
	flushing := false // a Flush asked: send what is queued, then close
	for {
		var it *upItem
		switch {
		case ps == nil:
			flushing = false
			select {
			case it = <-c.sendQ:
			case <-c.closing:
				return
			}
		case flushing:
			select {
			case it = <-c.sendQ:
			default:
				c.closeStream(ps)
				ps = nil
				continue
			}
		default:
			c.upMu.Lock()
			flushNow := c.flushCh
			c.upMu.Unlock()
			select {
			case it = <-c.sendQ:
			case <-idle.C:
				c.closeStream(ps)
				ps = nil
				continue
			case <-flushNow:
				flushing = true
				continue
			}
		}
		if err := c.stickyErr(); err != nil {
			c.finish([]*upItem{it}, err)
			continue
		}
		if ps == nil {
			octx, cancel := context.WithTimeout(context.Background(), c.opts.RequestTimeout)
			st, err := conn.OpenStreamSync(octx)
			cancel()
			if err == nil {
				_, err = st.Write([]byte{kindPut})
			}
			if err != nil {
				c.finish([]*upItem{it}, fmt.Errorf("put: %w", c.connErr(err)))
				continue
			}
			ps = &putStream{conn: conn, st: st}
		}
		head = AppendFrameHeader(head[:0], FrameHeader{Ref: it.ref, Flags: it.flags, RawLen: uint32(it.rawLen), StoredLen: uint32(len(it.payload))})
		// A server that stops reading is cut off as one that stops
		// sending is (readFrame).
		_ = ps.st.SetWriteDeadline(time.Now().Add(c.opts.FrameIdle + time.Duration(len(it.payload))*time.Second/time.Duration(slowest(c.opts.LimitUpload))))
		err := pacedWrite(conn.Context(), ps.st, c.opts.LimitUpload, head)
		if err == nil {
			err = pacedWrite(conn.Context(), ps.st, c.opts.LimitUpload, it.payload)
		}
		ps.items = append(ps.items, it)
		if err != nil {
			// The server ended the stream (it refused a frame): its
			// answer says why.
			c.closeStream(ps)
			ps = nil
			continue
		}
		n := frameHead + len(it.payload)
		ps.bytes += n
		// The bytes are in the stream's hands: the queue's memory is free,
		// though the blob stays in flight until the server acknowledges.
		c.release(it)
		c.BlobsSent.Add(1)
		c.BytesSent.Add(int64(n))
		failpoint.Hit("client-blob-sent")
		it.payload = nil // sent; the memory can go
		if ps.bytes >= streamBytes || len(ps.items) >= streamFrames {
			c.closeStream(ps)
			ps = nil
			continue
		}
		idle.Reset(streamIdle)
	}
}

// closeStream ends a put stream and waits for its acknowledgement.
func (c *Client) closeStream(ps *putStream) {
	ps.st.Close()
	var resp Response
	_ = ps.st.SetReadDeadline(time.Now().Add(c.opts.RequestTimeout))
	err := readMessage(ps.st, &resp)
	if err == nil && resp.Err != nil {
		err = fromWire(resp.Err, "", cas.Ref{})
	}
	switch {
	case isTimeout(err) && ps.conn.Context().Err() == nil:
		err = fmt.Errorf("put: %w: the server did not take or acknowledge an upload within %v", ErrUnavailable, c.opts.RequestTimeout)
	case err != nil:
		err = fmt.Errorf("put: %w", c.connErr(err))
	}
	ps.st.CancelRead(0)
	c.finish(ps.items, err)
}
