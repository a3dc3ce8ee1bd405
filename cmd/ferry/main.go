// Command ferry keeps folders in sync through a store or a server, and
// keeps every version of them. This package only parses flags, calls the
// engine, and prints results; see README.md for every command.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

// Exit codes, as DESIGN.md §7 and the README list them.
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitConflicts = 3
	exitNoFolder  = 10 // no folder or store where one was named
	exitLocked    = 11 // another ferry holds the folder or the store
	exitAuth      = 12 // the server refused the token, or is not the one pinned
	exitFull      = 13 // quota exceeded, or the server's storage is full
	exitCancelled = 130
)

// globals are the flags every command takes.
type globals struct {
	json        bool
	quiet       bool
	verbose     int
	limitUp     int // KiB/s
	limitDown   int
	progress    bool
	noProgress  bool
	force       bool
	chdir       string
	tokenFile   string
	token       string // read from tokenFile
	fingerprint string
	streams     int
	connections int
	stdout      io.Writer
	stderr      io.Writer
}

// credentials reads what reaches a server: --token-file or FERRY_TOKEN,
// --fingerprint or FERRY_FINGERPRINT.
func (g *globals) credentials() engine.Credentials {
	c := engine.Credentials{Token: getenv("FERRY_TOKEN"), Fingerprint: g.fingerprint, Streams: g.streams, Connections: g.connections,
		LimitUpload: int64(g.limitUp) << 10, LimitDownload: int64(g.limitDown) << 10}
	// FERRY_IDLE_TIMEOUT: how soon a silent server counts as gone.
	if d, err := time.ParseDuration(getenv("FERRY_IDLE_TIMEOUT")); err == nil {
		c.IdleTimeout = d
	}
	if g.token != "" {
		c.Token, c.TokenExplicit = g.token, true
	}
	if c.Fingerprint == "" {
		c.Fingerprint = getenv("FERRY_FINGERPRINT")
	}
	return c
}

var getenv = os.Getenv

// usageError marks errors in how ferry was called.
type usageError struct{ error }

func main() { os.Exit(mainCode()) }

// mainCode is main without the exit, so tests can run ferry as a process
// from the test binary.
func mainCode() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// FERRY_CPUPROFILE=FILE writes a CPU profile of the run, for tuning.
	if path := os.Getenv("FERRY_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer f.Close()
			}
		}
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	pprof.StopCPUProfile()
	stop()
	// FERRY_MEMPROFILE=FILE writes a heap profile at exit.
	if path := os.Getenv("FERRY_MEMPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	// FERRY_RSS_FILE=FILE records the peak resident memory (VmHWM) at
	// exit, for benchmarks: a parent's rusage of its child counts the
	// parent's own pages from before exec.
	if path := os.Getenv("FERRY_RSS_FILE"); path != "" {
		if b, err := os.ReadFile("/proc/self/status"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					os.WriteFile(path, []byte(strings.TrimSpace(v)), 0o600)
				}
			}
		}
	}
	return code
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if g.json || wantsJSON(args) {
		b, _ := json.Marshal(struct {
			MessageType string `json:"message_type"`
			Code        int    `json:"code"`
			Message     string `json:"message"`
		}{"exit_error", code, err.Error()})
		fmt.Fprintln(stderr, string(b))
	} else {
		fmt.Fprintln(stderr, "ferry:", err)
	}
	return code
}

// exitCode maps errors to exit codes, in one place.
func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue), errors.Is(err, errFlag):
		return exitUsage
	// cobra's own usage errors carry no type: these are its messages.
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "required flag"):
		return exitUsage
	case errors.Is(err, context.Canceled):
		return exitCancelled
	case errors.Is(err, errConflicts):
		return exitConflicts
	case errors.Is(err, engine.ErrQuota), errors.Is(err, engine.ErrStorageFull):
		return exitFull
	case errors.Is(err, engine.ErrNoFolder), errors.Is(err, engine.ErrNotFolderRoot), errors.Is(err, engine.ErrNoStore):
		return exitNoFolder
	case errors.Is(err, engine.ErrLocked):
		return exitLocked
	case errors.Is(err, engine.ErrAuth), errors.Is(err, engine.ErrFingerprint):
		return exitAuth
	}
	return exitError
}

var (
	errFlag      = errors.New("usage")
	errConflicts = errors.New("conflict copies were made")
)

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Keep folders in sync, and keep every version of them",
		Long: `ferry keeps folders in sync between devices through a store or a server,
and keeps every version: push, pull and sync a folder, list its history,
diff and restore any version.`,
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print machine-readable JSON")
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "print only errors")
	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "-v lists each file moved; -vv logs what happens too")
	root.PersistentFlags().BoolVar(&g.progress, "progress", false, "show the progress bar even when stderr is not a terminal")
	root.PersistentFlags().BoolVar(&g.noProgress, "no-progress", false, "never show the progress bar")
	root.PersistentFlags().StringVarP(&g.chdir, "folder", "C", "", "the folder to act on (default: the one holding the current directory)")
	root.PersistentFlags().StringVar(&g.tokenFile, "token-file", "", "file holding the server token (default env FERRY_TOKEN, then the folder's)")
	root.PersistentFlags().StringVar(&g.fingerprint, "fingerprint", "", "the server certificate's SHA-256 to pin (env FERRY_FINGERPRINT)")
	root.PersistentFlags().IntVar(&g.streams, "streams", 8, "parallel upload streams to a server")
	root.PersistentFlags().IntVar(&g.connections, "connections", 4, "QUIC connections the streams are spread over (each has its own congestion window)")
	root.PersistentFlags().IntVar(&g.limitUp, "limit-upload", 0, "limit uploads to a server to this many KiB/s, across all streams (0: none)")
	root.PersistentFlags().IntVar(&g.limitDown, "limit-download", 0, "limit downloads from a server to this many KiB/s, across all streams (0: none)")
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		if err := flagsFromEnv(c); err != nil {
			return err
		}
		if g.limitUp < 0 || g.limitDown < 0 {
			return usageError{fmt.Errorf("--limit-upload and --limit-download take KiB/s, 0 or more")}
		}
		if g.tokenFile == "" {
			return nil
		}
		// A token file named but unreadable is an error, never a silent
		// fall back to FERRY_TOKEN or the folder's token.
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return usageError{fmt.Errorf("--token-file: %w", err)}
		}
		if g.token = strings.TrimSpace(string(b)); g.token == "" {
			return usageError{fmt.Errorf("--token-file %s is empty", g.tokenFile)}
		}
		return nil
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())}
	})
	root.AddCommand(
		newInit(g), newPush(g), newPull(g), newSync(g), newStatus(g),
		newLog(g), newDiff(g), newLs(g), newRestore(g), newTag(g), newCheck(g),
		newBench(g), newServe(g), newToken(g), newAdmin(g), newConflicts(g), newResolve(g), newWatch(g),
		newForget(g), newGC(g), newShare(g), newGet(g), newRepair(g), newVersion(g), newConfig(g), newRevert(g), newGen(g), newInvite(g), newOverride(g), newStats(g),
	)
	return root
}

// args wraps a cobra argument rule so that its errors are usage errors.
func args(rule cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := rule(c, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func (g *globals) logger() *slog.Logger {
	if g.verbose < 2 {
		return nil
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// options builds the engine options: a logger (-vv), and for a command
// that does what (empty: a short one), its progress: a bar, --json status
// lines, -v's file list.
func (g *globals) options(what string) (engine.Options, func()) {
	o := engine.Options{Logger: g.logger(), Credentials: g.credentials(), Force: g.force}
	if what == "" {
		return o, func() {}
	}
	p := g.newProgress(what, true)
	if p == nil {
		return o, func() {}
	}
	o.Progress = p.event
	return o, p.finish
}

// barOptions are options for a command that reads but moves nothing
// (status, dry runs): a bar on a terminal, no status lines or file list,
// so that its output stays one JSON object.
func (g *globals) barOptions(what string) (engine.Options, func()) {
	o := engine.Options{Logger: g.logger(), Credentials: g.credentials(), Force: g.force}
	p := g.newProgress(what, false)
	if p == nil {
		return o, func() {}
	}
	o.Progress = p.event
	return o, p.finish
}

// print writes v as JSON, or calls text for people.
func (g *globals) print(v any, text func(w io.Writer)) error {
	if g.json {
		b, err := withMessageType(v)
		if err != nil {
			return err
		}
		_, err = g.stdout.Write(append(b, '\n'))
		return err
	}
	if !g.quiet {
		text(g.stdout)
	}
	return nil
}
