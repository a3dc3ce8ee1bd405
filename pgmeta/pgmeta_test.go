package pgmeta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/internal/pgtest"
)

func open(t *testing.T, pg *pgtest.Server) *Meta {
	t.Helper()
	m, err := Open(context.Background(), pg.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestIterPages: iteration across many pages, seeks, the last key and
// range deletions give what a sorted map of the same writes gives.
func TestIterPages(t *testing.T) {
	ctx := context.Background()
	m := open(t, pgtest.Start(t))
	model := map[string]string{}
	w := &cas.MetaWrites{Keys: map[string][]byte{}}
	for i := range 5000 {
		k, v := fmt.Sprintf("k%05d", i), fmt.Sprintf("v%d", i)
		w.Keys[k], model[k] = []byte(v), v
	}
	w.Keys["\xff\xff"], model["\xff\xff"] = []byte("top"), "top"
	if err := m.Commit(ctx, w, true); err != nil {
		t.Fatal(err)
	}
	del := &cas.MetaWrites{Ranges: [][2][]byte{{[]byte("k01000"), []byte("k02000")}}, Keys: map[string][]byte{"k00007": nil}}
	if err := m.Commit(ctx, del, true); err != nil {
		t.Fatal(err)
	}
	for k := range model {
		if (k >= "k01000" && k < "k02000") || k == "k00007" {
			delete(model, k)
		}
	}
	keys := make([]string, 0, len(model))
	for k := range model {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, tc := range []struct {
		lower, upper, seek string
	}{
		{"", "", ""}, {"k", "l", ""}, {"k00990", "k03000", ""}, {"k", "l", "k01500"}, {"k", "l", "k04999"}, {"k", "", "k06"},
	} {
		var upper []byte
		if tc.upper != "" {
			upper = []byte(tc.upper)
		}
		var want []string
		for _, k := range keys {
			if k >= tc.lower && (upper == nil || k < tc.upper) && k >= tc.seek {
				want = append(want, k)
			}
		}
		it, _ := m.Iter(ctx, []byte(tc.lower), upper)
		ok := it.First()
		if tc.seek != "" {
			ok = it.SeekGE([]byte(tc.seek))
		}
		var got []string
		for ; ok; ok = it.Next() {
			if string(it.Value()) != model[string(it.Key())] {
				t.Fatalf("%+v: %q = %q, want %q", tc, it.Key(), it.Value(), model[string(it.Key())])
			}
			got = append(got, string(it.Key()))
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v: %d keys, want %d", tc, len(got), len(want))
		}
	}
	it, _ := m.Iter(ctx, []byte("k"), []byte("l"))
	if !it.Last() || string(it.Key()) != "k04999" || it.Next() {
		t.Errorf("Last: %q", it.Key())
	}
}

// TestConditions: a commit whose condition fails applies nothing, and of
// concurrent compare-and-swaps of one key from one value, one wins.
func TestConditions(t *testing.T) {
	ctx := context.Background()
	m := open(t, pgtest.Start(t))
	set := func(k, v string, cond map[string][]byte) error {
		return m.Commit(ctx, &cas.MetaWrites{Keys: map[string][]byte{k: []byte(v), "side": []byte(v)}, Conds: cond}, true)
	}
	if err := set("h", "1", map[string][]byte{"h": nil}); err != nil {
		t.Fatal(err)
	}
	if err := set("h", "2", map[string][]byte{"h": nil}); !errors.Is(err, cas.ErrConflict) {
		t.Fatalf("create over an existing key: %v", err)
	}
	if v, _ := m.Get(ctx, []byte("side")); string(v) != "1" {
		t.Fatalf("a refused commit wrote %q", v)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = set("h", fmt.Sprint(10+i), map[string][]byte{"h": []byte("1")}) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, cas.ErrConflict):
			t.Fatal(err)
		}
	}
	if won != 1 {
		t.Fatalf("%d compare-and-swaps from one value won", won)
	}
	// Counters add, across commits and concurrently.
	for range 4 {
		wg.Go(func() {
			if err := m.Commit(ctx, &cas.MetaWrites{Adds: map[string]int64{"u": 5}}, true); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n, err := m.Counter(ctx, []byte("u")); err != nil || n != 20 {
		t.Fatalf("counter %d %v, want 20", n, err)
	}
	if _, err := m.Counter(ctx, []byte("none")); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("a counter never added to: %v", err)
	}
}

// TestRestart: a database killed and restarted under an open Meta: the
// next statements wait for it (within the timeout) and succeed, and a
// committed write survives.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Start(t)
	m := open(t, pg)
	if err := m.Commit(ctx, &cas.MetaWrites{Keys: map[string][]byte{"k": []byte("v")}}, true); err != nil {
		t.Fatal(err)
	}
	pg.Kill()
	done := make(chan error, 1)
	go func() {
		done <- m.Commit(ctx, &cas.MetaWrites{Keys: map[string][]byte{"k2": []byte("v2")}}, true)
	}()
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a commit across a database restart: %v", err)
	}
	for k, want := range map[string]string{"k": "v", "k2": "v2"} {
		if v, err := m.Get(ctx, []byte(k)); err != nil || string(v) != want {
			t.Fatalf("%s = %q %v after the restart", k, v, err)
		}
	}
}
