package state

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
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

// FuzzParseConfig: a config that parses has a valid root and a device id
// safe in a file name, and survives a write and a read unchanged.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"remote":"quic://h:1/ns","namespace":"ns","root":"main","device":"ABCDEFG","created":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"root":"main","device":"../../x"}`))
	f.Add([]byte(`{"root":"","device":"A"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if cas.ValidName(c.Root) != nil || validDevice(c.Device) != nil || strings.ContainsAny(c.Device, "/.\x00") {
			t.Fatalf("accepted root %q device %q", c.Root, c.Device)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig(out)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("%+v -> %s -> %+v, %v", c, out, again, err)
		}
	})
}
