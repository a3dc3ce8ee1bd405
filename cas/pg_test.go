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

// TestMigrateMeta: a store's records move into PostgreSQL and back. After
// the move out the directory alone is refused (ErrRecordsElsewhere), the
// database serves every blob, head and usage, and the move back gives a
// directory that serves them alone again.
func TestMigrateMeta(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Start(t)
	dir := t.TempDir()
	db, err := cas.Open(dir, cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	n := ns(t, db, "a")
	var refs []cas.Ref
	for i := range 20 {
		b := random(uint64(i+1), 10<<10+i*7000)
		refs = append(refs, cas.Sum(b))
		if err := n.Put(ctx, refs[i], b); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.SwapHead(ctx, "r", cas.Ref{}, refs[3]); err != nil {
		t.Fatal(err)
	}
	used, _, err := n.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	dsn := pg.NewDB(t)
	m, err := pgmeta.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cas.MigrateMetaOut(ctx, dir, m)
	m.Close()
	if err != nil || st.Records < 40 {
		t.Fatalf("migrate out: %+v %v", st, err)
	}
	if _, err := cas.Open(dir, cas.Options{}); !errors.Is(err, cas.ErrRecordsElsewhere) {
		t.Fatalf("the directory after its records moved: %v, want ErrRecordsElsewhere", err)
	}
	check := func(db *cas.DB) {
		t.Helper()
		n := ns(t, db, "a")
		for i, r := range refs {
			if b, err := n.Get(ctx, r); err != nil || cas.Sum(b) != r {
				t.Fatalf("blob %d: %v", i, err)
			}
		}
		if h, err := n.Head(ctx, "r"); err != nil || h != refs[3] {
			t.Fatalf("head %s %v", h.Short(), err)
		}
		if u, _, err := n.Usage(ctx); err != nil || u != used {
			t.Fatalf("usage %d %v, want %d", u, err, used)
		}
	}
	// The packs stay in dir; the records are in the database.
	moved := openPG(t, dir, dsn, nil, "")
	check(moved)
	moved.Close()

	back := t.TempDir()
	m, err = pgmeta.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	st, err = cas.MigrateMetaIn(ctx, back, m)
	m.Close()
	if err != nil || st.Records < 40 {
		t.Fatalf("migrate in: %+v %v", st, err)
	}
	// The records came back; the packs are still in dir, so serve them
	// from there.
	db, err = cas.Open(dir, cas.Options{})
	if !errors.Is(err, cas.ErrRecordsElsewhere) {
		t.Fatalf("dir: %v", err)
	}
	if _, err := cas.MigrateMetaIn(ctx, dir, mustOpenMeta(t, dsn)); err != nil {
		t.Fatalf("migrate back into the directory that was moved out: %v", err)
	}
	db, err = cas.Open(dir, cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check(db)
}

func mustOpenMeta(t *testing.T, dsn string) cas.Meta {
	t.Helper()
	m, err := pgmeta.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
