package transport

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-sync/ferry/cas"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestGoldenWire freezes the wire encodings: frames and messages.
func TestGoldenWire(t *testing.T) {
	ref := cas.Sum([]byte("golden"))
	var msgs bytes.Buffer
	for _, m := range []any{
		Hello{Proto: ProtoVersion, Token: "ferry_x", Namespace: "ns", Device: "DEV1234", Client: "ferry"},
		Request{Op: opSwapHead, Root: "docs", Old: ref[:], New: ref[:]},
		Request{Op: opHas, Refs: [][]byte{ref[:]}},
		Response{Has: []byte{1}},
		Response{Err: &WireError{Code: codeConflict, Msg: "stale", Current: ref[:]}},
		Response{Event: &Event{Root: "docs", Ref: ref[:], Time: 1}},
	} {
		if err := writeMessage(&msgs, m); err != nil {
			t.Fatal(err)
		}
	}
	golden := map[string][]byte{
		"frame":           AppendFrameHeader(nil, FrameHeader{Ref: ref, Flags: cas.FlagZstd, RawLen: 1000, StoredLen: 20}),
		"frame-not-found": AppendFrameHeader(nil, FrameHeader{Ref: ref, StoredLen: notFoundLen}),
		"messages":        msgs.Bytes(),
	}
	for name, b := range golden {
		path := filepath.Join("testdata", name+".golden")
		text := hex.EncodeToString(b) + "\n"
		if *update {
			os.WriteFile(path, []byte(text), 0o644)
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if text != string(want) {
			t.Errorf("%s encodes to\n%s want\n%s", name, text, want)
		}
	}
}

// FuzzFrameHeader: the frame decoder never panics, never accepts a length
// over the maximum, and what it accepts re-encodes to the same bytes.
func FuzzFrameHeader(f *testing.F) {
	ref := cas.Sum([]byte("x"))
	f.Add(AppendFrameHeader(nil, FrameHeader{Ref: ref, RawLen: 5, StoredLen: 5}))
	f.Add(AppendFrameHeader(nil, FrameHeader{Ref: ref, Flags: cas.FlagZstd, RawLen: 1 << 20, StoredLen: 100}))
	f.Add(AppendFrameHeader(nil, FrameHeader{Ref: ref, StoredLen: notFoundLen}))
	f.Add(AppendFrameHeader(nil, FrameHeader{Ref: ref, RawLen: 1 << 31, StoredLen: 1 << 31}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseFrameHeader(b)
		if err != nil {
			return
		}
		if !h.NotFound() && (h.RawLen > cas.MaxBlobSize || h.StoredLen > cas.MaxBlobSize) {
			t.Fatalf("accepted a frame of %d/%d bytes", h.RawLen, h.StoredLen)
		}
		if again := AppendFrameHeader(nil, h); !bytes.Equal(again, b) {
			t.Fatalf("%x re-encodes as %x", b, again)
		}
	})
}

// FuzzReadFrame: a stream of hostile bytes (a client's to a server, a
// server's to a client) never panics and never allocates past the
// maximum blob size.
func FuzzReadFrame(f *testing.F) {
	ref := cas.Sum([]byte("hello"))
	f.Add(append(AppendFrameHeader(nil, FrameHeader{Ref: ref, RawLen: 5, StoredLen: 5}), "hello"...))
	f.Add(AppendFrameHeader(nil, FrameHeader{Ref: ref, RawLen: 5, StoredLen: 5}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for range 4 {
			h, payload, err := readFrame(r, nil)
			if err != nil {
				return
			}
			if len(payload) != int(h.StoredLen) && !h.NotFound() {
				t.Fatalf("payload of %d bytes for a frame of %d", len(payload), h.StoredLen)
			}
			if cap(payload) > cas.MaxBlobSize {
				t.Fatalf("allocated %d bytes", cap(payload))
			}
		}
	})
}

// FuzzMessages: every message decoder refuses garbage without panicking.
func FuzzMessages(f *testing.F) {
	var b bytes.Buffer
	writeMessage(&b, Request{Op: opHas, Refs: [][]byte{make([]byte, 32)}})
	f.Add(b.Bytes()[4:])
	b.Reset()
	writeMessage(&b, Response{History: []WireHistory{{Seq: 1, Time: 2, Ref: make([]byte, 32)}}})
	f.Add(b.Bytes()[4:])
	b.Reset()
	writeMessage(&b, Hello{Proto: 1, Token: "t"})
	f.Add(b.Bytes()[4:])
	f.Fuzz(func(t *testing.T, body []byte) {
		var req Request
		if decodeMessage(body, &req) == nil {
			refsFromWire(req.Refs)
			optRef(req.Old)
		}
		var resp Response
		if decodeMessage(body, &resp) == nil && resp.Err != nil {
			fromWire(resp.Err, "r", cas.Ref{})
		}
		var h Hello
		_ = decodeMessage(body, &h)
		var hr HelloReply
		_ = decodeMessage(body, &hr)
	})
}

// TestParseClusterURL: a URL may list a cluster's servers; each gets its
// default port, and an empty or bad entry is refused.
func TestParseClusterURL(t *testing.T) {
	for _, tc := range []struct{ raw, addr, ns string }{
		{"quic://a:1,b:2/ns", "a:1,b:2", "ns"},
		{"quic://a,b/ns", "a:7443,b:7443", "ns"},
		{"quic://[::1]:9,127.0.0.1/x", "[::1]:9,127.0.0.1:7443", "x"},
		{"quic://a,,b/ns", "", ""},
		{"quic://a,b:99999/ns", "", ""},
		{"quic://a,b/bad name", "", ""},
	} {
		addr, ns, err := ParseURL(tc.raw)
		if tc.addr == "" {
			if err == nil {
				t.Errorf("%q parsed as %q %q", tc.raw, addr, ns)
			}
			continue
		}
		if err != nil || addr != tc.addr || ns != tc.ns {
			t.Errorf("%q: %q %q %v, want %q %q", tc.raw, addr, ns, err, tc.addr, tc.ns)
		}
	}
}
