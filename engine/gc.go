package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/gc"
	"github.com/ferry-sync/ferry/transport"
)

// GCOptions tune a garbage collection.
type GCOptions struct {
	Options
	// Grace spares what was put within this long (negative: the
	// default, gc.DefaultGrace, or the server's).
	Grace  time.Duration
	DryRun bool
	// Server reaches a server (with its admin token) when the target is
	// not a store directory.
	Server ServerRef
}

// GC collects garbage: in a store directory (offline: no other process
// may have it open), or, given a server, inside that server while it
// serves. What no kept version, tag or share needs, and what was not put
// within the grace, is deleted and its disk space returned.
func GC(ctx context.Context, store string, o GCOptions) (*gc.Stats, error) {
	if store == "" || !IsLocal(store) {
		r := o.Server
		if store != "" {
			r.URL = store
		}
		c, err := dialAdmin(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		defer c.Close()
		rep, err := c.GC(ctx, transport.MaintenanceRequest{DryRun: o.DryRun, Grace: o.Grace})
		if len(rep) == 0 {
			if err == nil {
				err = errors.New("the server sent no report")
			}
			return nil, fmt.Errorf("gc: %w", err)
		}
		var st gc.Stats
		if jerr := json.Unmarshal(rep, &st); jerr != nil {
			return nil, fmt.Errorf("gc: report: %w", jerr)
		}
		return &st, err
	}
	abs, err := filepath.Abs(store)
	if err != nil {
		return nil, err
	}
	// A collection reads sequentially: a small block cache does.
	db, err := cas.Open(abs, cas.Options{CacheSize: 8 << 20})
	if err != nil {
		return nil, fmt.Errorf("gc %s: %w", abs, err)
	}
	defer db.Close()
	return CollectDB(ctx, db, nil, o)
}

// CollectDB collects garbage in an open store. pause, if set, holds head
// moves while the collection starts (a server's commit lock).
func CollectDB(ctx context.Context, db *cas.DB, pause func() func(), o GCOptions) (*gc.Stats, error) {
	o.applyDefaults()
	grace := o.Grace
	if grace < 0 {
		grace = gc.DefaultGrace
	}
	st, err := gc.Collect(ctx, db, gc.Options{
		Grace:  grace,
		DryRun: o.DryRun,
		Now:    o.Now,
		Pause:  pause,
		Pins:   func(ctx context.Context, ns string) ([]cas.Ref, error) { return sharePins(ctx, db, ns, o.Now()) },
		Logger: o.Logger,
	})
	if err != nil {
		return st, fmt.Errorf("gc %s: %w", db.Dir(), err)
	}
	return st, nil
}

// sharePins are the refs the namespace's unexpired shares keep.
func sharePins(ctx context.Context, db *cas.DB, ns string, now time.Time) ([]cas.Ref, error) {
	tokens, err := transport.NewTokens(db, nil)
	if err != nil {
		return nil, err
	}
	return tokens.SharePins(ns, now)
}
