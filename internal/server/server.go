// Package server is the ferry daemon: it owns one store directory, serves
// it over QUIC to many clients and namespaces, exposes Prometheus metrics
// and a health endpoint, and stops cleanly on cancellation.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/gc"
	"github.com/ferry-sync/ferry/s3store"
	"github.com/ferry-sync/ferry/state"
	"github.com/ferry-sync/ferry/transport"
	"golang.org/x/sys/unix"
)

// Config describes a server. Data is required.
type Config struct {
	// Data is the server's directory: store/, cert.pem, key.pem,
	// admin.token.
	Data string
	// Listen is the UDP address (default 127.0.0.1:7443).
	Listen string
	// Metrics, if set, is a TCP address for /metrics and /healthz.
	Metrics string
	Logger  *slog.Logger
	Version string
	// Ready is called once the server listens.
	Ready func(Info)
	// GCEvery runs a garbage collection this often (0: never on a
	// schedule; admins can still ask). GCGrace spares what was put within
	// it (default gc.DefaultGrace).
	GCEvery, GCGrace time.Duration
	// MinFree refuses uploads while the data directory's filesystem has
	// less free (-1: the larger of 1 GiB and 2% of the filesystem; 0:
	// never). Ballast is the reserved space a collection frees on a full
	// disk (-1: MinFree/4, at most 256 MiB; 0: none).
	MinFree, Ballast int64
	// Limits bound connections, memory and failed authentications.
	Limits transport.Limits
	// Packs, if set, keeps the packs in an S3 bucket:
	// s3://BUCKET[/PREFIX][?endpoint=URL&region=R], with credentials from
	// the AWS SDK's default chain (AWS_* variables, ~/.aws). PackCache
	// bounds their local copies (-1: a quarter of the disk, at most
	// 10 GiB; 0: no bound).
	Packs     string
	PackCache int64
	// Meta, if set, keeps the store's records in a PostgreSQL database
	// (a postgres:// URL or DSN) that other servers share: a cluster. It
	// needs Packs, since every server must read every pack.
	Meta string
	// CertFile and KeyFile, if set, are the TLS certificate and key (PEM)
	// instead of the data directory's or the cluster's.
	CertFile, KeyFile string
}

// openPacks opens the S3 bucket that keeps the packs, and checks it
// answers: a wrong endpoint or credentials fail the start, not the first
// push.
func openPacks(ctx context.Context, raw string) (*s3store.Store, error) {
	bucket, prefix, o, err := s3store.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	ps, err := s3store.Open(ctx, bucket, prefix, o)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ps.Ensure(cctx); err != nil {
		return nil, err
	}
	return ps, nil
}

// spaceDefaults fills in MinFree and Ballast for the data directory's
// filesystem, and returns the memtable size: 64 MiB, but at most a
// sixteenth of the filesystem, since Pebble preallocates each WAL file to
// about the memtable's size (on a 64 MiB disk a 64 MiB memtable fills it
// before anything is stored).
func (cfg *Config) spaceDefaults() (memtable uint64) {
	var total int64 = 1 << 40
	var st unix.Statfs_t
	if unix.Statfs(cfg.Data, &st) == nil {
		total = int64(st.Blocks) * int64(st.Bsize)
	}
	if cfg.MinFree < 0 {
		cfg.MinFree = max(1<<30, total/50)
	}
	if cfg.Ballast < 0 {
		cfg.Ballast = min(cfg.MinFree/4, 256<<20)
	}
	if cfg.Packs != "" && cfg.PackCache < 0 {
		// A cache, not a copy: a quarter of the disk, at most 10 GiB.
		cfg.PackCache = max(min(total/4, 10<<30), 64<<20)
	}
	return uint64(min(max(total/16, 4<<20), 64<<20))
}

func (cfg *Config) memory(cache int64, memtable uint64) Memory {
	lim := cfg.Limits.WithDefaults()
	return Memory{
		Base:    cache + 2*int64(memtable) + 64<<20,
		Budgets: max(lim.UploadBytes, 0) + max(lim.DownloadBytes, 0),
		PerConn: transport.ConnWindow + 1<<20,
	}
}

// Info is what a started server tells its operator.
type Info struct {
	Addr        string `json:"addr"`
	MetricsAddr string `json:"metrics_addr,omitempty"`
	Fingerprint string `json:"fingerprint"`
	AdminToken  string `json:"admin_token_file"`
	// NewAdminToken is set the first time, when the token was just made.
	NewAdminToken bool `json:"new_admin_token"`
	// Memory is what bounds the server's memory.
	Memory Memory `json:"memory"`
}

// Memory is the server's memory bound (RELIABILITY D7), in bytes: what it
// holds whatever the clients do, what their transfers may hold together,
// and what each connection may hold. Ceiling(n) is the bound for n
// connections. Each term is a limit in the code, not an estimate.
type Memory struct {
	// Base is Pebble's block cache, its memtables (two may be in memory
	// while one flushes), and 64 MiB for the runtime, the index and
	// goroutine stacks.
	Base int64 `json:"base"`
	// Budgets are the upload and download budgets: bytes of blobs held
	// between the network and the store, across every connection.
	Budgets int64 `json:"budgets"`
	// PerConn is a connection's receive window (what QUIC buffers for it
	// before the server reads) and its state.
	PerConn int64 `json:"per_conn"`
}

// Ceiling is the bound for conns connections.
func (m Memory) Ceiling(conns int) int64 { return m.Base + m.Budgets + int64(conns)*m.PerConn }

// ErrLocked is returned when another server has the data directory.
var ErrLocked = cas.Errorf(cas.ErrLocked, "the data directory is locked by another ferry serve")

// Run serves until ctx is done, then closes connections and the store.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:7443"
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	memtable := cfg.spaceDefaults()
	const cacheSize = 128 << 20
	opts := cas.Options{Create: true, Logger: cfg.Logger, CacheSize: cacheSize, MemTableSize: memtable,
		MinFree: cfg.MinFree, Ballast: cfg.Ballast}
	if cfg.Meta != "" {
		if cfg.Packs == "" {
			return fmt.Errorf("serve: --meta needs --store s3://...: servers that share their records must share their packs")
		}
		m, err := openMeta(ctx, cfg.Meta)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		opts.Meta = m
	}
	if cfg.Packs != "" {
		ps, err := openPacks(ctx, cfg.Packs)
		if err != nil {
			return fmt.Errorf("serve: --packs: %w", err)
		}
		opts.Packs, opts.PacksName, opts.CacheBytes = ps, cfg.Packs, cfg.PackCache
	}
	db, err := cas.Open(filepath.Join(cfg.Data, "store"), opts)
	if errors.Is(err, cas.ErrLocked) {
		return fmt.Errorf("serve %s: %w", cfg.Data, ErrLocked)
	}
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer db.Close()
	tokens, err := transport.NewTokens(db, nil)
	if err != nil {
		return err
	}
	info := Info{AdminToken: filepath.Join(cfg.Data, "admin.token"), Memory: cfg.memory(cacheSize, memtable)}
	ensure := ensureAdminToken
	if db.Shared() {
		ensure = func(tokens *transport.Tokens, path string) (bool, error) {
			return ensureClusterAdminToken(db, tokens, path)
		}
	}
	if info.NewAdminToken, err = ensure(tokens, info.AdminToken); err != nil {
		return fmt.Errorf("serve: admin token: %w", err)
	}
	cert, fp, err := loadCert(cfg, db)
	if err != nil {
		return err
	}
	info.Fingerprint = fp
	ln, err := transport.Listen(cfg.Listen, cert, cfg.Logger)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer ln.Close()
	info.Addr = ln.Addr().String()

	m := newMetrics()
	var httpSrv *http.Server
	if cfg.Metrics != "" {
		hl, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return fmt.Errorf("serve: metrics: %w", err)
		}
		info.MetricsAddr = hl.Addr().String()
		httpSrv = &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
		go httpSrv.Serve(hl)
		defer httpSrv.Close()
	}
	if cfg.GCGrace <= 0 {
		cfg.GCGrace = gc.DefaultGrace
	}
	maint := &maintenance{db: db, grace: cfg.GCGrace, log: cfg.Logger, metrics: m}
	srv := transport.NewServer(db, tokens, transport.ServerOptions{Logger: cfg.Logger, Metrics: m, Version: cfg.Version, Maintenance: maint, Limits: cfg.Limits})
	maint.srv = srv
	gcCtx, stopGC := context.WithCancel(ctx)
	var gcDone sync.WaitGroup
	gcDone.Go(func() { maint.schedule(gcCtx, cfg.GCEvery) })
	// Deferred after db.Close, so it runs before it.
	defer gcDone.Wait()
	defer stopGC()
	cfg.Logger.Info("serving", "addr", info.Addr, "memory_base", info.Memory.Base, "memory_budgets", info.Memory.Budgets, "memory_per_conn", info.Memory.PerConn, "fingerprint", fp, "metrics", info.MetricsAddr, "data", cfg.Data, "min_free", cfg.MinFree, "free", db.Free())
	// Admin commands on this machine find the server through its data
	// directory.
	if b, err := json.Marshal(info); err == nil {
		_ = state.WriteFileAtomic(filepath.Join(cfg.Data, "serve.json"), append(b, '\n'), 0o600)
	}
	if cfg.Ready != nil {
		cfg.Ready(info)
	}
	err = srv.Serve(ctx, ln)
	cfg.Logger.Info("stopping", "err", err)
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// ensureAdminToken makes the server admin token on first start and writes
// it to path (mode 0600). It reports whether it made one.
func ensureAdminToken(tokens *transport.Tokens, path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	tok, _, err := tokens.Create(transport.AllNamespaces, transport.PermAdmin, "server admin")
	if err != nil {
		return false, err
	}
	return true, state.WriteFileAtomic(path, []byte(tok+"\n"), 0o600)
}
