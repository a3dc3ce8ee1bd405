package cas_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// TestQuota: a namespace is charged each blob's stored size once, a put
// past its quota is refused and writes nothing, other namespaces go on,
// dedup across namespaces charges each, and a collection gives the bytes
// back.
func TestQuota(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	a, b := ns(t, db, "a"), ns(t, db, "b")
	if err := a.SetQuota(ctx, 3<<20); err != nil {
		t.Fatal(err)
	}
	first := put(t, a, random(70, 1<<20))
	put(t, a, random(70, 1<<20)) // the same blob again: no charge
	second := put(t, a, random(71, 1<<20))
	used, limit, err := a.Usage(ctx)
	if err != nil || limit != 3<<20 || used < 2<<20 || used > 2<<20+1024 {
		t.Fatalf("usage %d of %d (%v), want about 2 MiB of 3", used, limit, err)
	}
	big := random(72, 2<<20)
	err = a.Put(ctx, cas.Sum(big), big)
	var qe *cas.QuotaError
	if !errors.Is(err, cas.ErrQuota) || !errors.As(err, &qe) || qe.Namespace != "a" {
		t.Fatalf("a put past the quota: %v, want a QuotaError for a", err)
	}
	if has, _ := a.Has(ctx, []cas.Ref{cas.Sum(big)}); has[0] {
		t.Fatal("the refused blob is owned anyway")
	}
	// b has no quota and may store the same bytes; a is still refused.
	if err := b.Put(ctx, cas.Sum(big), big); err != nil {
		t.Fatalf("another namespace: %v", err)
	}
	if err := a.Put(ctx, cas.Sum(big), big); !errors.Is(err, cas.ErrQuota) {
		t.Fatalf("a dedup put past the quota: %v, want ErrQuota", err)
	}
	// A collection of a's unreferenced blobs gives their bytes back.
	if _, err := db.Sweep(ctx, cas.SweepOptions{Live: func(ns string, r cas.Ref) bool { return ns != "a" || r == first }, Before: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if used, _, _ = a.Usage(ctx); used < 1<<20 || used > 1<<20+1024 {
		t.Errorf("usage after the sweep %d, want about 1 MiB", used)
	}
	if err := a.Put(ctx, cas.Sum(big), big); err != nil {
		t.Fatalf("a put within the quota after the sweep: %v", err)
	}
	_ = second
	// The count survives a reopen, and is rebuilt when missing.
	used, _, _ = a.Usage(ctx)
	db.Close()
	db = openDB(t, dir)
	if again, _, _ := ns(t, db, "a").Usage(ctx); again != used {
		t.Errorf("usage after reopen %d, want %d", again, used)
	}
}
