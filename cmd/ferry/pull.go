package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newPull(g *globals) *cobra.Command {
	var dryRun bool
	c := &cobra.Command{
		Use:   "pull [DIR]",
		Short: "Bring the folder to the remote head, merging local changes",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			if dryRun {
				return g.dryRun(c, dir, "pull")
			}
			o, done := g.options("pull")
			res, err := engine.Pull(c.Context(), dir, o)
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
	c.Flags().BoolVar(&g.force, "force", false, "delete even more than the deletion guard allows (half the folder and at least 5 files, or 1000)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "say what the pull would change and fetch, and change nothing")
	return c
}

func printPull(w io.Writer, res *engine.PullResult) {
	printWarnings(w, res.Warnings)
	printConflicts(w, res.Conflicts)
	printLost(w, res.DeletionsLost)
	switch {
	case res.SendOnly:
		fmt.Fprintln(w, "send-only: remote changes are not taken")
	case res.Merged:
		fmt.Fprintf(w, "merged local changes with the remote head and pushed version %s: %d files changed here\n", short(res.Version), res.FilesChanged)
	case res.NothingYet:
		fmt.Fprintln(w, engine.ErrNothingYet)
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
	var (
		message string
		dryRun  bool
	)
	c := &cobra.Command{
		Use:   "sync [DIR]",
		Short: "Pull, then push, once",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			if dryRun {
				return g.dryRun(c, dir, "sync")
			}
			o, done := g.options("sync")
			res, err := engine.Sync(c.Context(), dir, engine.PushOptions{Options: o, Message: message})
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
	c.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "say what would change on each side and the bytes that would cross the wire; change nothing")
	return c
}

// dryRun prints what a push, pull or sync would do (--dry-run), having
// changed nothing.
func (g *globals) dryRun(c *cobra.Command, dir, verb string) error {
	o, done := g.barOptions("scan")
	p, err := engine.PlanSync(c.Context(), dir, o)
	done()
	if err != nil {
		return err
	}
	return g.print(p, func(w io.Writer) { printPlan(w, p, verb) })
}

func printPlan(w io.Writer, p *engine.SyncPlan, verb string) {
	printWarnings(w, p.Warnings)
	switch {
	case verb == "push" && len(p.PushChanges) == 0:
		fmt.Fprintln(w, "nothing to push: the folder equals its last synced version")
		return
	case verb == "pull" && len(p.PullChanges) == 0:
		fmt.Fprintln(w, "nothing to pull: the folder has the head")
		return
	case len(p.PullChanges) == 0 && len(p.PushChanges) == 0:
		fmt.Fprintln(w, "nothing to sync: the folder and the head agree")
		return
	}
	if verb == "push" && len(p.PullChanges) > 0 {
		fmt.Fprintf(w, "the head moved (%d paths changed there): the push would merge with it first\n", len(p.PullChanges))
	}
	if len(p.PullChanges) > 0 && verb != "push" {
		fmt.Fprintf(w, "pull would change %d paths from head %s, fetching %d chunks (%s):\n", len(p.PullChanges), short(p.Head), p.ChunksToFetch, human(p.BytesToFetch))
		printChanges(w, p.PullChanges)
	}
	if verb == "pull" && len(p.PushChanges) > 0 && p.Merge {
		fmt.Fprintf(w, "the folder has %d changes of its own: the pull would merge them with the head and push the merge\n", len(p.PushChanges))
	}
	if len(p.PushChanges) > 0 && verb != "pull" {
		fmt.Fprintf(w, "push would send %d local changes: %d blobs (%s) the remote lacks:\n", len(p.PushChanges), p.BlobsToSend, human(p.BytesToSend))
		printChanges(w, p.PushChanges)
	}
	if p.Merge {
		fmt.Fprintln(w, "both sides changed: the sync would merge them (a file changed on both sides keeps both copies)")
	}
}
