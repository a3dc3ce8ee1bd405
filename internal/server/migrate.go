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
