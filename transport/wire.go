package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/ferry-sync/ferry/cas"
	"github.com/fxamacker/cbor/v2"
)

// ALPN is the application protocol ferry speaks over QUIC.
const ALPN = "ferry/1"

// ProtoVersion is the version a hello carries.
const ProtoVersion = 1

// Stream kinds: the first byte of every stream.
const (
	kindHello     byte = 0x01
	kindRequest   byte = 0x02
	kindPut       byte = 0x03
	kindGet       byte = 0x04
	kindSubscribe byte = 0x05
)

// Limits every peer enforces before it allocates.
const (
	// MaxMessage bounds one message body.
	MaxMessage = 4 << 20
	// MaxRefs bounds the refs of one has or get request.
	MaxRefs = 4096
	// MaxHistoryPage bounds the entries of one history response.
	MaxHistoryPage = 1000
	frameHead      = 32 + 1 + 4 + 4
	notFoundLen    = 0xFFFFFFFF
)

// ErrProtocol is a peer that broke the protocol.
var ErrProtocol = errors.New("protocol error")

// Hello opens a connection.
type Hello struct {
	Proto     int    `cbor:"1,keyasint"`
	Token     string `cbor:"2,keyasint"`
	Namespace string `cbor:"3,keyasint,omitempty"`
	Device    string `cbor:"4,keyasint,omitempty"`
	Client    string `cbor:"5,keyasint,omitempty"`
}

// HelloReply answers a hello.
type HelloReply struct {
	Err       *WireError `cbor:"1,keyasint,omitempty"`
	Params    []byte     `cbor:"2,keyasint,omitempty"` // the namespace's chunk params, JSON
	Perm      string     `cbor:"3,keyasint,omitempty"`
	Namespace string     `cbor:"4,keyasint,omitempty"`
	Server    string     `cbor:"5,keyasint,omitempty"`
}

// Request is one control request; Op says which fields it uses.
type Request struct {
	Op        string   `cbor:"1,keyasint"`
	Root      string   `cbor:"2,keyasint,omitempty"`
	Old       []byte   `cbor:"3,keyasint,omitempty"`
	New       []byte   `cbor:"4,keyasint,omitempty"`
	Refs      [][]byte `cbor:"5,keyasint,omitempty"`
	After     uint64   `cbor:"6,keyasint,omitempty"`
	Limit     int      `cbor:"7,keyasint,omitempty"`
	Tag       string   `cbor:"8,keyasint,omitempty"`
	Namespace string   `cbor:"9,keyasint,omitempty"`
	Perm      string   `cbor:"10,keyasint,omitempty"`
	ID        string   `cbor:"11,keyasint,omitempty"`
	Label     string   `cbor:"12,keyasint,omitempty"`
	Roots     []string `cbor:"13,keyasint,omitempty"`
	Seqs      []uint64 `cbor:"14,keyasint,omitempty"`
	// Maintenance options (admin.gc, admin.check).
	DryRun   bool   `cbor:"15,keyasint,omitempty"`
	GraceNS  *int64 `cbor:"16,keyasint,omitempty"` // nil: the server's default
	ReadData bool   `cbor:"17,keyasint,omitempty"`
	SubsetN  int    `cbor:"18,keyasint,omitempty"`
	SubsetM  int    `cbor:"19,keyasint,omitempty"`
	// Quota sets a namespace's byte quota (admin.quota; 0 removes it,
	// absent only reads).
	Quota *int64     `cbor:"20,keyasint,omitempty"`
	Share *ShareInfo `cbor:"21,keyasint,omitempty"` // share.create
	// Policy is a namespace's retention policy, JSON (admin.policy):
	// absent only reads, "null" clears it.
	Policy []byte `cbor:"22,keyasint,omitempty"`
	// Settings are a namespace's NamespaceSettings, JSON
	// (admin.namespace): absent only reads.
	Settings []byte `cbor:"23,keyasint,omitempty"`
}

// Response answers a request, or ends a put stream.
type Response struct {
	Err     *WireError    `cbor:"1,keyasint,omitempty"`
	Ref     []byte        `cbor:"2,keyasint,omitempty"`
	Has     []byte        `cbor:"3,keyasint,omitempty"` // bitmap, bit i for refs[i]
	History []WireHistory `cbor:"4,keyasint,omitempty"`
	Roots   []string      `cbor:"5,keyasint,omitempty"`
	Tags    []WireTag     `cbor:"6,keyasint,omitempty"`
	Stored  int           `cbor:"7,keyasint,omitempty"`
	Dedup   int           `cbor:"8,keyasint,omitempty"`
	Clients []ClientInfo  `cbor:"9,keyasint,omitempty"`
	RootsOf []RootInfo    `cbor:"10,keyasint,omitempty"`
	Tokens  []TokenInfo   `cbor:"11,keyasint,omitempty"`
	Token   string        `cbor:"12,keyasint,omitempty"`
	More    bool          `cbor:"13,keyasint,omitempty"`
	Refs    [][]byte      `cbor:"14,keyasint,omitempty"`
	Event   *Event        `cbor:"15,keyasint,omitempty"`
	Report  []byte        `cbor:"16,keyasint,omitempty"` // JSON of a maintenance report
	Used    int64         `cbor:"17,keyasint,omitempty"` // bytes a namespace holds (quota)
	Limit   int64         `cbor:"18,keyasint,omitempty"` // its quota, 0: none
	Share   *ShareInfo    `cbor:"19,keyasint,omitempty"`
	Shares  []ShareInfo   `cbor:"20,keyasint,omitempty"`
	Invite  *InviteInfo   `cbor:"21,keyasint,omitempty"`
}

// WireError is an error on the wire; see RemoteError.
type WireError struct {
	Code    string   `cbor:"1,keyasint"`
	Msg     string   `cbor:"2,keyasint,omitempty"`
	Current []byte   `cbor:"3,keyasint,omitempty"`
	Missing [][]byte `cbor:"4,keyasint,omitempty"`
}

// WireHistory is one history entry.
type WireHistory struct {
	Seq  uint64 `cbor:"1,keyasint"`
	Time int64  `cbor:"2,keyasint"` // Unix ns, server clock
	Ref  []byte `cbor:"3,keyasint"`
}

// WireTag is one tag.
type WireTag struct {
	Name string `cbor:"1,keyasint"`
	Ref  []byte `cbor:"2,keyasint"`
}

// Event is a head change, sent on subscribe streams.
type Event struct {
	Root string `cbor:"1,keyasint"`
	Ref  []byte `cbor:"2,keyasint"`
	Time int64  `cbor:"3,keyasint"`
}

// ClientInfo describes a connected client, for admins.
type ClientInfo struct {
	Addr      string   `cbor:"1,keyasint" json:"addr"`
	Namespace string   `cbor:"2,keyasint,omitempty" json:"namespace"`
	Device    string   `cbor:"3,keyasint,omitempty" json:"device"`
	Perm      string   `cbor:"4,keyasint" json:"perm"`
	TokenID   string   `cbor:"5,keyasint" json:"token_id"`
	Since     UnixNano `cbor:"6,keyasint" json:"since"`
	BytesIn   int64    `cbor:"7,keyasint" json:"bytes_in"`
	BytesOut  int64    `cbor:"8,keyasint" json:"bytes_out"`
	Version   string   `cbor:"9,keyasint,omitempty" json:"client_version"`
}

// RootInfo describes one root, for admins.
type RootInfo struct {
	Namespace string   `cbor:"1,keyasint" json:"namespace"`
	Root      string   `cbor:"2,keyasint" json:"root"`
	Head      []byte   `cbor:"3,keyasint" json:"-"`
	Versions  int      `cbor:"4,keyasint" json:"versions"`
	Updated   UnixNano `cbor:"5,keyasint" json:"updated"`
}

// TokenInfo describes a token (never the token itself).
type TokenInfo struct {
	ID        string   `cbor:"1,keyasint" json:"id"`
	Namespace string   `cbor:"2,keyasint" json:"namespace"`
	Perm      string   `cbor:"3,keyasint" json:"perm"`
	Created   UnixNano `cbor:"4,keyasint" json:"created"`
	Label     string   `cbor:"5,keyasint,omitempty" json:"label,omitempty"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:             cbor.DupMapKeyEnforcedAPF,
		IndefLength:           cbor.IndefLengthForbidden,
		TagsMd:                cbor.TagsForbidden,
		MaxNestedLevels:       6,
		MaxArrayElements:      MaxRefs * 2,
		MaxMapPairs:           64,
		ExtraReturnErrors:     cbor.ExtraDecErrorUnknownField,
		DefaultByteStringType: reflect.TypeOf([]byte(nil)),
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// writeMessage writes one length-prefixed message.
func writeMessage(w io.Writer, v any) error {
	body, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	if len(body) > MaxMessage {
		return fmt.Errorf("%w: message of %d bytes", ErrProtocol, len(body))
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	_, err = w.Write(append(b, body...))
	return err
}

// readMessage reads one message into v, refusing a length over max
// before reading the body.
func readMessage(r io.Reader, v any) error {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > MaxMessage {
		return fmt.Errorf("%w: message of %d bytes (max %d)", ErrProtocol, n, MaxMessage)
	}
	// Grown as bytes arrive: a length that lies costs what was sent.
	body, err := readPayload(r, nil, int(n))
	if err != nil {
		return fmt.Errorf("%w: truncated message: %v", ErrProtocol, err)
	}
	return decodeMessage(body, v)
}

func decodeMessage(body []byte, v any) error {
	if err := decMode.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return nil
}

// FrameHeader heads one blob frame.
type FrameHeader struct {
	Ref       cas.Ref
	Flags     cas.Flags
	RawLen    uint32
	StoredLen uint32
}

// NotFound reports whether the frame says the blob is absent.
func (h FrameHeader) NotFound() bool { return h.StoredLen == notFoundLen }

// AppendFrameHeader appends h's encoding to b.
func AppendFrameHeader(b []byte, h FrameHeader) []byte {
	b = append(b, h.Ref[:]...)
	b = append(b, byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.RawLen)
	return binary.BigEndian.AppendUint32(b, h.StoredLen)
}

// ParseFrameHeader decodes and checks a frame header: lengths within
// MaxBlobSize (or the not-found marker), known flags.
func ParseFrameHeader(b []byte) (FrameHeader, error) {
	if len(b) != frameHead {
		return FrameHeader{}, fmt.Errorf("%w: frame header of %d bytes", ErrProtocol, len(b))
	}
	h := FrameHeader{
		Ref:       cas.Ref(b[:32]),
		Flags:     cas.Flags(b[32]),
		RawLen:    binary.BigEndian.Uint32(b[33:]),
		StoredLen: binary.BigEndian.Uint32(b[37:]),
	}
	if h.NotFound() {
		if h.Flags != 0 || h.RawLen != 0 {
			return FrameHeader{}, fmt.Errorf("%w: malformed not-found frame", ErrProtocol)
		}
		return h, nil
	}
	if h.RawLen > cas.MaxBlobSize || h.StoredLen > cas.MaxBlobSize {
		return FrameHeader{}, fmt.Errorf("%w: frame of %d bytes (%d stored); the maximum is %d", cas.ErrTooBig, h.RawLen, h.StoredLen, cas.MaxBlobSize)
	}
	if h.Flags&^cas.FlagZstd != 0 {
		return FrameHeader{}, fmt.Errorf("%w: frame flags %#x", ErrProtocol, uint8(h.Flags))
	}
	if h.Flags == 0 && h.RawLen != h.StoredLen {
		return FrameHeader{}, fmt.Errorf("%w: uncompressed frame of %d bytes declares %d", ErrProtocol, h.StoredLen, h.RawLen)
	}
	return h, nil
}

// readFrame reads one frame into buf (grown as needed). It returns io.EOF
// at a clean end of stream, before any byte of a frame.
func readFrame(r io.Reader, buf []byte) (FrameHeader, []byte, error) {
	h, err := readFrameHeader(r)
	if err != nil || h.NotFound() {
		return h, nil, err
	}
	buf, err = readFramePayload(r, h, buf)
	return h, buf, err
}

// readFrameHeader reads one frame header; io.EOF means the stream ended
// cleanly between frames.
func readFrameHeader(r io.Reader) (FrameHeader, error) {
	var hb [frameHead]byte
	n, err := io.ReadFull(r, hb[:])
	if err == io.EOF && n == 0 {
		return FrameHeader{}, io.EOF
	}
	if err != nil {
		return FrameHeader{}, fmt.Errorf("%w: truncated frame header: %w", ErrProtocol, err)
	}
	return ParseFrameHeader(hb[:])
}

// readFramePayload reads the payload h announces into buf.
func readFramePayload(r io.Reader, h FrameHeader, buf []byte) ([]byte, error) {
	buf, err := readPayload(r, buf[:0], int(h.StoredLen))
	if err != nil {
		return nil, fmt.Errorf("%w: truncated frame of blob %s: %w", ErrProtocol, h.Ref.Short(), err)
	}
	return buf, nil
}

// readPayload reads n bytes into buf, growing it only as bytes arrive: a
// header that announces 16 MiB and then stops costs the reader what was
// sent, not what was claimed.
func readPayload(r io.Reader, buf []byte, n int) ([]byte, error) {
	const step = 256 << 10
	for len(buf) < n {
		want := min(n, max(2*len(buf), step))
		if cap(buf) < want {
			grown := make([]byte, len(buf), want)
			copy(grown, buf)
			buf = grown
		}
		if _, err := io.ReadFull(r, buf[len(buf):want]); err != nil {
			return nil, err
		}
		buf = buf[:want]
	}
	return buf, nil
}

func refsToWire(refs []cas.Ref) [][]byte {
	out := make([][]byte, len(refs))
	for i, r := range refs {
		out[i] = append([]byte(nil), r[:]...)
	}
	return out
}

func refFromWire(b []byte) (cas.Ref, error) {
	if len(b) != len(cas.Ref{}) {
		return cas.Ref{}, fmt.Errorf("%w: ref of %d bytes", ErrProtocol, len(b))
	}
	return cas.Ref(b), nil
}

// optRef decodes a ref that may be absent (the zero Ref).
func optRef(b []byte) (cas.Ref, error) {
	if len(b) == 0 {
		return cas.Ref{}, nil
	}
	return refFromWire(b)
}

func refsFromWire(bs [][]byte) ([]cas.Ref, error) {
	out := make([]cas.Ref, len(bs))
	for i, b := range bs {
		r, err := refFromWire(b)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}
