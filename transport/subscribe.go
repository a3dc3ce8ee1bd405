package transport

import (
	"time"

	"github.com/quic-go/quic-go"
)

// subscriber is one subscribe stream's queue. The queue is bounded: a
// subscriber that does not keep up is cut off (and resyncs on
// reconnect), rather than growing the server's memory.
type subscriber struct {
	roots  map[string]bool // empty: all
	events chan Event
	over   chan struct{}
}

func (s *Server) publish(ns string, e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs[ns] {
		if len(sub.roots) > 0 && !sub.roots[e.Root] {
			continue
		}
		select {
		case sub.events <- e:
		default:
			select {
			case <-sub.over:
			default:
				close(sub.over)
			}
		}
	}
}

func (s *session) serveSubscribe(st *quic.Stream) {
	var req Request
	err := readLast(st, &req)
	if err == nil {
		err = s.need(PermRead)
	}
	if err != nil {
		_ = writeMessage(st, Response{Err: toWire(err)})
		st.CancelRead(resetError)
		st.Close()
		return
	}
	sub := &subscriber{roots: map[string]bool{}, events: make(chan Event, 64), over: make(chan struct{})}
	for _, r := range req.Roots {
		sub.roots[r] = true
	}
	name := s.ns.Name()
	s.srv.mu.Lock()
	if s.srv.subs[name] == nil {
		s.srv.subs[name] = map[*subscriber]struct{}{}
	}
	s.srv.subs[name][sub] = struct{}{}
	s.srv.mu.Unlock()
	defer func() {
		s.srv.mu.Lock()
		delete(s.srv.subs[name], sub)
		s.srv.mu.Unlock()
	}()
	// The first message says the subscription is in place.
	if err := writeMessage(st, Response{}); err != nil {
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	ctx := st.Context()
	for {
		select {
		case e := <-sub.events:
			_ = st.SetWriteDeadline(time.Now().Add(s.srv.opts.StreamIdle))
			if err := writeMessage(st, Response{Event: &e}); err != nil {
				return
			}
		case <-sub.over:
			_ = writeMessage(st, Response{Err: &WireError{Code: codeUnavailable, Msg: "subscription fell behind; resubscribe and resync"}})
			st.Close()
			return
		case <-ctx.Done():
			return
		}
	}
}
