package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/bench"
	"github.com/spf13/cobra"
)

func newBench(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Run the benchmark workloads and write results under bench/results",
		// For developers (make bench): kept out of users' --help.
		Hidden: true,
	}
	var (
		cfg bench.LocalConfig
		out string
	)
	local := &cobra.Command{
		Use:   "local",
		Short: "The local engine: push of one large file vs dd, and a no-op push of many small files",
		Args:  args(cobra.NoArgs),
		RunE: benchRun(g, &out, func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error) {
			cfg.Ferry, cfg.Log = self, log
			rep, err := bench.RunLocal(c.Context(), cfg)
			return rep, "local", err
		}),
	}
	local.Flags().Int64Var(&cfg.BigSize, "big-size", 4<<30, "size of the large file, bytes")
	local.Flags().IntVar(&cfg.SmallFiles, "files", 100_000, "files in the no-op folder")
	local.Flags().IntVar(&cfg.Runs, "runs", 3, "runs per figure (the median is kept)")
	local.Flags().StringVar(&cfg.Work, "work", "", "scratch directory (default: a temp dir)")
	local.Flags().StringVar(&out, "out", "bench/results", "where to write local.md and local.json")
	c.AddCommand(local)

	var ncfg bench.NetConfig
	var nout string
	netCmd := &cobra.Command{
		Use:   "net",
		Short: "Through a real ferry serve on 127.0.0.1: push vs raw QUIC copy, 1 vs 8 streams, a 100-byte insert, many clients",
		Args:  args(cobra.NoArgs),
		RunE: benchRun(g, &nout, func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error) {
			ncfg.Ferry, ncfg.Log = self, log
			rep, err := bench.RunNet(c.Context(), ncfg)
			return rep, "net", err
		}),
	}
	netCmd.Flags().Int64Var(&ncfg.Size, "size", 1<<30, "size of the large file, bytes")
	netCmd.Flags().IntVar(&ncfg.SourceFiles, "source-files", 3000, "files in the source-like tree")
	netCmd.Flags().IntVar(&ncfg.Clients, "clients", 50, "clients pushing at once")
	netCmd.Flags().Int64Var(&ncfg.ClientSize, "client-size", 8<<20, "bytes each of those clients pushes")
	netCmd.Flags().IntVar(&ncfg.Runs, "runs", 3, "runs per figure (the median is kept)")
	netCmd.Flags().StringVar(&ncfg.Work, "work", "", "scratch directory (default: a temp dir)")
	netCmd.Flags().StringVar(&nout, "out", "bench/results", "where to write net.md and net.json")
	c.AddCommand(netCmd)

	var ccfg bench.CompareConfig
	var cout string
	var quick bool
	var only []string
	compare := &cobra.Command{
		Use:   "compare",
		Short: "ferry vs rsync (daemon on 127.0.0.1) and restic (local repository) on the same corpora",
		Args:  args(cobra.NoArgs),
		RunE: benchRun(g, &cout, func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error) {
			ccfg.Ferry, ccfg.Log = self, log
			name := "compare"
			if quick {
				ccfg.Corpora, ccfg.Runs, name = bench.QuickCorpora(), 1, "quick"
			}
			if len(only) > 0 {
				var err error
				if ccfg.Corpora, err = bench.SelectCorpora(ccfg.Corpora, only); err != nil {
					return nil, "", usageError{err}
				}
				name = "compare-" + strings.Join(only, "-")
			}
			rep, err := bench.RunCompare(c.Context(), ccfg)
			return rep, name, err
		}),
	}
	compare.Flags().IntVar(&ccfg.Runs, "runs", 3, "runs per figure (the median is kept)")
	compare.Flags().BoolVar(&quick, "quick", false, "small corpora, one run (CI)")
	compare.Flags().StringSliceVar(&only, "corpus", nil, "only these corpora: small, source, random, compressible (written to compare-NAMES.md)")
	compare.Flags().StringVar(&ccfg.Work, "work", "", "scratch directory (default: a temp dir)")
	compare.Flags().StringVar(&cout, "out", "bench/results", "where to write compare.md and compare.json")
	c.AddCommand(compare)

	var wcfg bench.WANConfig
	var sweep string
	wan := &cobra.Command{
		Use:   "wan",
		Short: "ferry vs rsync over an emulated WAN: an RTT x loss matrix on a user-space link between two network namespaces (needs root)",
		Args:  args(cobra.NoArgs),
		RunE: benchRun(g, &cout, func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error) {
			wcfg.Ferry, wcfg.Log = self, log
			if sweep != "" {
				var err error
				if wcfg.Sweep, err = bench.ParseWANSettings(sweep); err != nil {
					return nil, "", usageError{err}
				}
			}
			rep, err := bench.RunWAN(c.Context(), wcfg)
			return rep, "wan", err
		}),
	}
	wan.Flags().DurationSliceVar(&wcfg.RTTs, "rtt", nil, "round-trip times of the matrix (default 10ms,50ms,200ms)")
	wan.Flags().Float64SliceVar(&wcfg.Losses, "loss", nil, "packet loss of the matrix, percent, each direction (default 0,1,5)")
	wan.Flags().Int64Var(&wcfg.Rate, "rate", 100e6/8, "link rate, bytes per second each way")
	wan.Flags().StringVar(&sweep, "sweep", "", "ferry settings tried on the random file, STREAMSxCONNECTIONS,... (default 1x1,4x1,8x1,16x1,16x8,16x16; ferry's default 8x4 is added)")
	wan.Flags().Int64Var(&wcfg.Size, "size", 64<<20, "bytes of the random file")
	wan.Flags().StringVar(&wcfg.Tree, "tree", "", `directory copied as the tree workload (default GOROOT/src; "-": none)`)
	wan.Flags().DurationVar(&wcfg.Cap, "cap", 45*time.Second, "a transfer still running after this is stopped and its throughput taken from the link")
	wan.Flags().StringVar(&wcfg.Work, "work", "", "scratch directory")
	wan.Flags().StringVar(&cout, "out", "bench/results", "where to write wan.md and wan.json")
	c.AddCommand(wan)

	var pcfg bench.ProfileConfig
	profile := &cobra.Command{
		Use:   "profile",
		Short: "Where the CPU goes: each component's floor alone, then a profiled push and pull through ferry serve, client and server apart",
		Args:  args(cobra.NoArgs),
		RunE: benchRun(g, &cout, func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error) {
			pcfg.Ferry, pcfg.Log = self, log
			rep, err := bench.RunProfile(c.Context(), pcfg)
			return rep, "profile", err
		}),
	}
	profile.Flags().Int64Var(&pcfg.Size, "size", 1<<30, "bytes of the random file")
	profile.Flags().StringVar(&pcfg.Work, "work", "", "scratch directory")
	profile.Flags().StringVar(&cout, "out", "bench/results", "where to write profile.md and profile.json")
	c.AddCommand(profile)

	var scfg bench.ScaleConfig
	var large bool
	var files []int
	var sizes []string
	scale := &cobra.Command{
		Use:   "scale",
		Short: "Initial and no-op push time and memory for 10k..1M files; push time for 1 GiB (4, 16 GiB with --large)",
		Args:  args(cobra.NoArgs),
		RunE: benchRun(g, &cout, func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error) {
			scfg.Ferry, scfg.Log = self, log
			if large {
				scfg.Sizes = []int64{1 << 30, 4 << 30, 16 << 30}
			}
			if c.Flags().Changed("files") {
				scfg.Files = files
			}
			if c.Flags().Changed("sizes") {
				scfg.Sizes = nil
				for _, v := range sizes {
					n, err := parseSize(v)
					if err != nil {
						return nil, "", usageError{err}
					}
					scfg.Sizes = append(scfg.Sizes, n)
				}
			}
			rep, err := bench.RunScale(c.Context(), scfg)
			return rep, "scale", err
		}),
	}
	scale.Flags().BoolVar(&large, "large", false, "add 4 and 16 GiB to the push curve")
	scale.Flags().IntSliceVar(&files, "files", nil, "folder sizes for the many-files curve (default 10000,100000,300000,1000000)")
	scale.Flags().StringSliceVar(&sizes, "sizes", nil, "file sizes for the push curve (default 1GiB)")
	scale.Flags().IntVar(&scfg.Runs, "runs", 3, "runs per figure")
	scale.Flags().StringVar(&scfg.Work, "work", "", "scratch directory")
	scale.Flags().StringVar(&cout, "out", "bench/results", "where to write scale.md and scale.json")
	c.AddCommand(scale)

	var lcfg bench.WatchConfig
	lat := &cobra.Command{
		Use:   "watch",
		Short: "Watch latency: a write in one watched folder to the file in another, p50 and p99",
		Args:  args(cobra.NoArgs),
		RunE: benchRun(g, &cout, func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error) {
			lcfg.Ferry, lcfg.Log = self, log
			rep, err := bench.RunWatchLatency(c.Context(), lcfg)
			return rep, "watch", err
		}),
	}
	lat.Flags().IntVar(&lcfg.Writes, "writes", 100, "writes to time")
	lat.Flags().IntVar(&lcfg.IdleFiles, "idle-files", 100_000, "files written at once before the idle CPU is measured")
	lat.Flags().DurationVar(&lcfg.Idle, "idle", 30*time.Second, "idle window over which the watchers' CPU is measured")
	lat.Flags().StringVar(&cout, "out", "bench/results", "where to write watch.md and watch.json")
	c.AddCommand(lat)
	var gcfg bench.GCConfig
	gcCmd := &cobra.Command{
		Use:   "gc",
		Short: "Garbage collection: time and memory on a store of 1M chunks, space left after forget --keep-last 1",
		Args:  args(cobra.NoArgs),
		RunE: benchRun(g, &cout, func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error) {
			gcfg.Ferry, gcfg.Log = self, log
			rep, err := bench.RunGC(c.Context(), gcfg)
			return rep, "gc", err
		}),
	}
	gcCmd.Flags().IntVar(&gcfg.Chunks, "chunks", 1_000_000, "chunks in the synthetic store")
	gcCmd.Flags().StringVar(&gcfg.Work, "work", "", "scratch directory")
	gcCmd.Flags().StringVar(&cout, "out", "bench/results", "where to write gc.md and gc.json")
	c.AddCommand(gcCmd)
	c.AddCommand(newBenchAll(g))
	var lout string
	latest := &cobra.Command{
		Use:   "latest [--out DIR]",
		Short: "Gather the saved reports of DIR into DIR/latest.md (after running workloads one by one)",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			reps, err := bench.Gather(lout)
			if err != nil {
				return err
			}
			return bench.WriteLatest(lout, reps, "")
		},
	}
	latest.Flags().StringVar(&lout, "out", "bench/results", "the results directory")
	c.AddCommand(latest)
	return c
}

// newBenchAll runs every peer workload in turn and writes latest.md.
func newBenchAll(g *globals) *cobra.Command {
	var (
		quick bool
		out   string
	)
	c := &cobra.Command{
		Use:   "all [--quick] [--out DIR]",
		Short: "Every workload (compare, wan, profile, scale, watch, gc), then DIR/latest.md with all the tables",
		Long: `Run the whole comparison: ferry against rsync and restic on every corpus, the
emulated WAN matrix (a note instead where network namespaces or /dev/net/tun
are missing), the CPU profile of a push and a pull (client and server apart,
against each component's floor), the scale curves, watch latency and
collection. Each writes its own
NAME.md and NAME.json in DIR; latest.md gathers them. --quick uses small corpora
and one run (under two minutes: what CI runs so the harness never rots), written to
DIR/quick unless --out is given.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			log := func(string) {}
			if !g.quiet && !g.json {
				log = func(s string) { fmt.Fprintln(g.stderr, "bench:", s) }
			}
			ctx := c.Context()
			var reps []*bench.Report
			save := func(name string, rep *bench.Report, err error) error {
				if err != nil {
					return fmt.Errorf("bench %s: %w", name, err)
				}
				reps = append(reps, rep)
				return rep.Save(out, name)
			}
			note := ""
			if quick {
				note = "Quick run (--quick): small corpora, one run each; for the harness's health, not for the figures."
				if !c.Flags().Changed("out") {
					out = filepath.Join(out, "quick")
				}
			}
			ccfg := bench.CompareConfig{Ferry: self, Log: log}
			wcfg := bench.WANConfig{Ferry: self, Log: log}
			scfg := bench.ScaleConfig{Ferry: self, Log: log}
			lcfg := bench.WatchConfig{Ferry: self, Log: log}
			gcfg := bench.GCConfig{Ferry: self, Log: log}
			pcfg := bench.ProfileConfig{Ferry: self, Log: log}
			if quick {
				ccfg.Corpora, ccfg.Runs = bench.QuickCorpora(), 1
				wcfg.RTTs, wcfg.Losses, wcfg.Sweep = []time.Duration{10 * time.Millisecond}, []float64{1}, []bench.WANSetting{bench.DefaultSetting}
				wcfg.Size, wcfg.Tree, wcfg.Cap = 8<<20, "-", 20*time.Second
				scfg.Files, scfg.Sizes, scfg.Runs = []int{1000, 10_000}, []int64{64 << 20}, 1
				lcfg.Writes, lcfg.IdleFiles, lcfg.Idle = 20, 2000, 5*time.Second
				gcfg.Chunks = 20_000
				pcfg.Size = 32 << 20
			}
			rep, err := bench.RunCompare(ctx, ccfg)
			if err := save("compare", rep, err); err != nil {
				return err
			}
			rep, err = bench.RunWAN(ctx, wcfg)
			if err := save("wan", rep, err); err != nil {
				return err
			}
			rep, err = bench.RunProfile(ctx, pcfg)
			if err := save("profile", rep, err); err != nil {
				return err
			}
			rep, err = bench.RunScale(ctx, scfg)
			if err := save("scale", rep, err); err != nil {
				return err
			}
			rep, err = bench.RunWatchLatency(ctx, lcfg)
			if err := save("watch", rep, err); err != nil {
				return err
			}
			rep, err = bench.RunGC(ctx, gcfg)
			if err := save("gc", rep, err); err != nil {
				return err
			}
			if err := bench.WriteLatest(out, reps, note); err != nil {
				return err
			}
			if !g.quiet {
				fmt.Fprintf(g.stderr, "bench: wrote %s\n", filepath.Join(out, "latest.md"))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&quick, "quick", false, "small corpora, one run (CI)")
	c.Flags().StringVar(&out, "out", "bench/results", "where to write the results")
	return c
}

// benchRun is the RunE of one workload's command: run gets the binary's
// own path and a progress log (silent under -q and --json) and returns the
// report and its name; the report is saved as NAME.md and NAME.json in
// *out, and printed.
func benchRun(g *globals, out *string, run func(c *cobra.Command, self string, log func(string)) (*bench.Report, string, error)) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, _ []string) error {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		log := func(string) {}
		if !g.quiet && !g.json {
			log = func(s string) { fmt.Fprintln(g.stderr, "bench:", s) }
		}
		rep, name, err := run(c, self, log)
		if err != nil {
			return err
		}
		if err := rep.Save(*out, name); err != nil {
			return err
		}
		return g.print(rep, func(w io.Writer) { fmt.Fprint(w, rep.Markdown()) })
	}
}
