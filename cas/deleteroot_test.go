package cas_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ferry-sync/ferry/cas"
)

// TestDeleteRoot: a root goes with its history and tags, only if its head
// is the one named; a root whose name extends it, and other namespaces,
// are untouched.
func TestDeleteRoot(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	n, other := ns(t, db, "a"), ns(t, db, "b")
	v1, v2 := []byte("v1"), []byte("v2")
	for _, x := range []*cas.Namespace{n, other} {
		for _, b := range [][]byte{v1, v2} {
			if err := x.Put(ctx, cas.Sum(b), b); err != nil {
				t.Fatal(err)
			}
		}
		for _, root := range []string{"r", "rr"} {
			if err := x.SwapHead(ctx, root, cas.Ref{}, cas.Sum(v1)); err != nil {
				t.Fatal(err)
			}
			if err := x.SwapHead(ctx, root, cas.Sum(v1), cas.Sum(v2)); err != nil {
				t.Fatal(err)
			}
			if err := x.SetTag(ctx, root, "keep", cas.Sum(v1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var stale *cas.StaleError
	if err := n.DeleteRoot(ctx, "r", cas.Sum(v1)); !errors.As(err, &stale) {
		t.Fatalf("delete with an old head: %v, want a StaleError", err)
	}
	if err := n.DeleteRoot(ctx, "r", cas.Sum(v2)); err != nil {
		t.Fatal(err)
	}
	if err := n.DeleteRoot(ctx, "r", cas.Sum(v2)); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("delete of a deleted root: %v, want ErrNotFound", err)
	}
	if roots, _ := n.Roots(ctx); len(roots) != 1 || roots[0] != "rr" {
		t.Errorf("roots after the delete: %v", roots)
	}
	if h, _ := n.History(ctx, "r"); len(h) != 0 {
		t.Errorf("history of the deleted root: %v", h)
	}
	if tags, _ := n.Tags(ctx, "r"); len(tags) != 0 {
		t.Errorf("tags of the deleted root: %v", tags)
	}
	for _, x := range []*cas.Namespace{n, other} {
		for _, root := range []string{"r", "rr"} {
			if x == n && root == "r" {
				continue
			}
			h, err := x.History(ctx, root)
			tags, _ := x.Tags(ctx, root)
			if err != nil || len(h) != 2 || len(tags) != 1 {
				t.Errorf("%s/%s after another root's delete: history %v (%v), tags %v", x.Name(), root, h, err, tags)
			}
		}
	}
}
