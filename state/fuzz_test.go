package state

import (
	"bytes"
	"testing"

	"github.com/ferry-sync/ferry/cas"
)

func FuzzParseStat(f *testing.F) {
	f.Add(Stat{Size: 5, MTime: 6, CTime: 7, Inode: 8, Mode: 0o644, Ref: cas.Sum([]byte("x"))}.append(nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err != nil {
			return
		}
		if again := s.append(nil); !bytes.Equal(again, b) {
			t.Fatalf("stat %x re-encodes as %x", b, again)
		}
	})
}
