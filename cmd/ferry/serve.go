package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/internal/server"
	"github.com/spf13/cobra"
)

func newServe(g *globals) *cobra.Command {
	var (
		cfg              server.Config
		minFree, ballast string
		upMem, downMem   string
		logFormat        string
		logFile          string
		packCache        string
	)
	c := &cobra.Command{
		Use:   "serve --data DIR [--listen 127.0.0.1:7443] [--metrics ADDR] [--min-free SIZE]",
		Short: "Run the server daemon: many devices and users, each in their own namespace",
		Long: `Serve the store in DATA over QUIC. On first start it makes a self-signed
certificate (kept in DATA; its SHA-256 fingerprint is printed: give it to clients
with --fingerprint) and an admin token in DATA/admin.token (mode 0600): use it to
make tokens for namespaces with 'ferry token create'. Stops cleanly on SIGTERM.

While the data directory's filesystem has less than --min-free free (default:
the larger of 1 GiB and 2% of the filesystem), new uploads are refused with
"server storage is full" (exit status 13 at the client) before the disk itself
fills; reads, pulls, restores, forget and gc go on, and uploads resume once
space returns. A ballast file (--ballast, default a quarter of --min-free, at
most 256 MiB) is given up for a collection's own writes on a full disk.

Clients together hold at most --upload-memory of upload bytes and
--download-memory of blobs being sent; past that, streams wait for credit.
Connections are capped per source address and per token, and an address that
fails to authenticate 10 times is slowed to one attempt every 6 seconds. The
server's memory stays under about 320 MiB (caches and memtables) plus the two
budgets plus 17 MiB (a connection's receive window) per connection; see
docs/ARCHITECTURE.md, "Hostile tenants".

A cluster is several servers started with the same --store s3://BUCKET/PREFIX
and --meta postgres://...: the packs are in the bucket, the records (blobs,
heads, history, tokens, shares) in the database, and DATA keeps only a cache
of packs. The first server makes the certificate and the admin token and keeps
them in the database, so every server presents one fingerprint; see the
README, "Running a cluster".`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.Data == "" {
				return usageError{fmt.Errorf("serve: --data DIR is required")}
			}
			if cfg.Meta != "" && cfg.Packs == "" {
				return usageError{fmt.Errorf("serve: --meta needs --store s3://BUCKET[/PREFIX]: servers that share their records must share their packs")}
			}
			if (cfg.CertFile == "") != (cfg.KeyFile == "") {
				return usageError{fmt.Errorf("serve: --cert and --key go together")}
			}
			if err := engine.StoreOutsideFolders(cfg.Data); err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			var err error
			if cfg.MinFree, err = optSize(minFree); err != nil {
				return usageError{fmt.Errorf("serve: --min-free: %w", err)}
			}
			if cfg.Ballast, err = optSize(ballast); err != nil {
				return usageError{fmt.Errorf("serve: --ballast: %w", err)}
			}
			cfg.PackCache = -1 // a quarter of the disk, at most 10 GiB
			if packCache != "" {
				if cfg.Packs == "" {
					return usageError{fmt.Errorf("serve: --pack-cache is for --packs (--store)")}
				}
				if cfg.PackCache, err = parseSize(packCache); err != nil {
					return usageError{fmt.Errorf("serve: --pack-cache: %w", err)}
				}
			}
			for _, f := range []struct {
				name string
				v    string
				dst  *int64
			}{{"upload-memory", upMem, &cfg.Limits.UploadBytes}, {"download-memory", downMem, &cfg.Limits.DownloadBytes}} {
				n, err := parseSize(f.v)
				if err != nil {
					return usageError{fmt.Errorf("serve: --%s: %w", f.name, err)}
				}
				*f.dst = offIfZero(n)
			}
			if cfg.Limits.ConnsPerIP < 0 || cfg.Limits.ConnsPerToken < 0 {
				return usageError{fmt.Errorf("serve: --max-conns-per-ip and --max-conns-per-token take a count, 0 for no limit")}
			}
			cfg.Limits.ConnsPerIP = int(offIfZero(int64(cfg.Limits.ConnsPerIP)))
			cfg.Limits.ConnsPerToken = int(offIfZero(int64(cfg.Limits.ConnsPerToken)))
			logger, closeLog, err := serveLogger(g, logFormat, logFile)
			if err != nil {
				return err
			}
			defer closeLog()
			cfg.Logger = logger
			cfg.Version = buildVersion()
			cfg.Ready = func(info server.Info) {
				if g.json {
					b, _ := json.Marshal(info)
					fmt.Fprintln(g.stdout, string(markObject(b, "status")))
					return
				}
				if g.quiet {
					return // -q: no banner (--json still prints the start line)
				}
				fmt.Fprintf(g.stdout, "ferry serve: listening on %s\n  fingerprint %s\n", info.Addr, info.Fingerprint)
				if info.MetricsAddr != "" {
					fmt.Fprintf(g.stdout, "  metrics     http://%s/metrics\n", info.MetricsAddr)
				}
				if info.NewAdminToken {
					fmt.Fprintf(g.stdout, "  admin token %s (new)\n", info.AdminToken)
				} else {
					fmt.Fprintf(g.stdout, "  admin token %s\n", info.AdminToken)
				}
			}
			return server.Run(c.Context(), cfg)
		},
	}
	c.Flags().StringVar(&cfg.Data, "data", "", "the server's data directory (required)")
	c.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "UDP address to listen on")
	c.Flags().StringVar(&cfg.Packs, "packs", "", "keep packs in S3: s3://BUCKET[/PREFIX][?endpoint=URL&region=R] (credentials: AWS_* variables, ~/.aws)")
	c.Flags().StringVar(&cfg.Packs, "store", "", "the same as --packs (the name a cluster's docs use)")
	c.Flags().StringVar(&cfg.Meta, "meta", "", "keep the records in PostgreSQL, shared with other servers: postgres://USER@HOST/DB (PG* variables fill in the rest); needs --store")
	c.Flags().StringVar(&cfg.CertFile, "cert", "", "TLS certificate (PEM) instead of the data directory's or the cluster's; with --key")
	c.Flags().StringVar(&cfg.KeyFile, "key", "", "the --cert's private key (PEM)")
	c.Flags().StringVar(&packCache, "pack-cache", "", "with --packs: bound the local copies of packs (default: a quarter of the disk, at most 10GiB; 0: keep them all)")
	c.Flags().StringVar(&cfg.Metrics, "metrics", "", "TCP address for /metrics and /healthz (off when empty)")
	c.Flags().DurationVar(&cfg.GCEvery, "gc-every", 24*time.Hour, "collect garbage this often (0: only when an admin asks)")
	c.Flags().DurationVar(&cfg.GCGrace, "gc-grace", time.Hour, "spare what was put within this long")
	c.Flags().StringVar(&minFree, "min-free", "", "refuse uploads below this much free space (default max(1GiB, 2%); 0: never)")
	c.Flags().StringVar(&ballast, "ballast", "", "reserved space a collection on a full disk frees (default min-free/4, at most 256MiB; 0: none)")
	c.Flags().StringVar(&upMem, "upload-memory", "256MiB", "upload bytes all clients may hold in memory at once (0: no limit)")
	c.Flags().StringVar(&downMem, "download-memory", "256MiB", "blob bytes read for all clients' downloads at once (0: no limit)")
	c.Flags().IntVar(&cfg.Limits.ConnsPerIP, "max-conns-per-ip", 256, "connections from one address (0: no limit)")
	c.Flags().IntVar(&cfg.Limits.ConnsPerToken, "max-conns-per-token", 64, "connections of one token (0: no limit)")
	c.Flags().StringVar(&logFormat, "log-format", "text", "log lines as text (key=value) or json")
	c.Flags().StringVar(&logFile, "log-file", "", "append the log to this file (default: stderr)")
	return c
}

// offIfZero maps a flag's 0 ("no limit") to a limit's negative (off).
func offIfZero(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// optSize parses a size flag; empty is -1, for the default.
func optSize(s string) (int64, error) {
	if s == "" {
		return -1, nil
	}
	return parseSize(s)
}

// serveLogger is the server's slog logger, by --log-format and
// --log-file, and what closes its file.
func serveLogger(g *globals, format, file string) (*slog.Logger, func(), error) {
	w, closeFn := g.stderr, func() {}
	if file != "" {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("serve: --log-file: %w", err)
		}
		w, closeFn = f, func() { f.Close() }
	}
	opts := &slog.HandlerOptions{Level: logLevel(g)}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), closeFn, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), closeFn, nil
	}
	closeFn()
	return nil, nil, usageError{fmt.Errorf("serve: --log-format %q: want text or json", format)}
}

func logLevel(g *globals) slog.Level {
	switch {
	case g.verbose > 0:
		return slog.LevelDebug
	case g.quiet:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
