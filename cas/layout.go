package cas

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
)

// The on-disk layout of a DB directory. This file is its specification;
// change it only with a new FormatVersion.
//
//	DIR/LOCK               flock(2) held while a process has the store open
//	DIR/ballast            reserved space a collection on a full disk frees
//	DIR/pebble/            the Pebble database: every key below
//	DIR/packs/P.pack       append-only pack files, P = 16 hex digits
//
// Pebble keys (ns = namespace, \x00 separates variable-length parts; names
// never contain \x00):
//
//	"\x00config"                   store config, JSON (FormatVersion, created)
//	"b" ref                        blob record (below)
//	"p" P(8, big endian)           pack record: uvarint committed length
//	"N" ns                         namespace config, JSON (chunk params)
//	"o" ns \x00 ref                ns owns blob ref: unix ns of the last put (8, BE),
//	                               bytes charged to ns for it (8, BE)
//	"u" ns                         bytes ns is charged for (8, BE): the sum of the above
//	"q" ns                         ns's byte quota (8, BE); absent: none
//	"h" ns \x00 root               head: ref (32 bytes)
//	"l" ns \x00 root \x00 seq(8)   history entry: ref(32) time(8, unix ns)
//	"t" ns \x00 root \x00 tag      tag: ref (32 bytes)
//	"k" space \x00 key             KV spaces (a synced folder's state)
//	"d" ref                        blob ref failed verification: unix ns when
//	                               found (8, BE), then the reason (text)
//
// A blob record is one of
//
//	0x01 flags rawLen(uvarint) payload               blob inline in Pebble
//	0x02 flags rawLen(uvarint) P(uvarint) off(uvarint) storedLen(uvarint)
//
// where off is the offset of the blob's entry in pack P. Blobs whose stored
// form is at most InlineMax bytes live inline; the rest go to packs.
//
// A pack file starts with the 8-byte magic "FERRYPK1", then entries:
//
//	ref(32) flags(1) rawLen(4, LE) storedLen(4, LE) payload(storedLen)
//
// so a pack can be checked (and the index rebuilt) without Pebble. Pack
// bytes are fsynced before the batch that records them commits, so a
// record never points past what is on disk; a crash leaves at most an
// unrecorded tail, or a pack with no record at all, which Open deletes.
const (
	FormatVersion = 1

	// InlineMax is the largest stored blob kept in Pebble: objects and
	// small files stay in the LSM, file data goes to packs.
	InlineMax = 4 << 10

	packMagic     = "FERRYPK1"
	packEntryHead = 32 + 1 + 4 + 4
	// packTarget is the size at which a pack is closed and a new one begun.
	packTarget = 64 << 20

	recInline = 0x01
	recPacked = 0x02
)

var keyConfig = []byte("\x00config")

func blobKey(r Ref) []byte { return append([]byte{'b'}, r[:]...) }

func packKey(id uint64) []byte { return binary.BigEndian.AppendUint64([]byte{'p'}, id) }

func nsConfigKey(ns string) []byte { return append([]byte{'N'}, ns...) }

func ownKey(ns string, r Ref) []byte {
	k := append(append([]byte{'o'}, ns...), 0)
	return append(k, r[:]...)
}

func ownPrefix(ns string) []byte { return append(append([]byte{'o'}, ns...), 0) }

func headKey(ns, root string) []byte {
	return append(append(append([]byte{'h'}, ns...), 0), root...)
}

func headPrefix(ns string) []byte { return append(append([]byte{'h'}, ns...), 0) }

func histPrefix(ns, root string) []byte {
	return append(append(append(append([]byte{'l'}, ns...), 0), root...), 0)
}

func histKey(ns, root string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(histPrefix(ns, root), seq)
}

func tagPrefix(ns, root string) []byte {
	return append(append(append(append([]byte{'t'}, ns...), 0), root...), 0)
}

func kvPrefix(space string) []byte { return append(append([]byte{'k'}, space...), 0) }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func packPath(dir string, id uint64) string {
	return filepath.Join(dir, "packs", fmt.Sprintf("%016x.pack", id))
}

// location is a decoded blob record.
type location struct {
	flags     Flags
	rawLen    int
	inline    []byte // for inline records
	pack      uint64
	off       int64
	storedLen int
}

func (l location) append(b []byte) []byte {
	if l.inline != nil {
		b = append(b, recInline, byte(l.flags))
		b = binary.AppendUvarint(b, uint64(l.rawLen))
		return append(b, l.inline...)
	}
	b = append(b, recPacked, byte(l.flags))
	b = binary.AppendUvarint(b, uint64(l.rawLen))
	b = binary.AppendUvarint(b, l.pack)
	b = binary.AppendUvarint(b, uint64(l.off))
	return binary.AppendUvarint(b, uint64(l.storedLen))
}

func parseLocation(b []byte) (location, error) {
	var l location
	if len(b) < 3 {
		return l, fmt.Errorf("%w: blob record of %d bytes", ErrCorrupt, len(b))
	}
	kind := b[0]
	l.flags = Flags(b[1])
	b = b[2:]
	rawLen, n := uvarint(b)
	if n <= 0 || rawLen > MaxBlobSize {
		return l, fmt.Errorf("%w: blob record length", ErrCorrupt)
	}
	l.rawLen = int(rawLen)
	b = b[n:]
	switch kind {
	case recInline:
		l.inline = b
		if l.inline == nil {
			l.inline = []byte{}
		}
		l.storedLen = len(b)
		return l, nil
	case recPacked:
		var vals [3]uint64
		for i := range vals {
			v, n := uvarint(b)
			if n <= 0 {
				return l, fmt.Errorf("%w: blob record truncated", ErrCorrupt)
			}
			vals[i], b = v, b[n:]
		}
		if len(b) != 0 || vals[2] > MaxBlobSize || vals[1] > 1<<62 {
			return l, fmt.Errorf("%w: blob record malformed", ErrCorrupt)
		}
		l.pack, l.off, l.storedLen = vals[0], int64(vals[1]), int(vals[2])
		return l, nil
	}
	return l, fmt.Errorf("%w: blob record kind %#x", ErrCorrupt, kind)
}

// uvarint is binary.Uvarint that refuses non-minimal encodings, so that a
// record has one spelling.
func uvarint(b []byte) (uint64, int) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		return 0, -1
	}
	return v, n
}
