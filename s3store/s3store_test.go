package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/internal/s3test"
)

func open(t *testing.T, endpoint string) *Store {
	t.Helper()
	s, err := Open(context.Background(), "packs", "store1", Options{Endpoint: endpoint, Region: s3test.Region, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	s.prefix = "store1/"
	return s
}

// TestStore: against a real S3 server (versitygw), the operations ferry's
// packs rely on: create-if-absent (a second create of a name is refused,
// and of two racing creates exactly one wins), ranged reads, size, list
// under a prefix, idempotent delete, and "not found" told apart.
func TestStore(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	s := open(t, srv.Endpoint)
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3<<20+17)
	rand.Read(b)
	if err := s.Create(ctx, "p1", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "p1", strings.NewReader("other"), 5); !errors.Is(err, ErrExists) {
		t.Fatalf("a second create of p1: %v, want ErrExists", err)
	}
	for _, r := range [][2]int64{{0, 10}, {1 << 20, 4096}, {int64(len(b)) - 5, 5}} {
		got := make([]byte, r[1])
		if err := s.ReadAt(ctx, "p1", got, r[0]); err != nil || !bytes.Equal(got, b[r[0]:r[0]+r[1]]) {
			t.Fatalf("read %v: %v", r, err)
		}
	}
	if n, err := s.Size(ctx, "p1"); err != nil || n != int64(len(b)) {
		t.Fatalf("size %d %v", n, err)
	}
	if err := s.ReadAt(ctx, "nosuch", make([]byte, 4), 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("read of a missing object: %v, want ErrNotFound", err)
	}
	if _, err := s.Size(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("size of a missing object: %v, want ErrNotFound", err)
	}

	// Racing creates of one name: one wins, the others are told.
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Create(ctx, "race", bytes.NewReader([]byte{byte(i)}), 1)
			switch {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, ErrExists):
				t.Errorf("a losing create: %v, want ErrExists", err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Errorf("%d of 4 racing creates won, want 1", won.Load())
	}

	other := open(t, srv.Endpoint)
	other.prefix = "store2/"
	if err := other.Create(ctx, "p1", strings.NewReader("elsewhere"), 9); err != nil {
		t.Fatalf("the same name under another prefix: %v", err)
	}
	names := map[string]int64{}
	if err := s.List(ctx, func(n string, size int64, modified time.Time) error {
		if time.Since(modified) > time.Hour || time.Until(modified) > time.Hour {
			t.Errorf("%s modified %s", n, modified)
		}
		names[n] = size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names["p1"] != int64(len(b)) || names["race"] != 1 {
		t.Errorf("list: %v", names)
	}
	for range 2 {
		if err := s.Delete(ctx, "p1"); err != nil {
			t.Fatalf("delete (twice is fine): %v", err)
		}
	}
	if _, err := s.Size(ctx, "p1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("size after delete: %v", err)
	}
	if _, err := other.Size(ctx, "p1"); err != nil {
		t.Errorf("the other prefix's p1 went too: %v", err)
	}
}

// TestStoreRetries: an S3 server that answers 503 or drops connections
// now and then costs retries, not errors; a create that a dropped answer
// made the client retry after it had won is ErrExists, which the caller
// checks by size.
func TestStoreRetries(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	target, _ := url.Parse(srv.Endpoint)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var n, failed atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 3 {
		case 1: // every third request: 503 Slow Down
			failed.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case 2: // and every third: the connection dropped before an answer
			failed.Add(1)
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer flaky.Close()
	s := open(t, flaky.URL)
	b := make([]byte, 1<<20)
	rand.Read(b)
	if err := s.Create(ctx, "p", bytes.NewReader(b), int64(len(b))); err != nil && !errors.Is(err, ErrExists) {
		t.Fatalf("create through a flaky server: %v", err)
	}
	got := make([]byte, 1000)
	for i := range 5 {
		if err := s.ReadAt(ctx, "p", got, int64(i)*1000); err != nil || !bytes.Equal(got, b[i*1000:(i+1)*1000]) {
			t.Fatalf("read %d through a flaky server: %v", i, err)
		}
	}
	if n, err := s.Size(ctx, "p"); err != nil || n != int64(len(b)) {
		t.Fatalf("size through a flaky server: %d %v", n, err)
	}
	if failed.Load() < 4 {
		t.Errorf("only %d requests failed: the test did not test retries", failed.Load())
	}
}

func FuzzParseURL(f *testing.F) {
	f.Add("s3://bucket/prefix?endpoint=http://127.0.0.1:7070&region=us-east-1")
	f.Add("s3://b")
	f.Add("s3://b/a/b/?region=x")
	f.Fuzz(func(t *testing.T, raw string) {
		bucket, prefix, o, err := ParseURL(raw)
		if err != nil {
			return
		}
		if bucket == "" || (prefix != "" && prefix[len(prefix)-1] != '/') {
			t.Fatalf("%q: bucket %q prefix %q", raw, bucket, prefix)
		}
		if o.Endpoint != "" {
			if u, err := url.Parse(o.Endpoint); err != nil || u.Host == "" {
				t.Fatalf("%q: endpoint %q", raw, o.Endpoint)
			}
		}
	})
}

// TestEnsureMakesTheBucket: a bucket that does not exist is made (a first
// server), and one that does is left as it is.
func TestEnsureMakesTheBucket(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "packs")
	s, err := Open(ctx, "fresh", "p", Options{Endpoint: srv.Endpoint, Region: s3test.Region, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("check of a bucket not made yet: %v, want ErrNotFound", err)
	}
	for range 2 {
		if err := s.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Create(ctx, "o", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
}
