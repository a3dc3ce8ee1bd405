package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newPush(g *globals) *cobra.Command {
	var (
		message string
		dryRun  bool
	)
	c := &cobra.Command{
		Use:   "push [DIR]",
		Short: "Record the folder as a new version and upload what the remote lacks",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			if dryRun {
				return g.dryRun(c, dir, "push")
			}
			o, done := g.options("push")
			res, err := engine.Push(c.Context(), dir, engine.PushOptions{Options: o, Message: message})
			done()
			if err != nil {
				return err
			}
			if err := g.print(res, func(w io.Writer) { printPush(w, res) }); err != nil {
				return err
			}
			return conflictsErr(res.Conflicts)
		},
	}
	c.Flags().StringVarP(&message, "message", "m", "", "a note to keep with the version")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "say what the push would send, and change nothing")
	c.Flags().BoolVar(&g.force, "force", false, "push (or merge) deletions past the deletion guard: half the folder and at least 5 files, or 1000")
	return c
}

func newOverride(g *globals) *cobra.Command {
	var message string
	c := &cobra.Command{
		Use:   "override [DIR] [-m MSG]",
		Short: "Push the folder's state as the head, replacing what the remote changed since the last sync",
		Long: `Make the remote match this folder (Syncthing's "override changes"): push the
folder's state as the new head even where another device changed a path since
this folder's base. Nothing is lost: the remote's head becomes the new
version's first parent, and the version records each overridden path (see
'ferry log'); 'ferry restore --version head~1 PATH' brings one back. A
send-only folder's push does this by itself. The deletion guard applies
(--force).`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			o, done := g.options("push")
			res, err := engine.Override(c.Context(), dir, engine.PushOptions{Options: o, Message: message})
			done()
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) { printPush(w, res) })
		},
	}
	c.Flags().StringVarP(&message, "message", "m", "", "a note to keep with the version (default \"override\")")
	c.Flags().BoolVar(&g.force, "force", false, "push deletions past the deletion guard")
	return c
}

// conflictsErr is the exit status 3 of a sync that made conflict copies.
func conflictsErr(c []engine.Conflict) error {
	if len(c) > 0 {
		return fmt.Errorf("%w: %d (run 'ferry conflicts')", errConflicts, len(c))
	}
	return nil
}

// printLost says which removals a merge undid, because the other side
// changed the path.
func printLost(w io.Writer, lost []engine.LostDeletion) {
	for _, l := range lost {
		if l.DeletedBy == "here" {
			fmt.Fprintf(w, "kept %s: removed here, but changed at the remote; the change wins (remove it again to delete it)\n", l.Path)
		} else {
			fmt.Fprintf(w, "kept %s: removed at the remote, but changed here; the change wins\n", l.Path)
		}
	}
}

func printConflicts(w io.Writer, cs []engine.Conflict) {
	for _, c := range cs {
		fmt.Fprintf(w, "conflict: %s changed here and on another device; the other device's version keeps the name, this one's is %s\n", c.Path, c.Copy)
	}
}

func printPush(w io.Writer, res *engine.PushResult) {
	if res.ReceiveOnly {
		fmt.Fprintln(w, "receive-only: local changes are not sent")
		return
	}
	printWarnings(w, res.Warnings)
	if res.Resent > 0 {
		fmt.Fprintf(w, "sent again %d files or objects whose copy in the store was damaged\n", res.Resent)
	}
	printConflicts(w, res.Conflicts)
	printLost(w, res.DeletionsLost)
	if res.Overridden != nil {
		for _, p := range res.Overridden {
			fmt.Fprintf(w, "overridden: %s (the remote's change is in version %s)\n", p, short(res.Parent))
		}
		fmt.Fprintf(w, "pushed version %s over the remote head %s: %d paths differ from it, %d remote changes overridden, in %s\n",
			short(res.Version), short(res.Parent), res.FilesChanged, len(res.Overridden), ms(res.DurationMS))
		return
	}
	if res.Merged {
		fmt.Fprintf(w, "merged with the remote head and pushed version %s: %d files changed here in %s\n", short(res.Version), res.FilesChanged, ms(res.DurationMS))
		return
	}
	if res.UpToDate {
		fmt.Fprintf(w, "nothing to push: the folder equals version %s\n", short(res.Version))
		return
	}
	fmt.Fprintf(w, "pushed version %s: %d files changed, %d chunks (%s) sent, %s scanned in %s\n",
		short(res.Version), res.FilesChanged, res.ChunksSent, human(res.BytesSent), human(res.BytesScanned), ms(res.DurationMS))
}

// warn says a warning on stderr at once, for commands whose output has no
// place for one (a listing, or JSON that is a list).
func (g *globals) warn(msg string) {
	if !g.quiet {
		fmt.Fprintln(g.stderr, "warning:", msg)
	}
}

func printWarnings(w io.Writer, warnings []string) {
	for _, m := range warnings {
		fmt.Fprintln(w, "warning:", m)
	}
}

func short(ref string) string {
	if len(ref) > 12 {
		return ref[:12]
	}
	if ref == "" {
		return "(none)"
	}
	return ref
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func ms(d int64) string {
	if d < 1000 {
		return fmt.Sprintf("%d ms", d)
	}
	return fmt.Sprintf("%.2f s", float64(d)/1000)
}
