package index

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// ErrAmbiguous is returned when a ref prefix names more than one version.
var ErrAmbiguous = errors.New("ambiguous version name")

// LogTimeLayout is how log prints a version's time (the store's clock):
// to the millisecond, with the zone. @TIME reads it back.
const LogTimeLayout = "2006-01-02 15:04:05.000 Z07:00"

// timeLayouts are the forms "@TIME" accepts, in local time unless they
// carry a zone, each with the span it names: a time given to the second
// means the whole of that second, so the version log printed at
// 12:18:59 (made at 12:18:59.75) is what @12:18:59 finds.
var timeLayouts = []struct {
	layout string
	span   time.Duration
}{
	{time.RFC3339Nano, 0},
	{"2006-01-02 15:04:05 Z07:00", time.Second},
	{"2006-01-02 15:04:05Z07:00", time.Second},
	{"2006-01-02T15:04:05", time.Second},
	{"2006-01-02 15:04:05", time.Second},
	{"2006-01-02T15:04", time.Minute},
	{"2006-01-02 15:04", time.Minute},
	{"2006-01-02", 24 * time.Hour},
}

// ErrTagName: a tag name that is not allowed, because it would read as
// another kind of version name.
var ErrTagName = errors.New("not a tag name")

// ValidTagName refuses tag names Resolve would read as something else:
// head, head~N, @TIME, and 8 or more hex digits (a ref prefix), besides
// what no name may be.
func ValidTagName(name string) error {
	switch {
	case name == BaseName:
		return fmt.Errorf("tag %q reads as the folder's base version: %w", name, ErrTagName)
	case name == "head" || strings.HasPrefix(name, "head~") || strings.HasPrefix(name, "head^"):
		return fmt.Errorf("tag %q reads as the head: %w", name, ErrTagName)
	case strings.HasPrefix(name, "@"):
		return fmt.Errorf("tag %q reads as a time (@TIME): %w", name, ErrTagName)
	case len(name) >= 8 && isHex(name):
		return fmt.Errorf("tag %q reads as a version's ref prefix: %w", name, ErrTagName)
	}
	if err := cas.ValidName(name); err != nil {
		return fmt.Errorf("tag %q: %w", name, err)
	}
	return nil
}

// BaseName names a folder's base version: the one it last synced.
const BaseName = "base"

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// Resolve turns a version name into a version ref. Names are:
//
//	head, or ""        the root's head
//	head~N             the N-th first parent of the head
//	@TIME              the newest version in the history at or before TIME
//	a tag              a version tagged so
//	a hex prefix       (8 or more digits) a version in the root's history,
//	                   or a parent of one
//
// A tag shadows a hex prefix of the same spelling.
func Resolve(ctx context.Context, h cas.Heads, g cas.Getter, root, name string) (cas.Ref, error) {
	ref, err := resolve(ctx, h, g, root, name)
	if err != nil {
		return cas.Ref{}, fmt.Errorf("version %q: %w", name, err)
	}
	return ref, nil
}

func resolve(ctx context.Context, h cas.Heads, g cas.Getter, root, name string) (cas.Ref, error) {
	switch {
	case name == "" || name == "head":
		return h.Head(ctx, root)
	case strings.HasPrefix(name, "head~"):
		n, err := strconv.Atoi(name[len("head~"):])
		if err != nil || n < 0 {
			return cas.Ref{}, errors.New("want head~N with N a number")
		}
		ref, err := h.Head(ctx, root)
		if err != nil {
			return cas.Ref{}, err
		}
		for i := 0; i < n; i++ {
			v, err := LoadVersion(ctx, g, ref)
			if err != nil {
				return cas.Ref{}, err
			}
			if len(v.Parents) == 0 {
				return cas.Ref{}, cas.Errorf(cas.ErrNotFound, "history has only %d versions before head", i)
			}
			ref = v.Parents[0]
		}
		return ref, nil
	case strings.HasPrefix(name, "@"):
		return resolveTime(ctx, h, root, name)
	}
	tags, err := h.Tags(ctx, root)
	if err != nil {
		return cas.Ref{}, err
	}
	if ref, ok := tags[name]; ok {
		return ref, nil
	}
	return resolvePrefix(ctx, h, g, root, name)
}

func resolveTime(ctx context.Context, h cas.Heads, root, name string) (cas.Ref, error) {
	var at time.Time
	var err error
	for _, l := range timeLayouts {
		if at, err = time.ParseInLocation(l.layout, name[1:], time.Local); err == nil {
			span := l.span
			if d := fractionDigits(name); d > 0 {
				// Parsing takes a fraction after the seconds in any
				// layout: it names a span of its last digit.
				span = time.Duration(math.Pow10(9 - min(d, 9)))
			}
			if span > 0 {
				at = at.Add(span - 1)
			}
			break
		}
	}
	if err != nil {
		return cas.Ref{}, errors.New("time not in a form like @2026-11-21T10:00 or as log prints it")
	}
	hist, err := h.History(ctx, root)
	if err != nil {
		return cas.Ref{}, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if !hist[i].Time.After(at) {
			return hist[i].Ref, nil
		}
	}
	return cas.Ref{}, cas.Errorf(cas.ErrNotFound, "no version at or before %s", at.Format(time.RFC3339))
}

// fractionDigits counts the digits of a fraction of a second in a time
// (no other part of the forms @TIME accepts has a '.').
func fractionDigits(s string) int {
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return 0
	}
	n := 0
	for _, c := range s[i+1:] {
		if c < '0' || c > '9' {
			break
		}
		n++
	}
	return n
}

func resolvePrefix(ctx context.Context, h cas.Heads, g cas.Getter, root, name string) (cas.Ref, error) {
	if len(name) < 8 || len(name) > 64 {
		return cas.Ref{}, cas.Errorf(cas.ErrNotFound, "not head, head~N, @TIME, a tag, or a ref prefix of 8+ hex digits")
	}
	if _, err := hex.DecodeString(name[:len(name)&^1]); err != nil || strings.ToLower(name) != name {
		return cas.Ref{}, cas.Errorf(cas.ErrNotFound, "not a tag, and not lowercase hex")
	}
	hist, err := h.History(ctx, root)
	if err != nil {
		return cas.Ref{}, err
	}
	found := cas.RefSet{}
	check := func(r cas.Ref) {
		if strings.HasPrefix(r.String(), name) {
			found.Add(r)
		}
	}
	for _, e := range hist {
		check(e.Ref)
		if v, err := LoadVersion(ctx, g, e.Ref); err == nil {
			for _, p := range v.Parents {
				check(p)
			}
		}
	}
	switch len(found) {
	case 0:
		return cas.Ref{}, cas.Errorf(cas.ErrNotFound, "in no kept version of the root's history (forgotten, or never pushed)")
	case 1:
		return found.Sorted()[0], nil
	}
	return cas.Ref{}, fmt.Errorf("%w: %q matches %d versions", ErrAmbiguous, name, len(found))
}
