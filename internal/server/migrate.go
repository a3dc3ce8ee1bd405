package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferry-sync/ferry/cas"
)

// Migrate moves the packs of the stopped server in data into the S3
// bucket packs names (out), or back into its data directory (in: packs is
// where they are now). Every pack is verified on the way: compared byte
// for byte after its upload, or re-hashed blob by blob after the
// download.
func Migrate(ctx context.Context, data, packs string, out bool) (cas.MigrateStats, error) {
	store := filepath.Join(data, "store")
	if _, err := os.Stat(store); err != nil {
		return cas.MigrateStats{}, fmt.Errorf("migrate: %s is not a server's data directory: %w", data, err)
	}
	ps, err := openPacks(ctx, packs)
	if err != nil {
		return cas.MigrateStats{}, fmt.Errorf("migrate: %w", err)
	}
	var st cas.MigrateStats
	if out {
		st, err = cas.MigratePacksOut(ctx, store, ps, packs)
	} else {
		st, err = cas.MigratePacksIn(ctx, store, ps, packs)
	}
	if errors.Is(err, cas.ErrLocked) {
		return st, fmt.Errorf("migrate %s: %w; stop the server first", data, ErrLocked)
	}
	if err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}
	return st, nil
}

// MigrateResult is what admin migrate moved.
type MigrateResult struct {
	Packs   *cas.MigrateStats `json:"packs,omitempty"`
	Records *cas.MigrateStats `json:"records,omitempty"`
}

// MigrateRecords copies the records of the stopped server in data into
// the PostgreSQL database dsn names, which must hold no store (out), or
// back from it into the data directory (in). Every record is compared
// after the copy. Out, the local records are then marked moved, so the
// directory is refused unless served with --meta.
func MigrateRecords(ctx context.Context, data, dsn string, out bool) (cas.MigrateStats, error) {
	store := filepath.Join(data, "store")
	if out {
		if _, err := os.Stat(filepath.Join(store, "pebble")); err != nil {
			return cas.MigrateStats{}, fmt.Errorf("migrate: %s is not a server's data directory: %w", data, err)
		}
	} else if err := os.MkdirAll(store, 0o700); err != nil {
		return cas.MigrateStats{}, fmt.Errorf("migrate: %w", err)
	}
	m, err := openMeta(ctx, dsn)
	if err != nil {
		return cas.MigrateStats{}, fmt.Errorf("migrate: %w", err)
	}
	defer m.Close()
	var st cas.MigrateStats
	if out {
		st, err = cas.MigrateMetaOut(ctx, store, m)
	} else {
		st, err = cas.MigrateMetaIn(ctx, store, m)
	}
	if errors.Is(err, cas.ErrLocked) {
		return st, fmt.Errorf("migrate %s: %w; stop the server first", data, ErrLocked)
	}
	if err != nil {
		return st, fmt.Errorf("migrate: %w", err)
	}
	return st, nil
}
