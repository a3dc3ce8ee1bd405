package cas_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/cas/castest"
	"github.com/ferry-sync/ferry/internal/pgtest"
	"github.com/ferry-sync/ferry/internal/s3test"
	"github.com/ferry-sync/ferry/pgmeta"
)

// openPG opens a store in dir whose records are in the PostgreSQL
// database dsn, and whose packs are in ps (nil: in dir).
func openPG(t *testing.T, dir, dsn string, ps cas.PackStore, name string) *cas.DB {
	t.Helper()
	m, err := pgmeta.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	db, err := cas.Open(dir, cas.Options{Create: true, Meta: m, Packs: ps, PacksName: name})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestConformancePG: the store suite with the records in PostgreSQL and
// the packs in the store's directory.
func TestConformancePG(t *testing.T) {
	pg := pgtest.Start(t)
	castest.Run(t, func(t *testing.T) castest.Store {
		db := openPG(t, t.TempDir(), pg.NewDB(t), nil, "")
		t.Cleanup(func() { db.Close() })
		return ns(t, db, "default")
	})
}

// TestConformancePGS3: the cluster layout: records in PostgreSQL, packs
// in S3, a local cache of one byte.
func TestConformancePGS3(t *testing.T) {
	pg := pgtest.Start(t)
	srv := s3test.Start(t, "packs")
	n := 0
	castest.Run(t, func(t *testing.T) castest.Store {
		n++
		prefix := filepath.Join("pgconf", string(rune('a'+n%26)), t.Name()) + "/"
		m, err := pgmeta.Open(context.Background(), pg.NewDB(t))
		if err != nil {
			t.Fatal(err)
		}
		db, err := cas.Open(t.TempDir(), cas.Options{Create: true, Meta: m, Packs: s3Packs(t, srv, prefix), PacksName: "s3://packs/" + prefix, CacheBytes: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return ns(t, db, "default")
	})
}

// TestPGTwoServersOneHead: two stores (two servers' directories) over one
// database and one bucket. A blob put through one is read through the
// other, and of many concurrent moves of one head from the same old
// value, through both, exactly one wins; the others are told the head is
// stale, with the winner as the current head.
func TestPGTwoServersOneHead(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Start(t)
	srv := s3test.Start(t, "packs")
	dsn := pg.NewDB(t)
	var dbs [2]*cas.DB
	for i := range dbs {
		dbs[i] = openPG(t, t.TempDir(), dsn, s3Packs(t, srv, "two/"), "s3://packs/two/")
		defer dbs[i].Close()
	}
	a, b := ns(t, dbs[0], "n"), ns(t, dbs[1], "n")
	data := random(7, 300<<10)
	ref := cas.Sum(data)
	if err := a.Put(ctx, ref, data); err != nil {
		t.Fatal(err)
	}
	if err := a.SwapHead(ctx, "r", cas.Ref{}, ref); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, ref)
	if err != nil || string(got) != string(data) {
		t.Fatalf("read through the second server: %v (equal: %v)", err, string(got) == string(data))
	}
	if h, err := b.Head(ctx, "r"); err != nil || h != ref {
		t.Fatalf("head through the second server: %v %v", h.Short(), err)
	}

	const tries = 8
	var wg sync.WaitGroup
	errs := make([]error, tries)
	news := make([]cas.Ref, tries)
	for i := range tries {
		s := []*cas.Namespace{a, b}[i%2]
		blob := random(uint64(100+i), 100)
		news[i] = cas.Sum(blob)
		if err := s.Put(ctx, news[i], blob); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.SwapHead(ctx, "r", ref, news[i])
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		var se *cas.StaleError
		switch {
		case err == nil:
			if won >= 0 {
				t.Fatalf("two moves from one old head both won: %d and %d", won, i)
			}
			won = i
		case errors.As(err, &se):
		default:
			t.Fatalf("move %d: %v", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no move won")
	}
	for _, s := range []*cas.Namespace{a, b} {
		if h, err := s.Head(ctx, "r"); err != nil || h != news[won] {
			t.Fatalf("head is %s, the winner put %s (%v)", h.Short(), news[won].Short(), err)
		}
		hist, err := s.History(ctx, "r")
		if err != nil || len(hist) != 2 {
			t.Fatalf("history: %d entries, want 2 (%v)", len(hist), err)
		}
	}
	for i, err := range errs {
		var se *cas.StaleError
		if errors.As(err, &se) && se.Current != news[won] {
			t.Fatalf("move %d was told the head is %s, not the winner %s", i, se.Current.Short(), news[won].Short())
		}
	}
}
