package cas

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// MigrateStats is what a migration of packs moved.
type MigrateStats struct {
	Packs int   `json:"packs"`
	Bytes int64 `json:"bytes"`
	// Records counts the records a migration of records copied.
	Records int `json:"records,omitempty"`
}

// packRecords lists the store's packs and their committed lengths.
func (db *DB) packRecords() (map[uint64]int64, error) {
	out := map[uint64]int64{}
	err := db.iterate([]byte{'p'}, func(k, v []byte) error {
		n, m := binary.Uvarint(v)
		if len(k) != 9 || m <= 0 {
			return fmt.Errorf("%w: pack record %x", ErrCorrupt, k)
		}
		out[binary.BigEndian.Uint64(k[1:])] = int64(n)
		return nil
	})
	return out, err
}

// setPacksName records where the store's packs are.
func (db *DB) setPacksName(name string) error {
	return db.updateConfig(func(cfg *storeConfig) { cfg.Packs = name })
}

// updateConfig rewrites the store's config record with change applied.
func (db *DB) updateConfig(change func(*storeConfig)) error {
	v, err := db.meta.Get(context.Background(), keyConfig)
	if err != nil {
		return err
	}
	var cfg storeConfig
	if err := json.Unmarshal(v, &cfg); err != nil {
		return fmt.Errorf("%w: store config: %v", ErrCorrupt, err)
	}
	change(&cfg)
	b, _ := json.Marshal(cfg)
	return db.meta.Commit(context.Background(), &MetaWrites{Keys: map[string][]byte{string(keyConfig): b}}, true)
}

// MigratePacksOut moves the packs of the store in dir (kept in its
// directory) into ps, named name (s3://bucket/prefix): each pack is
// uploaded, read back and compared byte for byte with the local copy, and
// only then does the store record that its packs are in ps. The local
// copies stay, as the cache. The store must not be open elsewhere (a
// server stopped).
func MigratePacksOut(ctx context.Context, dir string, ps PackStore, name string) (MigrateStats, error) {
	var st MigrateStats
	if name == "" {
		return st, errors.New("migrate: name the pack store (s3://bucket/prefix)")
	}
	db, err := Open(dir, Options{})
	if err != nil {
		return st, err
	}
	defer db.Close()
	packs, err := db.packRecords()
	if err != nil {
		return st, err
	}
	for id, size := range packs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		f, err := db.st.open(packPath(db.dir, id))
		if err != nil {
			return st, fmt.Errorf("migrate: pack %d: %w", id, err)
		}
		err = ps.Create(ctx, packObject(id), io.NewSectionReader(f, 0, size), size)
		if errors.Is(err, fs.ErrExist) {
			err = nil // a migration run before: the comparison below decides
		}
		if err == nil {
			err = comparePack(ctx, ps, id, f, size)
		}
		f.Close()
		if err != nil {
			return st, fmt.Errorf("migrate: pack %d: %w", id, err)
		}
		st.Packs++
		st.Bytes += size
	}
	return st, db.setPacksName(name)
}

// comparePack reads pack id back from ps and compares it with local.
func comparePack(ctx context.Context, ps PackStore, id uint64, local io.ReaderAt, size int64) error {
	if n, err := ps.Size(ctx, packObject(id)); err != nil || n != size {
		return fmt.Errorf("the object holds %d bytes, the pack %d (%v)", n, size, err)
	}
	a, b := make([]byte, fillChunk), make([]byte, fillChunk)
	for off := int64(0); off < size; off += fillChunk {
		n := min(fillChunk, size-off)
		if err := ps.ReadAt(ctx, packObject(id), a[:n], off); err != nil {
			return err
		}
		if _, err := local.ReadAt(b[:n], off); err != nil {
			return err
		}
		if !bytes.Equal(a[:n], b[:n]) {
			return fmt.Errorf("%w: the object differs from the pack at %d", ErrCorrupt, off)
		}
	}
	return nil
}

// MigratePacksIn moves the packs of the store in dir back from ps (named
// name, as the store recorded) into its directory: each missing local
// copy is downloaded, then every blob is re-read and re-hashed from the
// local copies (a full check), and only then does the store record that
// its packs are local again. The objects stay in ps.
func MigratePacksIn(ctx context.Context, dir string, ps PackStore, name string) (MigrateStats, error) {
	var st MigrateStats
	db, err := Open(dir, Options{Packs: ps, PacksName: name})
	if err != nil {
		return st, err
	}
	defer db.Close()
	packs, err := db.packRecords()
	if err != nil {
		return st, err
	}
	for id, size := range packs {
		if db.st.exists(packPath(db.dir, id)) {
			continue
		}
		f, err := db.fillPack(id)
		if err != nil {
			return st, fmt.Errorf("migrate: pack %d: %w", id, err)
		}
		f.Close()
		st.Packs++
		st.Bytes += size
	}
	// Every pack is local now, so the check reads every blob from here.
	var bad []Damage
	if _, err := db.Check(ctx, CheckOptions{ReadData: true}, func(d Damage) { bad = append(bad, d) }); err != nil {
		return st, err
	}
	if len(bad) > 0 {
		return st, fmt.Errorf("%w: %d blobs damaged; the store keeps its packs in %s (first: %s: %s)", ErrCorrupt, len(bad), name, bad[0].Ref.Short(), bad[0].Err)
	}
	return st, db.setPacksName("")
}
