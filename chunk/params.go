package chunk

import (
	"errors"
	"fmt"

	"github.com/restic/chunker"
)

// Pol is an irreducible polynomial of degree 53 over GF(2) that keys the
// rolling fingerprint. A per-store random polynomial keeps chunk boundaries
// (and so chunk sizes) from revealing which known files a store holds.
type Pol uint64

// Bounds on Params that every decoder of a store config enforces.
const (
	// MaxSize is the largest chunk any Params may produce: 16 MiB, as
	// Syncthing's largest block. Wire and store decoders refuse longer chunks.
	MaxSize = 16 << 20
	// MinSize is the smallest allowed lower bound: below the 64-byte window
	// the fingerprint cannot cut.
	MinSize = 4 << 10
)

// Params fix how a stream is cut. The zero value is not valid; use Default
// or New.
type Params struct {
	Pol Pol `json:"pol"`
	// Min and Max bound every chunk but a file's last one.
	Min uint32 `json:"min"`
	Max uint32 `json:"max"`
	// AvgBits sets the cut probability after Min: 2^-AvgBits per byte, so
	// the mean chunk is about Min + 2^AvgBits bytes.
	AvgBits uint8 `json:"avg_bits"`
}

// Defaults chosen by BenchmarkChunkSizes (see docs/ARCHITECTURE.md): a mean
// of about 768 KiB sends a small edit as one chunk of that size, while a
// 1 GiB file still lists only ~1,400 chunks.
const (
	DefaultMin     = 256 << 10
	DefaultMax     = 4 << 20
	DefaultAvgBits = 19
)

// defaultPol is restic/chunker's test polynomial. Stores never use it; it
// exists so that tests and the stability golden file have a fixed cut.
const defaultPol = Pol(0x3DA3358B4DC173)

// Default returns the default boundaries with a fixed polynomial, for tests
// and benchmarks. Stores use New.
func Default() Params {
	return Params{Pol: defaultPol, Min: DefaultMin, Max: DefaultMax, AvgBits: DefaultAvgBits}
}

// New returns the default boundaries with a fresh random polynomial.
func New() (Params, error) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return Params{}, fmt.Errorf("chunk: random polynomial: %w", err)
	}
	p := Default()
	p.Pol = Pol(pol)
	return p, nil
}

// ErrInvalidParams is returned by Validate.
var ErrInvalidParams = errors.New("invalid chunk params")

// Validate reports whether p can be used to cut. Params come from store
// configs and from servers, so they are checked before use.
func (p Params) Validate() error {
	switch {
	case p.Pol == 0 || !chunker.Pol(p.Pol).Irreducible() || chunker.Pol(p.Pol).Deg() != 53:
		return fmt.Errorf("%w: polynomial %#x is not irreducible of degree 53", ErrInvalidParams, uint64(p.Pol))
	case p.Min < MinSize || p.Max > MaxSize || p.Min >= p.Max:
		return fmt.Errorf("%w: bounds %d..%d outside %d..%d", ErrInvalidParams, p.Min, p.Max, MinSize, MaxSize)
	case p.AvgBits < 10 || p.AvgBits > 24:
		return fmt.Errorf("%w: average bits %d outside 10..24", ErrInvalidParams, p.AvgBits)
	}
	return nil
}

func (p Params) String() string {
	return fmt.Sprintf("pol=%#x min=%d avg=2^%d max=%d", uint64(p.Pol), p.Min, p.AvgBits, p.Max)
}
