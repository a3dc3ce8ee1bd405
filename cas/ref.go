package cas

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/zeebo/blake3"
)

// Ref names a blob: the BLAKE3-256 of its raw (uncompressed) bytes. It is a
// value: compare it with ==, use it as a map key.
type Ref [32]byte

// Sum returns the Ref of b.
func Sum(b []byte) Ref { return blake3.Sum256(b) }

// verifyHash is the hash puts and reads check bytes with: Sum, except in a
// test that forces a collision.
var verifyHash = Sum

// ErrBadRef is returned when text does not parse as a Ref.
var ErrBadRef = errors.New("malformed ref")

// ParseRef parses the 64 lowercase hex digits String returns.
func ParseRef(s string) (Ref, error) {
	var r Ref
	if len(s) != 2*len(r) {
		return Ref{}, fmt.Errorf("%w: %q has %d characters, want %d", ErrBadRef, s, len(s), 2*len(r))
	}
	if _, err := hex.Decode(r[:], []byte(s)); err != nil {
		return Ref{}, fmt.Errorf("%w: %q: %v", ErrBadRef, s, err)
	}
	if hex.EncodeToString(r[:]) != s {
		return Ref{}, fmt.Errorf("%w: %q is not lowercase", ErrBadRef, s)
	}
	return r, nil
}

// String returns the 64 hex digits of r.
func (r Ref) String() string { return hex.EncodeToString(r[:]) }

// Short returns the first 12 hex digits, for logs and listings.
func (r Ref) Short() string { return hex.EncodeToString(r[:6]) }

// IsZero reports whether r is the zero Ref, which names nothing.
func (r Ref) IsZero() bool { return r == Ref{} }

// MarshalText implements encoding.TextMarshaler.
func (r Ref) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Ref) UnmarshalText(b []byte) error {
	p, err := ParseRef(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

// Compare orders refs by their bytes.
func (r Ref) Compare(o Ref) int {
	for i := range r {
		if r[i] != o[i] {
			if r[i] < o[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// RefSet is a set of refs.
type RefSet map[Ref]struct{}

// Add puts r in s.
func (s RefSet) Add(r Ref) { s[r] = struct{}{} }

// Has reports whether r is in s.
func (s RefSet) Has(r Ref) bool { _, ok := s[r]; return ok }

// Sorted returns the members of s in byte order.
func (s RefSet) Sorted() []Ref {
	out := make([]Ref, 0, len(s))
	for r := range s {
		out = append(out, r)
	}
	slices.SortFunc(out, Ref.Compare)
	return out
}
