package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/gc"
	"github.com/ferry-sync/ferry/transport"
)

// maintenance runs garbage collection and checks inside the server, on
// demand (admin requests) and on a schedule. Collections run one at a
// time; pushes go on meanwhile.
type maintenance struct {
	db      *cas.DB
	srv     *transport.Server
	grace   time.Duration
	log     *slog.Logger
	metrics *metrics
	gcMu    sync.Mutex
}

func (m *maintenance) GC(ctx context.Context, req transport.MaintenanceRequest) (json.RawMessage, error) {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	grace := m.grace
	if req.Grace >= 0 {
		grace = req.Grace
	}
	// A collection an admin asks for keeps the namespaces' policies as a
	// scheduled one does: what a policy drops goes now, not a day later.
	var policies, forgotten int
	if !req.DryRun {
		policies, forgotten = m.applyPolicies(ctx)
	}
	st, err := engine.CollectDB(ctx, m.db, m.srv.PauseCommits, engine.GCOptions{
		Options: engine.Options{Logger: m.log},
		Grace:   grace,
		DryRun:  req.DryRun,
	})
	if st == nil {
		return nil, err
	}
	st.Policies, st.Forgotten = policies, forgotten
	if !req.DryRun {
		m.metrics.gc(st.DiskFreed, err)
	}
	b, jerr := json.Marshal(st)
	return b, errors.Join(err, jerr)
}

func (m *maintenance) Check(ctx context.Context, req transport.MaintenanceRequest) (json.RawMessage, error) {
	res, err := engine.CheckDB(ctx, m.db, req.Namespace, engine.CheckOptions{ReadData: req.ReadData, SubsetN: req.SubsetN, SubsetM: req.SubsetM})
	if res == nil {
		return nil, err
	}
	if errors.Is(err, engine.ErrDamaged) {
		err = nil // the report says so
	}
	b, jerr := json.Marshal(res)
	return b, errors.Join(err, jerr)
}

func (m *maintenance) Repair(ctx context.Context, req transport.MaintenanceRequest) (json.RawMessage, error) {
	res, err := engine.RepairDB(ctx, m.db, req.Namespace)
	if res == nil {
		return nil, err
	}
	if errors.Is(err, engine.ErrDamaged) || errors.Is(err, engine.ErrLost) {
		err = nil // the report says so
	}
	b, jerr := json.Marshal(res)
	return b, errors.Join(err, jerr)
}

// schedule collects garbage every period until ctx ends.
func (m *maintenance) schedule(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := m.GC(ctx, transport.MaintenanceRequest{Grace: -1})
		switch {
		case err == nil, ctx.Err() != nil:
		case errors.Is(err, cas.ErrGCBusy):
			// In a cluster every member's schedule runs; one collects.
			m.log.Info("scheduled gc skipped: another server of the cluster is collecting", "err", err)
		default:
			m.log.Error("scheduled gc failed", "err", err)
		}
	}
}

// applyPolicies forgets, in every namespace with a retention policy, the
// versions it does not keep. It returns how many policies it applied and
// how many versions they forgot.
func (m *maintenance) applyPolicies(ctx context.Context) (applied, forgotten int) {
	policies, err := m.srv.Policies()
	if err != nil {
		m.log.Error("retention policies", "err", err)
		return 0, 0
	}
	for name, raw := range policies {
		p, err := gc.ParsePolicy(raw)
		if err != nil {
			m.log.Error("retention policy unreadable or empty; skipped", "namespace", name, "err", err)
			continue
		}
		ns, err := m.db.Namespace(name)
		if err != nil {
			continue
		}
		n, err := engine.ForgetNamespace(ctx, ns, p, time.Local)
		if err != nil {
			m.log.Error("retention policy failed", "namespace", name, "err", err)
			continue
		}
		applied++
		forgotten += n
		if n > 0 {
			m.log.Info("retention policy applied", "namespace", name, "forgotten", n)
		}
	}
	return applied, forgotten
}
