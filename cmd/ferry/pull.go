package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newPull(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "pull [DIR]",
		Short: "Bring the folder to the remote head, merging local changes",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			o, done := g.options("pull")
			res, err := engine.Pull(c.Context(), dirArg(a), o)
			done()
			if err != nil {
				return err
			}
			if err := g.print(res, func(w io.Writer) { printPull(w, res) }); err != nil {
				return err
			}
			return conflictsErr(res.Conflicts)
		},
	}
	c.Flags().BoolVar(&g.force, "force", false, "delete even more than the deletion guard allows (half the folder, or 1000 files)")
	return c
}

func printPull(w io.Writer, res *engine.PullResult) {
	printWarnings(w, res.Warnings)
	printConflicts(w, res.Conflicts)
	switch {
	case res.Merged:
		fmt.Fprintf(w, "merged local changes with the remote head and pushed version %s: %d files changed here\n", short(res.Version), res.FilesChanged)
	case res.Version == "":
		fmt.Fprintln(w, "nothing to pull: the root has no versions yet")
	case res.UpToDate:
		fmt.Fprintf(w, "up to date with version %s\n", short(res.Version))
	default:
		fmt.Fprintf(w, "pulled version %s: %d files changed (%d written, %d removed), %d chunks (%s) fetched in %s\n",
			short(res.Version), res.FilesChanged, res.FilesWritten, res.Removed, res.ChunksFetched, human(res.BytesFetched), ms(res.DurationMS))
	}
}

func newSync(g *globals) *cobra.Command {
	var message string
	c := &cobra.Command{
		Use:   "sync [DIR]",
		Short: "Pull, then push, once",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			o, done := g.options("sync")
			res, err := engine.Sync(c.Context(), dirArg(a), engine.PushOptions{Options: o, Message: message})
			done()
			if err != nil {
				return err
			}
			if err := g.print(res, func(w io.Writer) {
				if res.Pull != nil {
					printPull(w, res.Pull)
				}
				printPush(w, res.Push)
			}); err != nil {
				return err
			}
			var all []engine.Conflict
			if res.Pull != nil {
				all = res.Pull.Conflicts
			}
			return conflictsErr(append(all, res.Push.Conflicts...))
		},
	}
	c.Flags().StringVarP(&message, "message", "m", "", "a note to keep with the version")
	c.Flags().BoolVar(&g.force, "force", false, "delete even more than the deletion guard allows")
	return c
}
