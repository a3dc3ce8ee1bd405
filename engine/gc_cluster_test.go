package engine

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/internal/pgtest"
	"github.com/ferry-sync/ferry/internal/s3test"
	"github.com/ferry-sync/ferry/pgmeta"
	"github.com/ferry-sync/ferry/s3store"
	"github.com/ferry-sync/ferry/transport"
)

// gcStores are the stores the collection tests run on: one server over
// its own Pebble, and a cluster of two servers over PostgreSQL and S3,
// where the client pushes through one server while the other collects.
var gcStores = []struct {
	name  string
	start func(*testing.T) *gcServer
}{
	{"pebble", startGCServer},
	{"cluster", startGCCluster},
}

// startGCCluster starts two real servers (QUIC on 127.0.0.1) over one
// PostgreSQL database and one versitygw bucket, with one injected clock.
// The gcServer's db and srv are server A's, where tests collect; its url
// and creds are server B's, where clients push.
func startGCCluster(t *testing.T) *gcServer {
	t.Helper()
	pg := pgtest.Start(t)
	s3 := s3test.Start(t, "packs")
	dsn := pg.NewDB(t)
	clk := newClock()
	start := func(name string) served {
		dir := filepath.Join(t.TempDir(), name)
		m, err := pgmeta.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := s3store.Open(context.Background(), "packs", "gc/", s3store.Options{Endpoint: s3.Endpoint, Region: s3test.Region, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, MaxAttempts: 2})
		if err != nil {
			t.Fatal(err)
		}
		db, err := cas.Open(filepath.Join(dir, "store"), cas.Options{Create: true, Now: clk.Now, Meta: m, Packs: ps, PacksName: "s3://packs/gc/"})
		if err != nil {
			t.Fatal(err)
		}
		return serveStore(t, dir, db, clk)
	}
	a, b := start("a"), start("b")
	tok, _, err := b.tokens.Create("team", transport.PermWrite, "")
	if err != nil {
		t.Fatal(err)
	}
	return &gcServer{t: t, db: a.db, srv: a.srv, url: "quic://" + b.addr + "/team",
		creds: Credentials{Token: tok, Fingerprint: b.fp}, clock: clk}
}
