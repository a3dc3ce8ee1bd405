package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// FuzzParseShareLink: a link that parses prints back to one that parses
// to the same parts, with a well-formed token and fingerprint.
func FuzzParseShareLink(f *testing.F) {
	tok := "ferry_" + strings.Repeat("a", tokenLen)
	f.Add("quic://127.0.0.1:7443/ns?share=" + tok + "&fp=" + strings.Repeat("ab", 32))
	f.Add("quic://[::1]:1/ns?share=" + tok)
	f.Add("quic://host/ns?share=" + tok + "&share=" + tok)
	f.Add("http://host/ns?share=x")
	f.Fuzz(func(t *testing.T, link string) {
		l, err := ParseShareLink(link)
		if err != nil {
			return
		}
		if ValidToken(l.Token) != nil {
			t.Fatalf("%q gave token %q", link, l.Token)
		}
		again, err := ParseShareLink(l.String())
		if err != nil || again != l {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", link, l, l.String(), again, err)
		}
	})
}

// FuzzParseURL: a remote URL that parses has a host and port, and the
// parts print back to a URL that parses to them.
func FuzzParseURL(f *testing.F) {
	f.Add("quic://127.0.0.1:7443/ns")
	f.Add("quic://example.com/ns/")
	f.Add("quic://[::1]:9/")
	f.Add("quic://:0/x")
	f.Add("quic://a:1,b:2/ns")
	f.Add("quic://a:1,,b/ns")
	f.Fuzz(func(t *testing.T, raw string) {
		addr, ns, err := ParseURL(raw)
		if err != nil {
			return
		}
		for _, a := range strings.Split(addr, ",") {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				t.Fatalf("%q: address %q", raw, a)
			}
		}
		addr2, ns2, err := ParseURL("quic://" + addr + "/" + ns)
		if err != nil || addr2 != addr || ns2 != ns {
			t.Fatalf("%q -> %q %q -> %q %q %v", raw, addr, ns, addr2, ns2, err)
		}
	})
}

// FuzzTokenLookup: against a real token store holding one token, any
// other string is ErrAuth (never a record, never another error), and the
// one token is found.
func FuzzTokenLookup(f *testing.F) {
	db, err := cas.Open(filepath.Join(f.TempDir(), "store"), cas.Options{Create: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	tokens, err := NewTokens(db, nil)
	if err != nil {
		f.Fatal(err)
	}
	known, _, err := tokens.Create("ns", PermRead, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(known)
	f.Add("ferry_" + strings.Repeat("z", tokenLen))
	f.Add("ferry_")
	f.Add(strings.ToUpper(known))
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := tokens.Lookup(s)
		switch {
		case s == known && (err != nil || rec.Namespace != "ns"):
			t.Fatalf("the known token: %+v %v", rec, err)
		case s != known && !errors.Is(err, ErrAuth):
			t.Fatalf("%q: %+v %v, want ErrAuth", s, rec, err)
		}
	})
}

// TestTimesInJSON: times print as RFC 3339 with their zone, and a share
// stored before that (nanoseconds under *_unix_ns) still reads.
func TestTimesInJSON(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 5, time.UTC)
	b, err := json.Marshal(TokenInfo{ID: "x", Created: At(at)})
	if err != nil || !strings.Contains(string(b), `"created":"2026-12-01T12:00:00.000000005Z"`) {
		t.Fatalf("token info JSON %s, %v", b, err)
	}
	var s ShareInfo
	legacy := fmt.Sprintf(`{"id":"s","created_unix_ns":%d,"expires_unix_ns":%d}`, at.UnixNano(), at.Add(time.Hour).UnixNano())
	if err := json.Unmarshal([]byte(legacy), &s); err != nil || !s.Expires.Time().Equal(at.Add(time.Hour)) || !s.Created.Time().Equal(at) {
		t.Fatalf("legacy share %s: %+v, %v", legacy, s, err)
	}
	out, _ := json.Marshal(s)
	var again ShareInfo
	if err := json.Unmarshal(out, &again); err != nil || !reflect.DeepEqual(again, s) {
		t.Fatalf("share %s read back as %+v, %v", out, again, err)
	}
}
