package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newConfig(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "config [DIR] get [KEY] | set KEY VALUE",
		Short: "Show or change a folder's settings: remote, root, token, fingerprint, mode",
		Long: `Show a folder's settings (all of them, or KEY), or change one. KEY is remote (a
store directory or quic://HOST:PORT/NAMESPACE), root, token (kept in .ferry/token,
mode 0600; shown only by its id) or fingerprint (the server certificate's SHA-256
to pin) or mode (both or receive-only). A new remote or root makes the next sync start afresh there: it merges
with what that root holds, keeping both sides. A new server's certificate is
pinned on first use unless fingerprint is set.`,
		Args: args(cobra.RangeArgs(1, 4)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, a := g.folderArg(a)
			if len(a) == 0 {
				return usageError{fmt.Errorf("config: get or set?")}
			}
			switch {
			case a[0] == "get" && len(a) <= 2:
				key := ""
				if len(a) == 2 {
					key = a[1]
				}
				vals, err := engine.ConfigGet(dir, engine.ConfigKey(key))
				if err != nil {
					return err
				}
				return g.print(vals, func(w io.Writer) {
					for _, v := range vals {
						fmt.Fprintf(w, "%-11s %s\n", v.Key, v.Value)
					}
				})
			case a[0] == "set" && len(a) == 3:
				v, err := engine.ConfigSet(c.Context(), dir, engine.ConfigKey(a[1]), a[2])
				if err != nil {
					return err
				}
				return g.print(v, func(w io.Writer) {
					fmt.Fprintf(w, "%s set to %s\n", v.Key, v.Value)
					if v.Note != "" {
						fmt.Fprintln(w, v.Note)
					}
				})
			}
			return usageError{fmt.Errorf("config: want 'get [KEY]' or 'set KEY VALUE'")}
		},
	}
}

func newRevert(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revert [DIR]",
		Short: "Drop the folder's local changes: it becomes its last synced version again",
		Long: `Make the folder its base version again: what changed here since the last sync
(in a receive-only folder, the "local only" changes 'ferry status' lists) is
dropped, and nothing of it is kept. Run 'ferry status' or 'ferry diff' first.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			o, done := g.options("revert")
			res, err := engine.Revert(c.Context(), dir, o)
			done()
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "reverted to version %s: %d files written, %d removed in %s\n", short(res.Version), res.FilesWritten, res.Removed, ms(res.DurationMS))
			})
		},
	}
}
