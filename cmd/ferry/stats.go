package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newStats(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats [DIR]",
		Short: "What the folder's namespace holds: usage, quota, roots, versions and the dedup ratio",
		Long: `Show the folder's namespace as its own token sees it (no admin token needed):
the bytes it stores (what counts against its quota) and the quota, its roots,
the versions their histories keep, this root's head, and the dedup ratio: the
bytes every kept version holds, over the bytes stored.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			o, _ := g.options("")
			res, err := engine.Stats(c.Context(), dir, o)
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				printWarnings(w, res.Warnings)
				fmt.Fprintf(w, "namespace %s, root %s\n", res.Namespace, res.Root)
				if res.Quota > 0 {
					fmt.Fprintf(w, "stored    %s of a %s quota (%.0f%%)\n", human(res.StoredBytes), human(res.Quota), 100*float64(res.StoredBytes)/float64(res.Quota))
				} else {
					fmt.Fprintf(w, "stored    %s (no quota)\n", human(res.StoredBytes))
				}
				fmt.Fprintf(w, "roots     %d, keeping %d versions; this root %d\n", res.Roots, res.Versions, res.RootVersions)
				fmt.Fprintf(w, "head      %d files, %s\n", res.HeadFiles, human(res.HeadBytes))
				if res.DedupRatio > 0 {
					fmt.Fprintf(w, "versions  hold %s of files in all: dedup ratio %.1fx\n", human(res.LogicalBytes), res.DedupRatio)
				}
			})
		},
	}
}
