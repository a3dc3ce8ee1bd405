package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newRestore(g *globals) *cobra.Command {
	var o engine.RestoreOptions
	c := &cobra.Command{
		Use:   "restore [DIR] --version V [PATH...] [--to TARGET]",
		Short: "Write a version, or paths of it, into TARGET or back into the folder",
		Long: `Write version V (or the given paths of it) into TARGET. Without --to, restore in
place: the folder's current state is pushed first, so the restore can be undone,
then the paths (or the whole folder) become what they were in V.`,
		Args: args(cobra.ArbitraryArgs),
		RunE: func(c *cobra.Command, a []string) error {
			dir := "."
			if len(a) > 0 && isDir(a[0]) {
				dir, a = a[0], a[1:]
			}
			o.Paths = a
			eo, done := g.options("restore")
			o.Options = eo
			res, err := engine.Restore(c.Context(), dir, o)
			done()
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				printWarnings(w, res.Warnings)
				if res.Pushed != "" {
					fmt.Fprintf(w, "saved the folder first as version %s\n", short(res.Pushed))
				}
				fmt.Fprintf(w, "restored version %s into %s: %d files (%s) written, %d removed in %s\n",
					short(res.Version), res.Target, res.FilesWritten, human(res.BytesWritten), res.Removed, ms(res.DurationMS))
			})
		},
	}
	c.Flags().StringVar(&o.Version, "version", "", "the version: ref prefix, tag, head, head~N or @TIME (required)")
	c.Flags().StringVar(&o.To, "to", "", "target directory (default: in place)")
	_ = c.MarkFlagRequired("version")
	return c
}
