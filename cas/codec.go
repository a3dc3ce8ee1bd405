package cas

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Flags describe how a blob's payload is stored and sent.
type Flags uint8

const (
	// FlagZstd: the payload is one zstd frame of the raw bytes.
	FlagZstd Flags = 1 << 0

	knownFlags = FlagZstd
)

var (
	encOnce sync.Once
	enc     *zstd.Encoder
	dec     *zstd.Decoder
)

func codecs() (*zstd.Encoder, *zstd.Decoder) {
	encOnce.Do(func() {
		var err error
		// EncodeAll and DecodeAll are safe for concurrent use; each call
		// runs on its caller's goroutine, so one of each serves all.
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err)
		}
		// Caps against decompression bombs: no blob decodes past
		// MaxBlobSize, whatever window the frame asks for.
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxBlobSize), zstd.WithDecoderMaxWindow(MaxBlobSize))
		if err != nil {
			panic(err)
		}
	})
	return enc, dec
}

// Encode returns the stored form of raw: zstd when that is strictly
// smaller, raw otherwise. The result is appended to dst[:0] (give it the
// capacity of raw to spare the encoder growing it); when no compression
// pays, payload is raw itself.
//
// A large blob is first sampled: when none of a few 4 KiB pieces spread
// over it shrinks by 3%, it is taken for incompressible (already
// compressed media, archives, encrypted or random data) and not
// compressed at all. On such data the full attempt cost a push as much
// CPU as hashing; the price is that a blob compressible only between the
// samples is stored raw.
func Encode(dst, raw []byte) (payload []byte, flags Flags) {
	e, _ := codecs()
	if len(raw) < 64 || looksIncompressible(e, raw) {
		return raw, 0
	}
	c := e.EncodeAll(raw, dst[:0])
	if len(c) < len(raw) {
		return c, FlagZstd
	}
	return raw, 0
}

const (
	sampleLen     = 4 << 10
	samples       = 4
	sampledAbove  = 64 << 10 // smaller blobs are simply tried
	sampleGainPct = 97       // a sample must shrink below this % to count
)

var sampleBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*sampleLen); return &b }}

func looksIncompressible(e *zstd.Encoder, raw []byte) bool {
	if len(raw) < sampledAbove {
		return false
	}
	bp := sampleBufs.Get().(*[]byte)
	defer sampleBufs.Put(bp)
	step := (len(raw) - sampleLen) / (samples - 1)
	for i := range samples {
		piece := raw[i*step : i*step+sampleLen]
		c := e.EncodeAll(piece, (*bp)[:0])
		if len(c)*100 < len(piece)*sampleGainPct {
			return false
		}
		*bp = c[:0]
	}
	return true
}

// Decode turns a stored payload back into raw bytes (appended to dst[:0]
// when it has to decompress) and verifies that they hash to ref. rawLen is
// the length the sender declared; a payload that decodes to another length
// is corrupt.
func Decode(dst []byte, ref Ref, flags Flags, payload []byte, rawLen int) ([]byte, error) {
	if flags&^knownFlags != 0 {
		return nil, fmt.Errorf("%w: blob %s has unknown flags %#x", ErrCorrupt, ref.Short(), uint8(flags))
	}
	if rawLen < 0 || rawLen > MaxBlobSize {
		return nil, fmt.Errorf("%w: blob %s declares %d bytes", ErrTooBig, ref.Short(), rawLen)
	}
	raw := payload
	if flags&FlagZstd != 0 {
		_, d := codecs()
		if cap(dst) < rawLen {
			dst = make([]byte, 0, rawLen)
		}
		var err error
		raw, err = d.DecodeAll(payload, dst[:0])
		if err != nil {
			return nil, fmt.Errorf("%w: blob %s: zstd: %v", ErrCorrupt, ref.Short(), err)
		}
	}
	if len(raw) != rawLen {
		return nil, fmt.Errorf("%w: blob %s is %d bytes, declared %d", ErrCorrupt, ref.Short(), len(raw), rawLen)
	}
	if got := verifyHash(raw); got != ref {
		return nil, fmt.Errorf("%w: blob %s: bytes hash to %s", ErrCorrupt, ref.Short(), got.Short())
	}
	return raw, nil
}
