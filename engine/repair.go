package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/transport"
)

// What repair says of each damaged path.
const (
	// Healed: its blobs were recorded damaged and now verify: a device
	// sent them again (or the read error passed).
	StatusHealed = "healed"
	// Healable: it is in the head of its root, so every device in sync
	// holds it, and the next push of any of them sends it again.
	StatusHealable = "healable"
	// Lost: only versions older than the head hold it; no device is
	// expected to have it. Restore it from elsewhere, or forget those
	// versions.
	StatusLost = "lost"
)

// RepairPath is one damaged path, reported once with every version that
// holds it.
type RepairPath struct {
	Path     string   `json:"path"` // "" is a root's top directory or its version
	Status   string   `json:"status"`
	Versions []string `json:"versions"` // namespace/root@version
	Refs     []string `json:"refs"`     // the damaged (or healed) blobs under it
	Error    string   `json:"error,omitempty"`
}

// RepairResult is what repair found and what it means.
type RepairResult struct {
	Store     string `json:"store"`
	Blobs     int    `json:"blobs"`
	BlobsRead int    `json:"blobs_read"`
	BytesRead int64  `json:"bytes_read"`
	Versions  int    `json:"versions"`
	// Damaged counts blobs damaged now; Healed, blobs recorded damaged
	// before this repair that verify now.
	Damaged int          `json:"damaged"`
	Healed  int          `json:"healed"`
	Paths   []RepairPath `json:"paths"`
	// Unreferenced are damaged blobs no kept version needs: garbage for
	// the next gc, nothing lost.
	Unreferenced []string `json:"unreferenced,omitempty"`
	Healable     int      `json:"healable_paths"`
	Lost         int      `json:"lost_paths"`
	// OK: nothing is damaged now.
	OK         bool  `json:"ok"`
	DurationMS int64 `json:"duration_ms"`
}

// ErrLost is returned (with the result) when repair finds damage that no
// device is expected to heal.
var ErrLost = errors.New("some damaged data is in no head: it is lost unless a copy exists elsewhere")

// RepairOptions say what to repair.
type RepairOptions struct {
	Options
	// Server, when its Data or URL is set, is a server to repair (with
	// its admin token) instead of a store directory.
	Server ServerRef
}

// Repair re-verifies a store (a store directory, opened here, or a server
// with an admin token), records every damaged blob so that devices send
// it again, and reports each damaged path once with its versions and
// whether it is healed, healable from a device or lost.
func Repair(ctx context.Context, store string, o RepairOptions) (*RepairResult, error) {
	if !IsLocal(store) && o.Server.URL == "" {
		o.Server.URL = store
	}
	if o.Server.URL != "" || o.Server.Data != "" {
		if o.Server.Token == "" {
			o.Server.Token = o.Credentials.Token
		}
		if o.Server.Fingerprint == "" {
			o.Server.Fingerprint = o.Credentials.Fingerprint
		}
		store = cmp.Or(o.Server.URL, o.Server.Data)
		c, err := dialAdmin(ctx, o.Server)
		if err != nil {
			return nil, fmt.Errorf("repair %s: %w", store, err)
		}
		defer c.Close()
		rep, err := c.Repair(ctx, transport.MaintenanceRequest{})
		if len(rep) == 0 {
			if err == nil {
				err = errors.New("the server sent no report")
			}
			return nil, fmt.Errorf("repair %s: %w", store, err)
		}
		var res RepairResult
		if jerr := json.Unmarshal(rep, &res); jerr != nil {
			return nil, fmt.Errorf("repair %s: report: %w", store, jerr)
		}
		res.Store = store
		return &res, repairErr(&res)
	}
	abs, err := filepath.Abs(store)
	if err != nil {
		return nil, err
	}
	db, err := cas.Open(abs, cas.Options{})
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", abs, err)
	}
	defer db.Close()
	res, err := RepairDB(ctx, db, "")
	if res != nil {
		res.Store = abs
	}
	return res, err
}

func repairErr(res *RepairResult) error {
	switch {
	case res.Lost > 0:
		return ErrLost
	case !res.OK:
		return ErrDamaged
	}
	return nil
}

// RepairDB is Repair on an open store (as a server runs it), or on one
// namespace of it.
func RepairDB(ctx context.Context, db *cas.DB, namespace string) (*RepairResult, error) {
	start := time.Now()
	before, err := recordedDamage(ctx, db, namespace)
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	var w *walk
	cr, err := CheckDB(ctx, db, namespace, CheckOptions{ReadData: true, watch: before, walked: &w})
	if cr == nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	after, err := recordedDamage(ctx, db, namespace)
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	res := &RepairResult{Store: cr.Store, Blobs: cr.Blobs, BlobsRead: cr.BlobsRead, BytesRead: cr.BytesRead, Versions: cr.Versions, Paths: []RepairPath{}}
	paths := map[string]*RepairPath{}
	add := func(ref, path, status, msg string, versions []string) {
		p := paths[path]
		if p == nil {
			p = &RepairPath{Path: path, Status: status, Error: msg}
			paths[path] = p
		}
		p.Status = worse(p.Status, status)
		if !slices.Contains(p.Refs, ref) {
			p.Refs = append(p.Refs, ref)
		}
		for _, v := range versions {
			if !slices.Contains(p.Versions, v) {
				p.Versions = append(p.Versions, v)
			}
		}
	}
	for _, d := range cr.Damaged {
		res.Damaged++
		if len(d.where) == 0 {
			res.Unreferenced = append(res.Unreferenced, cmp.Or(d.Ref, d.Error))
			continue
		}
		for path, versions := range d.where {
			status := StatusLost
			if slices.ContainsFunc(versions, func(v string) bool { return w != nil && w.heads[v] }) {
				status = StatusHealable
			}
			add(d.Ref, path, status, d.Error, versions)
		}
	}
	for ref := range before {
		if after.Has(ref) {
			continue
		}
		res.Healed++
		if w == nil {
			continue
		}
		for path, versions := range w.watched[ref] {
			add(ref.String(), path, StatusHealed, "", versions)
		}
	}
	for _, p := range paths {
		slices.Sort(p.Refs)
		switch p.Status {
		case StatusHealable:
			res.Healable++
		case StatusLost:
			res.Lost++
		}
		res.Paths = append(res.Paths, *p)
	}
	slices.SortFunc(res.Paths, func(a, b RepairPath) int { return strings.Compare(a.Path, b.Path) })
	slices.Sort(res.Unreferenced)
	res.OK = res.Damaged == 0
	res.DurationMS = durationMS(start)
	return res, repairErr(res)
}

// worse orders statuses: lost over healable over healed.
func worse(a, b string) string {
	rank := map[string]int{StatusHealed: 1, StatusHealable: 2, StatusLost: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// recordedDamage is the set of blobs recorded damaged: in the store, or
// those a namespace owns.
func recordedDamage(ctx context.Context, db *cas.DB, namespace string) (cas.RefSet, error) {
	out := cas.RefSet{}
	if namespace == "" {
		recs, err := db.Damaged(ctx)
		for _, r := range recs {
			out.Add(r.Ref)
		}
		return out, err
	}
	ns, err := db.Namespace(namespace)
	if err != nil {
		return nil, err
	}
	refs, err := ns.Damaged(ctx, 1<<20)
	for _, r := range refs {
		out.Add(r)
	}
	return out, err
}
