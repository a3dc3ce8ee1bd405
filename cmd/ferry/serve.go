package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferry-sync/ferry/internal/server"
	"github.com/spf13/cobra"
)

func newServe(g *globals) *cobra.Command {
	var (
		cfg              server.Config
		minFree, ballast string
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
most 256 MiB) is given up for a collection's own writes on a full disk.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.Data == "" {
				return usageError{fmt.Errorf("serve: --data DIR is required")}
			}
			var err error
			if cfg.MinFree, err = optSize(minFree); err != nil {
				return usageError{fmt.Errorf("serve: --min-free: %w", err)}
			}
			if cfg.Ballast, err = optSize(ballast); err != nil {
				return usageError{fmt.Errorf("serve: --ballast: %w", err)}
			}
			cfg.Logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: logLevel(g)}))
			cfg.Version = buildVersion()
			cfg.Ready = func(info server.Info) {
				if g.json {
					b, _ := json.Marshal(info)
					fmt.Fprintln(g.stdout, string(b))
					return
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
	c.Flags().StringVar(&cfg.Metrics, "metrics", "", "TCP address for /metrics and /healthz (off when empty)")
	c.Flags().DurationVar(&cfg.GCEvery, "gc-every", 24*time.Hour, "collect garbage this often (0: only when an admin asks)")
	c.Flags().DurationVar(&cfg.GCGrace, "gc-grace", time.Hour, "spare what was put within this long")
	c.Flags().StringVar(&minFree, "min-free", "", "refuse uploads below this much free space (default max(1GiB, 2%); 0: never)")
	c.Flags().StringVar(&ballast, "ballast", "", "reserved space a collection on a full disk frees (default min-free/4, at most 256MiB; 0: none)")
	return c
}

// optSize parses a size flag; empty is -1, for the default.
func optSize(s string) (int64, error) {
	if s == "" {
		return -1, nil
	}
	return parseSize(s)
}

func logLevel(g *globals) slog.Level {
	switch {
	case g.verbose:
		return slog.LevelDebug
	case g.quiet:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
