package main

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newWatch(g *globals) *cobra.Command {
	var o engine.WatchOptions
	c := &cobra.Command{
		Use:   "watch [DIR]",
		Short: "Keep the folder in sync continuously until interrupted",
		Long: `Keep the folder in sync with its remote until interrupted: local changes are
pushed once written files are closed (batched by --settle and --debounce), the
server's head changes are pulled as it announces them, and a full round runs
every --rescan. Each round prints one line (with --json, one JSON object per line
with a message_type). A lost connection is retried with backoff; offline edits
are synced on reconnect, and conflicting edits are kept as conflict copies.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			eo, _ := g.options("")
			o.Options = eo
			var mu sync.Mutex
			o.Report = func(e engine.WatchEvent) {
				mu.Lock()
				defer mu.Unlock()
				if g.json {
					b, _ := json.Marshal(e)
					fmt.Fprintln(g.stdout, string(b))
					return
				}
				if g.quiet && e.MessageType != "error" {
					return
				}
				ts := e.Time.Local().Format("15:04:05.000")
				switch e.MessageType {
				case "error":
					fmt.Fprintf(g.stderr, "%s error: %s\n", ts, e.Error)
				default:
					for _, w := range e.Warnings {
						fmt.Fprintf(g.stdout, "%s warning: %s\n", ts, w)
					}
					for _, cf := range e.Conflicts {
						fmt.Fprintf(g.stdout, "%s conflict: %s (local copy %s)\n", ts, cf.Path, cf.Copy)
					}
					fmt.Fprintf(g.stdout, "%s %-9s pulled %d files (%s), pushed %d files (%s) in %s, at %s\n", ts, e.Reason,
						e.Pulled, human(e.BytesIn), e.Pushed, human(e.BytesSent), ms(e.DurationMS), short(e.Version))
				}
			}
			return engine.Watch(c.Context(), dir, o)
		},
	}
	c.Flags().DurationVar(&o.Debounce, "debounce", 200e6, "longest a burst of changes is coalesced")
	c.Flags().DurationVar(&o.Settle, "settle", 50e6, "quiet time after a change before a round")
	c.Flags().DurationVar(&o.Rescan, "rescan", 600e9, "period of a full round that catches missed events")
	c.Flags().BoolVar(&g.force, "force", false, "let pulls delete more than the deletion guard allows")
	return c
}
