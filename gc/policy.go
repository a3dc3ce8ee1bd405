package gc

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferry-sync/ferry/cas"
)

// Policy says which versions of a root to keep, restic style: the newest
// Last versions, the newest version of each of the newest Hourly hours,
// Daily days, Weekly ISO weeks, Monthly months and Yearly years, every
// version younger than Within (counted from the newest version, not from
// now, as restic does), and every tagged version. A count of -1 keeps
// every bucket ("unlimited"). The head is always kept.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       time.Duration
	// Tags keep versions with any of these tags; KeepTagged keeps every
	// tagged version (the default of the CLI: a tag is a promise).
	Tags       []string
	KeepTagged bool
}

// ErrEmptyPolicy refuses a policy that would keep nothing but the head.
var ErrEmptyPolicy = errors.New("no keep rule given; refusing to forget every version")

// Empty reports whether the policy has no rule.
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 && p.Yearly == 0 &&
		p.Within == 0 && len(p.Tags) == 0 && !p.KeepTagged
}

// Decision is what a policy says of one version.
type Decision struct {
	Entry   cas.HistoryEntry `json:"entry"`
	Keep    bool             `json:"keep"`
	Reasons []string         `json:"reasons,omitempty"`
}

// Apply decides, newest first, for every history entry. tags maps tag
// names to refs; head is the root's head. Times are bucketed in loc.
func (p Policy) Apply(entries []cas.HistoryEntry, tags map[string]cas.Ref, head cas.Ref, loc *time.Location) ([]Decision, error) {
	if p.Empty() {
		return nil, ErrEmptyPolicy
	}
	if loc == nil {
		loc = time.Local
	}
	// Newest first in the store's own order (its sequence numbers), not
	// by time: a server clock that was set back must not make an older
	// version "the last". Times only choose the hourly, daily... buckets.
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b cas.HistoryEntry) int { return cmp.Compare(b.Seq, a.Seq) })
	tagsOf := map[cas.Ref][]string{}
	for name, r := range tags {
		tagsOf[r] = append(tagsOf[r], name)
	}
	type bucket struct {
		name  string
		count int
		key   func(time.Time) string
		last  string
	}
	buckets := []*bucket{
		{name: "last", count: p.Last, key: func(t time.Time) string { return t.Format(time.RFC3339Nano) }},
		{name: "hourly", count: p.Hourly, key: func(t time.Time) string { return t.Format("2006-01-02 15") }},
		{name: "daily", count: p.Daily, key: func(t time.Time) string { return t.Format("2006-01-02") }},
		{name: "weekly", count: p.Weekly, key: func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{name: "monthly", count: p.Monthly, key: func(t time.Time) string { return t.Format("2006-01") }},
		{name: "yearly", count: p.Yearly, key: func(t time.Time) string { return t.Format("2006") }},
	}
	var newest time.Time
	if len(sorted) > 0 {
		newest = sorted[0].Time
	}
	out := make([]Decision, 0, len(sorted))
	seen := map[cas.Ref]bool{}
	for i, e := range sorted {
		d := Decision{Entry: e}
		t := e.Time.In(loc)
		if e.Ref == head {
			d.Reasons = append(d.Reasons, "head")
		}
		for _, b := range buckets {
			if b.count == 0 {
				continue
			}
			k := b.key(t)
			if b.name == "last" {
				k = fmt.Sprint(i) // every version is its own bucket
			}
			if k != b.last && (b.count < 0 || b.count > 0) {
				b.last = k
				d.Reasons = append(d.Reasons, b.name+" "+k)
				if b.count > 0 {
					b.count--
				}
			}
		}
		if p.Within > 0 && !e.Time.Before(newest.Add(-p.Within)) {
			d.Reasons = append(d.Reasons, "within "+p.Within.String())
		}
		for _, name := range tagsOf[e.Ref] {
			if p.KeepTagged || slices.Contains(p.Tags, name) {
				d.Reasons = append(d.Reasons, "tag "+name)
			}
		}
		// The same version twice in the history (the head moved back to
		// it): the newest entry decides, older ones are dropped.
		if seen[e.Ref] {
			d.Reasons = nil
		}
		d.Keep = len(d.Reasons) > 0
		if d.Keep {
			seen[e.Ref] = true
		}
		out = append(out, d)
	}
	return out, nil
}

// ParseWithin parses restic's --keep-within form: 1y2m3d4h (years,
// months as 30 days, days, hours), or a Go duration. It is never negative
// and at most maxWithin.
func ParseWithin(s string) (time.Duration, error) {
	bad := fmt.Errorf("within %q: want a duration like 2y5m7d3h", s)
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 || d > maxWithin {
			return 0, bad
		}
		return d, nil
	}
	var total time.Duration
	num := 0
	seen := false
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= '0' && c <= '9':
			if num > 1_000_000 {
				return 0, bad
			}
			num = num*10 + int(c-'0')
			seen = true
		case seen && (c == 'y' || c == 'm' || c == 'd' || c == 'h'):
			unit := map[rune]time.Duration{'y': 365 * 24 * time.Hour, 'm': 30 * 24 * time.Hour, 'd': 24 * time.Hour, 'h': time.Hour}[c]
			if time.Duration(num) > maxWithin/unit {
				return 0, bad
			}
			total += time.Duration(num) * unit
			if total > maxWithin {
				return 0, bad
			}
			num, seen = 0, false
		default:
			return 0, bad
		}
	}
	if seen || total == 0 {
		return 0, bad
	}
	return total, nil
}

// maxWithin is the longest within: two hundred years, short of where a
// Duration overflows.
const maxWithin = 200 * 365 * 24 * time.Hour

// ParsePolicy reads a policy's JSON (what a server keeps for a
// namespace) and checks it: counts of -1 (every bucket) or more, a within
// from 0 to 200 years, valid tag names, and at least one rule.
func ParsePolicy(b []byte) (Policy, error) {
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("policy: %w", err)
	}
	if dec.More() {
		return Policy{}, errors.New("policy: data after the policy")
	}
	return p, p.Validate()
}

// Validate checks the policy's values.
func (p Policy) Validate() error {
	for _, n := range []int{p.Last, p.Hourly, p.Daily, p.Weekly, p.Monthly, p.Yearly} {
		if n < -1 {
			return fmt.Errorf("policy: a count of %d (want -1 for all, or 0 and more)", n)
		}
	}
	if p.Within < 0 || p.Within > maxWithin {
		return fmt.Errorf("policy: within %v", p.Within)
	}
	for _, t := range p.Tags {
		if t == "" || len(t) > 255 || !utf8.ValidString(t) {
			return fmt.Errorf("policy: tag %q", t)
		}
	}
	if p.Empty() {
		return ErrEmptyPolicy
	}
	return nil
}
