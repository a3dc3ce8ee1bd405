package cas

import (
	"bytes"
	"testing"
)

// FuzzParseLocation: a blob record never panics the parser, and whatever
// parses re-encodes to the same bytes.
func FuzzParseLocation(f *testing.F) {
	f.Add(location{flags: FlagZstd, rawLen: 100, inline: []byte("payload")}.append(nil))
	f.Add(location{rawLen: 1 << 20, pack: 3, off: 4096, storedLen: 1 << 20}.append(nil))
	f.Add([]byte{recPacked, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLocation(b)
		if err != nil {
			return
		}
		if l.rawLen > MaxBlobSize || l.storedLen > MaxBlobSize || l.off < 0 {
			t.Fatalf("accepted out-of-bounds record %+v", l)
		}
		if again := l.append(nil); !bytes.Equal(again, b) {
			t.Fatalf("record %x re-encodes as %x", b, again)
		}
	})
}

// FuzzDecode: a stored or sent payload either decodes to bytes that hash
// to the claimed ref, or is refused; a decompression bomb never decodes
// past MaxBlobSize.
func FuzzDecode(f *testing.F) {
	raw := bytes.Repeat([]byte("ferry "), 1000)
	z, flags := Encode(nil, raw)
	f.Add(z, uint8(flags), len(raw), raw)
	f.Add(raw, uint8(0), len(raw), raw)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58}, uint8(FlagZstd), 10, []byte("x"))
	f.Fuzz(func(t *testing.T, payload []byte, flags uint8, rawLen int, want []byte) {
		ref := Sum(want)
		got, err := Decode(nil, ref, Flags(flags), payload, rawLen)
		if err != nil {
			return
		}
		if Sum(got) != ref || len(got) != rawLen || len(got) > MaxBlobSize {
			t.Fatalf("Decode accepted %d bytes that do not match the ref", len(got))
		}
	})
}

// FuzzCheckEntry: a pack entry that does not match its record is refused.
func FuzzCheckEntry(f *testing.F) {
	ref := Sum([]byte("x"))
	var h [packEntryHead]byte
	copy(h[:], ref[:])
	h[33] = 1
	h[37] = 1
	f.Add(append(h[:], 'x'), 1)
	f.Fuzz(func(t *testing.T, entry []byte, storedLen int) {
		if storedLen < 0 || len(entry) != packEntryHead+storedLen {
			return
		}
		loc := location{rawLen: 1, storedLen: storedLen}
		p, err := checkEntry(ref, loc, entry)
		if err == nil && (Ref(entry[:32]) != ref || len(p) != storedLen) {
			t.Fatalf("accepted an entry for another ref or length")
		}
	})
}

func FuzzParseRef(f *testing.F) {
	f.Add(Sum(nil).String())
	f.Add("ABCD")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err == nil && r.String() != s {
			t.Fatalf("ParseRef(%q) = %s", s, r)
		}
	})
}
