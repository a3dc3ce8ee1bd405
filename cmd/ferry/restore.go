package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newRestore(g *globals) *cobra.Command {
	var (
		o         engine.RestoreOptions
		overwrite string
	)
	c := &cobra.Command{
		Use:   "restore [DIR] --version V [PATH...] [--to TARGET]",
		Short: "Write a version, or paths of it, into TARGET or back into the folder",
		Long: `Write version V (or the given paths of it) into TARGET. Without --to, restore in
place: the folder's current state is pushed first, so the restore can be undone,
then the paths (or the whole folder) become what they were in V.

A version the store can no longer give whole (data forgotten and collected, or
damaged) is refused before anything is written, naming the paths that lack
data; --partial restores the rest (in place, those paths stay as they are).
No file is ever left partly written under its own name.`,
		Args: args(cobra.ArbitraryArgs),
		RunE: func(c *cobra.Command, a []string) (err error) {
			if o.Overwrite, err = engine.ParseOverwrite(overwrite); err != nil {
				return usageError{err}
			}
			if o.To == "" && (o.Overwrite != "" || o.Delete) {
				return usageError{fmt.Errorf("--overwrite and --delete are for --to; in place, the folder is saved first and becomes the version")}
			}
			loc, err := g.located(a)
			if err != nil {
				return err
			}
			o.Paths = loc.Paths
			if slices.Contains(o.Paths, "") {
				o.Paths = nil // the folder's root: all of it
			}
			eo, done := g.options("restore")
			o.Options = eo
			res, err := engine.Restore(c.Context(), loc.Dir, o)
			done()
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				printWarnings(w, res.Warnings)
				if res.DryRun {
					printRestorePlan(w, res.WouldSave, res.Plan, res.Target)
					return
				}
				for _, m := range res.Missing {
					fmt.Fprintf(w, "  left out (no data): %s\n", m)
				}
				if res.Pushed != "" {
					fmt.Fprintf(w, "saved the folder first as version %s\n", short(res.Pushed))
				}
				kept := ""
				if res.Kept > 0 {
					kept = fmt.Sprintf(", %d kept as they were", res.Kept)
				}
				fmt.Fprintf(w, "restored version %s into %s: %d files (%s) written%s, %d removed in %s\n",
					short(res.Version), res.Target, res.FilesWritten, human(res.BytesWritten), kept, res.Removed, ms(res.DurationMS))
			})
		},
	}
	c.Flags().StringVar(&o.Version, "version", "", "the version: ref prefix, tag, head, head~N or @TIME (required)")
	c.Flags().StringVar(&o.To, "to", "", "target directory (default: in place)")
	c.Flags().BoolVar(&o.Partial, "partial", false, "restore what the store still has when some data is gone, naming what is left out")
	c.Flags().StringVar(&overwrite, "overwrite", "", "with --to a directory that is not empty: always, if-changed (size, mtime or mode differ) or never")
	c.Flags().BoolVar(&o.DryRun, "dry-run", false, "list what the restore would write and remove, and change nothing")
	c.Flags().BoolVar(&o.Delete, "delete", false, "with --to: remove what the version does not have, so the target mirrors it")
	_ = c.MarkFlagRequired("version")
	return c
}

// printRestorePlan says what a restore (or get) --dry-run would do.
func printRestorePlan(w io.Writer, wouldSave bool, plan []engine.Planned, target string) {
	if wouldSave {
		fmt.Fprintln(w, "would save the folder first as a new version (it has changes of its own)")
	}
	var files, bytes, removed int64
	for _, p := range plan {
		switch p.Op {
		case "write":
			files++
			bytes += p.Size
			fmt.Fprintf(w, "would write  %s (%s)\n", p.Path, human(p.Size))
		case "meta":
			fmt.Fprintf(w, "would touch  %s (mode or mtime)\n", p.Path)
		case "link":
			fmt.Fprintf(w, "would link   %s\n", p.Path)
		case "mkdir":
			fmt.Fprintf(w, "would make   %s/\n", p.Path)
		case "remove":
			removed++
			suffix := ""
			if p.Kind == "dir" {
				suffix = "/ (and all it holds)"
			}
			fmt.Fprintf(w, "would remove %s%s\n", p.Path, suffix)
		}
	}
	fmt.Fprintf(w, "dry run: %d files (%s) would be written and %d paths removed in %s; nothing was changed\n", files, human(bytes), removed, target)
}
