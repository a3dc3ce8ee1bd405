package transport

import (
	"context"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
)

// hasCall is one caller waiting for a has answer.
type hasCall struct {
	refs []cas.Ref
	has  []bool
	err  error
	done chan struct{}
}

// Has asks which refs the namespace has. Concurrent callers are batched
// into one request while another is in flight, so many uploaders asking
// about one chunk each cost one round trip, not one each.
func (c *Client) Has(ctx context.Context, refs []cas.Ref) ([]bool, error) {
	if len(refs) == 0 {
		return []bool{}, nil
	}
	// Blobs on their way up count as had: they will be stored, or Flush
	// will report why not.
	if len(refs) == 1 && c.uploading(refs[0]) {
		return []bool{true}, nil
	}
	if len(refs) > MaxRefs {
		out := make([]bool, 0, len(refs))
		for i := 0; i < len(refs); i += MaxRefs {
			part, err := c.Has(ctx, refs[i:min(i+MaxRefs, len(refs))])
			if err != nil {
				return nil, err
			}
			out = append(out, part...)
		}
		return out, nil
	}
	call := &hasCall{refs: refs, done: make(chan struct{})}
	c.hasMu.Lock()
	c.hasQueue = append(c.hasQueue, call)
	if !c.hasRunning {
		c.hasRunning = true
		go c.runHas()
	}
	c.hasMu.Unlock()
	select {
	case <-call.done:
		return call.has, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Client) runHas() {
	for {
		c.hasMu.Lock()
		var batch []*hasCall
		n := 0
		for len(c.hasQueue) > 0 && n+len(c.hasQueue[0].refs) <= MaxRefs {
			n += len(c.hasQueue[0].refs)
			batch = append(batch, c.hasQueue[0])
			c.hasQueue = c.hasQueue[1:]
		}
		if len(batch) == 0 {
			c.hasRunning = false
			c.hasMu.Unlock()
			return
		}
		c.hasMu.Unlock()
		var all []cas.Ref
		for _, call := range batch {
			all = append(all, call.refs...)
		}
		resp, err := c.request(context.Background(), Request{Op: opHas, Refs: refsToWire(all)})
		if err == nil && len(resp.Has) != (len(all)+7)/8 {
			err = fmt.Errorf("%w: has bitmap of %d bytes for %d refs", ErrProtocol, len(resp.Has), len(all))
		}
		i := 0
		for _, call := range batch {
			call.err = err
			if err == nil {
				call.has = make([]bool, len(call.refs))
				for j, r := range call.refs {
					call.has[j] = resp.Has[i/8]&(1<<(i%8)) != 0 || c.uploading(r)
					i++
				}
			}
			close(call.done)
		}
	}
}

// frameRate is the slowest a download's frame may arrive, once started:
// 32 KiB/s, so a 8 MiB chunk has four minutes more.
const frameRate = 32 << 10
