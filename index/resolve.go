package index

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// ErrAmbiguous is returned when a ref prefix names more than one version.
var ErrAmbiguous = errors.New("index: ambiguous version name")

// timeLayouts are the forms "@TIME" accepts, in local time unless they
// carry a zone.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"}

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
	switch {
	case name == "" || name == "head":
		return h.Head(ctx, root)
	case strings.HasPrefix(name, "head~"):
		n, err := strconv.Atoi(name[len("head~"):])
		if err != nil || n < 0 {
			return cas.Ref{}, fmt.Errorf("version %q: want head~N with N a number", name)
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
				return cas.Ref{}, fmt.Errorf("version %q: history has only %d versions before head: %w", name, i, cas.ErrNotFound)
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
	for _, layout := range timeLayouts {
		if at, err = time.ParseInLocation(layout, name[1:], time.Local); err == nil {
			break
		}
	}
	if err != nil {
		return cas.Ref{}, fmt.Errorf("version %q: time not in a form like @2026-11-21T10:00", name)
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
	return cas.Ref{}, fmt.Errorf("version %q: no version at or before %s: %w", name, at.Format(time.RFC3339), cas.ErrNotFound)
}

func resolvePrefix(ctx context.Context, h cas.Heads, g cas.Getter, root, name string) (cas.Ref, error) {
	if len(name) < 8 || len(name) > 64 {
		return cas.Ref{}, fmt.Errorf("version %q: not head, head~N, @TIME, a tag, or a ref prefix of 8+ hex digits: %w", name, cas.ErrNotFound)
	}
	if _, err := hex.DecodeString(name[:len(name)&^1]); err != nil || strings.ToLower(name) != name {
		return cas.Ref{}, fmt.Errorf("version %q: not a tag, and not lowercase hex: %w", name, cas.ErrNotFound)
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
		return cas.Ref{}, fmt.Errorf("version %q: in no kept version of the root's history (forgotten, or never pushed): %w", name, cas.ErrNotFound)
	case 1:
		return found.Sorted()[0], nil
	}
	return cas.Ref{}, fmt.Errorf("%w: %q matches %d versions", ErrAmbiguous, name, len(found))
}
