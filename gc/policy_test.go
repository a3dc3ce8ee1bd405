package gc

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

var update = flag.Bool("update", false, "rewrite golden files")

// history is a version every 7 hours for 400 days before a fixed clock.
func history() []cas.HistoryEntry {
	end := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	var out []cas.HistoryEntry
	for i := range 400 * 24 / 7 {
		t := end.Add(-time.Duration(i) * 7 * time.Hour)
		out = append(out, cas.HistoryEntry{Seq: uint64(10000 - i), Time: t, Ref: cas.Sum(fmt.Append(nil, i))})
	}
	return out
}

func TestPolicyGolden(t *testing.T) {
	h := history()
	tags := map[string]cas.Ref{"release": h[200].Ref, "old": h[1000].Ref}
	tests := map[string]Policy{
		"last3":          {Last: 3},
		"daily7-weekly4": {Daily: 7, Weekly: 4},
		"monthly-yearly": {Monthly: 6, Yearly: -1},
		"within2d":       {Within: 48 * time.Hour},
		"mixed":          {Last: 2, Hourly: 5, Daily: 3, Weekly: 2, Monthly: 2, Yearly: 1, Tags: []string{"release"}},
		"tagged":         {Last: 1, KeepTagged: true},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			ds, err := p.Apply(h, tags, h[0].Ref, time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			kept := 0
			for _, d := range ds {
				if d.Keep {
					kept++
					fmt.Fprintf(&b, "%d %s %s\n", d.Entry.Seq, d.Entry.Time.Format(time.RFC3339), strings.Join(d.Reasons, ", "))
				}
			}
			fmt.Fprintf(&b, "kept %d of %d\n", kept, len(ds))
			path := filepath.Join("testdata", "policy-"+name+".golden")
			if *update {
				os.WriteFile(path, []byte(b.String()), 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
			}
		})
	}
}

func TestPolicyRules(t *testing.T) {
	h := history()
	if _, err := (Policy{}).Apply(h, nil, h[0].Ref, time.UTC); !errors.Is(err, ErrEmptyPolicy) {
		t.Errorf("empty policy: %v", err)
	}
	// The head is kept even when no rule keeps it.
	head := h[500].Ref
	ds, _ := Policy{Last: 1}.Apply(h, nil, head, time.UTC)
	for _, d := range ds {
		if d.Entry.Ref == head && !d.Keep {
			t.Error("the head was not kept")
		}
	}
	// Daily keeps the newest version of each day.
	ds, _ = Policy{Daily: 2}.Apply(h, nil, cas.Ref{}, time.UTC)
	var kept []time.Time
	for _, d := range ds {
		if d.Keep {
			kept = append(kept, d.Entry.Time)
		}
	}
	if len(kept) != 2 || kept[0] != h[0].Time || kept[1].Day() == kept[0].Day() {
		t.Errorf("daily 2 kept %v", kept)
	}
}

func TestParseWithin(t *testing.T) {
	for in, want := range map[string]time.Duration{"2d": 48 * time.Hour, "1y": 365 * 24 * time.Hour, "1m2d3h": (30+2)*24*time.Hour + 3*time.Hour, "90m": 90 * time.Minute} {
		if got, err := ParseWithin(in); err != nil || got != want {
			t.Errorf("ParseWithin(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "5", "d"} {
		if _, err := ParseWithin(bad); err == nil {
			t.Errorf("ParseWithin(%q) accepted", bad)
		}
	}
}
