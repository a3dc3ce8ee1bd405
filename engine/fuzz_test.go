package engine

import (
	"encoding/json"
	"net"
	"testing"
)

// FuzzParseServeInfo: serve.json that parses names an address with a
// port and a normalized fingerprint, and survives a write and a read.
func FuzzParseServeInfo(f *testing.F) {
	f.Add([]byte(`{"addr":"127.0.0.1:7443","fingerprint":"` + "AB:CD" + `"}`))
	f.Add([]byte(`{"addr":"[::1]:1","fingerprint":"0000000000000000000000000000000000000000000000000000000000000000"}`))
	f.Add([]byte(`{"addr":"nohost","fingerprint":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseServeInfo(b)
		if err != nil {
			return
		}
		if _, port, err := net.SplitHostPort(info.Addr); err != nil || port == "" || len(info.Fingerprint) != 64 {
			t.Fatalf("accepted %+v", info)
		}
		out, _ := json.Marshal(info)
		if again, err := parseServeInfo(out); err != nil || again != info {
			t.Fatalf("%+v -> %s -> %+v, %v", info, out, again, err)
		}
	})
}
