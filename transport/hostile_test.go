package transport

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/index"
	"github.com/quic-go/quic-go"
)

// hostileServer speaks ferry's protocol and misbehaves as told (RELIABILITY
// D9): it says hello like a server, then answers each request stream
// with request and each get stream with get. Put streams are read to
// their end and acknowledged, unless put is set.
type hostileServer struct {
	addr, fp string
	request  func(st *quic.Stream, req Request)
	get      func(st *quic.Stream, refs []cas.Ref)
	put      func(st *quic.Stream)
}

func startHostile(t testing.TB, h *hostileServer) *hostileServer {
	t.Helper()
	cert, fp, err := LoadOrCreateCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.addr, h.fp = ln.Addr().String(), fp
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.ln.Accept(ctx)
			if err != nil {
				return
			}
			go h.serve(ctx, conn)
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return h
}

func (h *hostileServer) serve(ctx context.Context, conn *quic.Conn) {
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		return
	}
	var kind [1]byte
	var hello Hello
	if _, err := io.ReadFull(st, kind[:]); err != nil || readMessage(st, &hello) != nil {
		return
	}
	params, _ := json.Marshal(chunk.Default())
	writeMessage(st, HelloReply{Perm: string(PermWrite), Namespace: hello.Namespace, Params: params, Server: "hostile"})
	st.Close()
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		go func() {
			// Closed, not reset: a reset would discard what was written.
			defer st.Close()
			if _, err := io.ReadFull(st, kind[:1]); err != nil {
				return
			}
			var req Request
			switch kind[0] {
			case kindRequest:
				if readMessage(st, &req) == nil {
					if h.request == nil || req.Op == opVerify {
						writeMessage(st, Response{Has: make([]byte, (len(req.Refs)+7)/8)})
						st.Close()
						return
					}
					h.request(st, req)
				}
			case kindGet:
				if readMessage(st, &req) == nil && h.get != nil {
					refs, _ := refsFromWire(req.Refs)
					h.get(st, refs)
				}
			case kindPut:
				if h.put != nil {
					h.put(st)
					return
				}
				io.Copy(io.Discard, st)
				writeMessage(st, Response{})
				st.Close()
			}
		}()
	}
}

// hostileClient dials h with short deadlines.
func hostileClient(t testing.TB, h *hostileServer) *Client {
	t.Helper()
	c, err := Dial(context.Background(), h.addr, "a", ClientOptions{Token: "ferry_hostile", Fingerprint: h.fp,
		RequestTimeout: time.Second, FrameIdle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.CloseWithError(0, "") })
	return c
}

// reply writes raw bytes as a request's answer, then closes.
func reply(st *quic.Stream, b []byte) {
	st.Write(b)
	st.Close()
}

func message(v any) []byte {
	body, _ := encMode.Marshal(v)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func drip(st *quic.Stream, b []byte, every time.Duration) {
	for i := range b {
		if _, err := st.Write(b[i : i+1]); err != nil {
			return
		}
		select {
		case <-st.Context().Done():
			return
		case <-time.After(every):
		}
	}
}

// TestHostileServer runs the client against each misbehaviour: it fails
// with a clear error within its deadlines and a memory bound.
func TestHostileServer(t *testing.T) {
	blob := []byte("the blob the client asks for")
	want := cas.Sum(blob)
	fo, _ := index.FileObjects([]index.ChunkRef{{Ref: want, Len: uint32(len(blob))}})
	// A tree naming itself cannot hash to its own ref; a server that
	// claims one sends bytes that are not what the ref names.
	selfTree := index.EncodeTree(&index.Tree{Entries: []index.Entry{{Name: "loop", Kind: index.KindDir, Mode: 0o755, Ref: want}}})
	frame := func(h FrameHeader, payload []byte) []byte { return append(AppendFrameHeader(nil, h), payload...) }
	history := func(from uint64, n int) []WireHistory {
		out := make([]WireHistory, n)
		for i := range out {
			out[i] = WireHistory{Seq: from + uint64(i), Time: 1, Ref: want[:]}
		}
		return out
	}
	defer func(n int) { maxHistory = n }(maxHistory)
	maxHistory = 20_000

	head := func(c *Client) error { _, err := c.Head(context.Background(), "r"); return err }
	hist := func(c *Client) error { _, err := c.History(context.Background(), "r"); return err }
	get := func(c *Client) error { _, err := c.Get(context.Background(), want); return err }
	for _, tc := range []struct {
		name    string
		h       hostileServer
		call    func(*Client) error
		wantErr error
	}{
		{"history pages that repeat", hostileServer{request: func(st *quic.Stream, req Request) {
			reply(st, message(Response{History: history(1, 100), More: true}))
		}}, hist, ErrProtocol},
		{"history pages that never end", hostileServer{request: func(st *quic.Stream, req Request) {
			reply(st, message(Response{History: history(req.After+1, 1000), More: true}))
		}}, hist, ErrProtocol},
		{"a list that goes back", hostileServer{request: func(st *quic.Stream, req Request) {
			reply(st, message(Response{Refs: [][]byte{want[:]}, More: true}))
		}}, func(c *Client) error { return c.List(context.Background(), func(cas.Ref) error { return nil }) }, ErrProtocol},
		{"an oversized reply", hostileServer{request: func(st *quic.Stream, req Request) {
			reply(st, binary.BigEndian.AppendUint32(nil, 1<<31))
		}}, head, ErrProtocol},
		{"a reply that claims 4 MiB and stops", hostileServer{request: func(st *quic.Stream, req Request) {
			st.Write(binary.BigEndian.AppendUint32(nil, MaxMessage))
			st.Write(make([]byte, 100))
			<-st.Context().Done()
		}}, head, ErrUnavailable},
		{"an endless reply", hostileServer{request: func(st *quic.Stream, req Request) {
			st.Write(message(Response{Ref: want[:]}))
			junk := make([]byte, 64<<10)
			for {
				if _, err := st.Write(junk); err != nil {
					return
				}
			}
		}}, head, nil},
		{"a reply a byte at a time", hostileServer{request: func(st *quic.Stream, req Request) {
			drip(st, message(Response{Ref: want[:]}), 100*time.Millisecond)
		}}, head, ErrUnavailable},
		{"a garbage reply", hostileServer{request: func(st *quic.Stream, req Request) {
			reply(st, []byte("\x00\x00\x00\x10garbage garbage!"))
		}}, head, ErrProtocol},
		{"a wrong-hash blob", hostileServer{get: func(st *quic.Stream, refs []cas.Ref) {
			b := []byte("not the blob the client asks fo")
			reply(st, frame(FrameHeader{Ref: want, RawLen: uint32(len(b)), StoredLen: uint32(len(b))}, b))
		}}, get, cas.ErrCorrupt},
		{"a tree that names itself", hostileServer{get: func(st *quic.Stream, refs []cas.Ref) {
			reply(st, frame(FrameHeader{Ref: want, RawLen: uint32(len(selfTree)), StoredLen: uint32(len(selfTree))}, selfTree))
		}}, get, cas.ErrCorrupt},
		{"a blob it was not asked for", hostileServer{get: func(st *quic.Stream, refs []cas.Ref) {
			reply(st, frame(FrameHeader{Ref: cas.Sum(fo), RawLen: uint32(len(fo)), StoredLen: uint32(len(fo))}, fo))
		}}, get, ErrProtocol},
		{"a frame larger than any blob", hostileServer{get: func(st *quic.Stream, refs []cas.Ref) {
			reply(st, AppendFrameHeader(nil, FrameHeader{Ref: want, RawLen: 1 << 30, StoredLen: 1 << 30}))
		}}, get, ErrProtocol},
		{"garbage frames", hostileServer{get: func(st *quic.Stream, refs []cas.Ref) {
			reply(st, []byte("garbage garbage garbage garbage garbage garbage garbage garbage!"))
		}}, get, ErrProtocol},
		{"a frame a byte at a time", hostileServer{get: func(st *quic.Stream, refs []cas.Ref) {
			drip(st, frame(FrameHeader{Ref: want, RawLen: 32 << 10, StoredLen: 32 << 10}, make([]byte, 32<<10)), 50*time.Millisecond)
		}}, get, ErrUnavailable},
		{"a payload a byte at a time", hostileServer{get: func(st *quic.Stream, refs []cas.Ref) {
			st.Write(AppendFrameHeader(nil, FrameHeader{Ref: want, RawLen: 32 << 10, StoredLen: 32 << 10}))
			drip(st, make([]byte, 32<<10), 50*time.Millisecond)
		}}, get, ErrUnavailable},
		{"no frame at all", hostileServer{get: func(st *quic.Stream, refs []cas.Ref) {
			<-st.Context().Done()
		}}, get, ErrUnavailable},
		{"a share named outside the folder", hostileServer{request: func(st *quic.Stream, req Request) {
			reply(st, message(Response{Share: &ShareInfo{Name: "../../etc/cron.d/x", Kind: "file", Ref: want[:]}}))
		}}, func(c *Client) error { _, err := c.ShareInfo(context.Background()); return err }, ErrProtocol},
		{"a put never acknowledged", hostileServer{put: func(st *quic.Stream) {
			io.Copy(io.Discard, st)
			<-st.Context().Done()
		}}, func(c *Client) error {
			c.Put(context.Background(), want, blob)
			return c.Flush(context.Background())
		}, ErrUnavailable},
		{"a put never read", hostileServer{put: func(st *quic.Stream) {
			<-st.Context().Done()
		}}, func(c *Client) error {
			big := make([]byte, 8<<20)
			big[0] = 1
			c.Put(context.Background(), cas.Sum(big), big)
			return c.Flush(context.Background())
		}, ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostile(t, &tc.h)
			c := hostileClient(t, h)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			errc := make(chan error, 1)
			// Nothing here may last past the client's deadlines.
			go func() { errc <- tc.call(c) }()
			var err error
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatal("the client hung on a hostile server")
			}
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%v after %v, %.1f MiB allocated", err, time.Since(start).Round(time.Millisecond), float64(alloc)/(1<<20))
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.wantErr != nil && !isHostileErr(err, tc.wantErr):
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if alloc > 64<<20 {
				t.Errorf("the client allocated %d MiB", alloc>>20)
			}
		})
	}
}

// isHostileErr: the error the case wants, or for a server that went
// silent, ErrUnavailable saying what it did not send.
func isHostileErr(err, want error) bool {
	return errors.Is(err, want)
}

// FuzzHostileReplies drives the hostile server from the fuzzer: whatever
// bytes a server answers with, to a request or a download, the client
// returns (an error or a well-formed result) within its deadlines,
// without a panic, and allocates within a bound.
func FuzzHostileReplies(f *testing.F) {
	blob := []byte("fuzzed blob")
	want := cas.Sum(blob)
	var mu sync.Mutex
	var answer []byte
	serve := func(st *quic.Stream) {
		mu.Lock()
		b := answer
		mu.Unlock()
		reply(st, b)
	}
	h := startHostile(f, &hostileServer{
		request: func(st *quic.Stream, _ Request) { serve(st) },
		get:     func(st *quic.Stream, _ []cas.Ref) { serve(st) },
	})
	c := hostileClient(f, h)
	calls := []func() error{
		func() error { _, err := c.Head(context.Background(), "r"); return err },
		func() error { _, err := c.History(context.Background(), "r"); return err },
		func() error { return c.List(context.Background(), func(cas.Ref) error { return nil }) },
		func() error { _, err := c.Tags(context.Background(), "r"); return err },
		func() error { _, err := c.ShareInfo(context.Background()); return err },
		func() error { _, err := c.Roots(context.Background()); return err },
		func() error { _, err := c.Damaged(context.Background(), 10); return err },
		func() error { _, err := c.Get(context.Background(), want); return err },
	}
	f.Add(uint8(0), message(Response{Ref: want[:]}))
	f.Add(uint8(1), message(Response{History: []WireHistory{{Seq: 1, Ref: want[:]}}, More: true}))
	f.Add(uint8(2), message(Response{Refs: [][]byte{want[:]}}))
	f.Add(uint8(3), message(Response{Tags: []WireTag{{Name: "t", Ref: want[:]}}}))
	f.Add(uint8(4), message(Response{Share: &ShareInfo{Name: "x", Kind: "file", Ref: want[:]}}))
	f.Add(uint8(5), message(Response{Roots: []string{"a", "b"}}))
	f.Add(uint8(6), message(Response{Refs: [][]byte{want[:], {1}}}))
	f.Add(uint8(7), append(AppendFrameHeader(nil, FrameHeader{Ref: want, RawLen: uint32(len(blob)), StoredLen: uint32(len(blob))}), blob...))
	f.Add(uint8(7), AppendFrameHeader(nil, FrameHeader{Ref: want, StoredLen: notFoundLen}))
	f.Add(uint8(0), message(Response{Err: &WireError{Code: codeConflict, Current: []byte{1, 2}}}))
	f.Fuzz(func(t *testing.T, op uint8, b []byte) {
		mu.Lock()
		answer = b
		mu.Unlock()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		errc := make(chan error, 1)
		go func() { errc <- calls[int(op)%len(calls)]() }()
		select {
		case <-errc:
		case <-time.After(10 * time.Second):
			t.Fatal("the client hung")
		}
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
			t.Fatalf("the client allocated %d MiB for a %d-byte answer", alloc>>20, len(b))
		}
	})
}
