package main

import (
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newDiff(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff [DIR] [V1 [V2]]",
		Short: "What changed between two versions, or from V1 (default head) to the folder",
		Long: `What changed between two versions. With one version, from it to the folder as it
is now; with none, from the head to the folder. A version is a ref prefix (8+ hex
digits), a tag, head, head~N, or @TIME (for example @2026-11-21T10:00).`,
		Args: args(cobra.MaximumNArgs(3)),
		RunE: func(c *cobra.Command, a []string) error {
			v1, v2 := "", ""
			dir, a := g.folderArg(a)
			switch len(a) {
			case 0:
			case 1:
				v1 = a[0]
			case 2:
				v1, v2 = a[0], a[1]
			default:
				return usageError{errTooManyArgs}
			}
			o, _ := g.options("")
			o.Warn = g.warn
			changes, err := engine.Diff(c.Context(), dir, v1, v2, o)
			if err != nil {
				return err
			}
			return g.print(changes, func(w io.Writer) { printChanges(w, changes) })
		},
	}
}
