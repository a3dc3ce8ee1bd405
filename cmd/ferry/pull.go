package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newPull(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pull [DIR]",
		Short: "Bring the folder to the remote head",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			o, done := g.options("pull")
			res, err := engine.Pull(c.Context(), dirArg(a), o)
			done()
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) { printPull(w, res) })
		},
	}
}

func printPull(w io.Writer, res *engine.PullResult) {
	printWarnings(w, res.Warnings)
	switch {
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
			return g.print(res, func(w io.Writer) {
				if res.Pull != nil {
					printPull(w, res.Pull)
				}
				printPush(w, res.Push)
			})
		},
	}
	c.Flags().StringVarP(&message, "message", "m", "", "a note to keep with the version")
	return c
}
