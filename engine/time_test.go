package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/gc"
)

// TestClockSkewAndJumps (E3): three devices whose clocks are ten years
// fast, ten years slow and right push to one root in turn, while the
// server's clock jumps a day forward and back between collections.
// History, log and head~N follow the order the store took the versions,
// never the devices' clocks; retention keeps the last pushes; and no
// collection removes anything a kept version needs.
func TestClockSkewAndJumps(t *testing.T) {
	ctx := context.Background()
	g := startGCServer(t)
	const year = 365 * 24 * time.Hour
	skews := []time.Duration{10 * year, -10 * year, 0}
	dirs := make([]string, len(skews))
	for i := range dirs {
		dirs[i] = g.folder(fmt.Sprintf("d%d", i), "r")
	}
	opts := func(i int) Options {
		return Options{Now: func() time.Time { return time.Now().Add(skews[i]) }}
	}
	var order []string
	pushed := map[string]map[string]string{}
	for round := range 6 {
		i := round % len(dirs)
		if _, err := Pull(ctx, dirs[i], opts(i)); err != nil {
			t.Fatalf("round %d: pull: %v", round, err)
		}
		write(t, filepath.Join(dirs[i], fmt.Sprintf("r%d.bin", round)), random(uint64(100+round), 256<<10), 0o644)
		res, err := Push(ctx, dirs[i], PushOptions{Options: opts(i)})
		if err != nil {
			t.Fatalf("round %d: push: %v", round, err)
		}
		order = append(order, res.Version)
		pushed[res.Version] = snapshot(t, dirs[i])
		// The server's clock jumps a day ahead, then a day back.
		jump := 24 * time.Hour
		if round%2 == 1 {
			jump = -jump
		}
		g.clock.Advance(jump)
		if _, err := CollectDB(ctx, g.db, g.srv.PauseCommits, GCOptions{Grace: time.Hour, Options: Options{Now: g.clock.Now}}); err != nil {
			t.Fatalf("round %d: gc after a %v jump: %v", round, jump, err)
		}
	}
	log, err := Log(ctx, dirs[2], "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != len(order) {
		t.Fatalf("log has %d versions, %d were pushed", len(log), len(order))
	}
	for i, e := range log {
		if want := order[len(order)-1-i]; e.Version != want {
			t.Fatalf("log entry %d is %s, want %s (push order, newest first)", i, e.Version[:12], want[:12])
		}
	}
	if got := log[1].Time.Year() - log[0].Time.Year(); got != 10 && got != -10 && got != 20 && got != -20 {
		t.Errorf("the devices' skew is not in their versions' own times (years %d, %d)", log[0].Time.Year(), log[1].Time.Year())
	}
	s, err := open(ctx, dirs[0], Options{})
	if err != nil {
		t.Fatal(err)
	}
	prev, err := s.resolve(ctx, "head~1")
	s.close()
	if err != nil || prev.String() != order[len(order)-2] {
		t.Fatalf("head~1 = %s, %v; want the push before the last", prev.Short(), err)
	}
	g.verify(dirs[2], pushed)
	res, err := Forget(ctx, dirs[2], ForgetOptions{Policy: gc.Policy{Last: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Keep) != 2 || res.Keep[0].Version != order[5] || res.Keep[1].Version != order[4] {
		t.Fatalf("keep-last 2 kept %+v, want the last two pushes", res.Keep)
	}
	g.clock.Advance(48 * time.Hour)
	if _, err := CollectDB(ctx, g.db, g.srv.PauseCommits, GCOptions{Grace: time.Hour, Options: Options{Now: g.clock.Now}}); err != nil {
		t.Fatal(err)
	}
	g.verify(dirs[2], map[string]map[string]string{order[5]: pushed[order[5]], order[4]: pushed[order[4]]})
}
