package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newConflicts(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "conflicts [DIR]",
		Short: "List unresolved conflicts: the conflict copies in the folder",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			o, _ := g.options("")
			o.Warn = g.warn
			list, err := engine.Conflicts(c.Context(), dir, o)
			if err != nil {
				return err
			}
			return g.print(list, func(w io.Writer) {
				for _, cc := range list {
					fmt.Fprintf(w, "%s\n  local copy %s (device %s, %s)\n", cc.Path, cc.Copy, cc.Device, cc.Time.Local().Format(time.DateTime))
				}
			})
		},
	}
}

func newResolve(g *globals) *cobra.Command {
	var (
		keep   string
		dryRun bool
	)
	c := &cobra.Command{
		Use:   "resolve [DIR] PATH --keep local|remote|both",
		Short: "Settle a conflict: keep the local copy, the remote version, or both",
		Long: `Settle the conflict on PATH (or name the copy itself). local: the conflict copy
replaces PATH; remote: the copy is removed; both: the copy stays, renamed to
NAME.DEVICE.EXT. The next push or sync records the resolution.`,
		Args: args(cobra.RangeArgs(1, 2)),
		RunE: func(c *cobra.Command, a []string) error {
			loc, err := g.located(a)
			if err != nil {
				return err
			}
			if len(loc.Paths) != 1 {
				return usageError{fmt.Errorf("resolve takes one PATH")}
			}
			o, _ := g.options("")
			res, err := engine.Resolve(c.Context(), loc.Dir, loc.Paths[0], engine.ResolveOptions{Options: o, Keep: engine.Keep(keep), DryRun: dryRun})
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				if res.DryRun {
					switch engine.Keep(keep) {
					case engine.KeepLocal:
						fmt.Fprintf(w, "would replace %s with the conflict copy %s\n", res.Path, res.Copy)
					case engine.KeepRemote:
						fmt.Fprintf(w, "would remove the conflict copy %s, keeping %s as it is\n", res.Copy, res.Path)
					default:
						fmt.Fprintf(w, "would rename the conflict copy %s to %s, keeping both\n", res.Copy, res.Now)
					}
					fmt.Fprintln(w, "dry run: nothing was changed")
					return
				}
				fmt.Fprintf(w, "resolved %s: kept %s", res.Path, res.Kept)
				if res.Now != "" {
					fmt.Fprintf(w, " (the local copy is now %s)", res.Now)
				}
				fmt.Fprintln(w)
			})
		},
	}
	c.Flags().StringVar(&keep, "keep", "", "local, remote or both (required)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "say what resolve would do, and change nothing")
	_ = c.MarkFlagRequired("keep")
	return c
}
