package main

import (
	"fmt"
	"io"
	"os"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/gc"
	"github.com/spf13/cobra"
)

func newGC(g *globals) *cobra.Command {
	var (
		o      engine.GCOptions
		remote string
	)
	c := &cobra.Command{
		Use:   "gc [--remote STORE|quic://HOST:PORT] [--data DIR] [--grace 1h] [--dry-run]",
		Short: "Reclaim the space of data no kept version needs",
		Long: `Collect garbage: mark everything the kept versions (history and tags) and live
shares of every namespace need, and delete the rest that was not written within
the grace period, then return the disk space (dead packs deleted, mostly dead ones
rewritten, the index compacted). Given a store directory it runs offline (stop the
server first); given a server (--remote quic://..., or --data of a server on this
machine) the server collects while it keeps serving, with its admin token.
Pushes never lose data to a collection: what a push wrote or was told exists
after the collection began is never swept.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if remote == "" && o.Server.Data == "" {
				remote = os.Getenv("FERRY_REMOTE")
			}
			if remote == "" && o.Server.Data == "" {
				return usageError{fmt.Errorf("gc: give --remote STORE (a store directory or quic://HOST:PORT) or --data DIR of a server")}
			}
			eo, _ := g.options("")
			o.Options = eo
			o.Server.Credentials = g.credentials()
			st, err := engine.GC(c.Context(), remote, o)
			if st == nil {
				return err
			}
			if perr := g.print(st, func(w io.Writer) { printGC(w, st) }); perr != nil {
				return perr
			}
			return err
		},
	}
	c.Flags().StringVar(&remote, "remote", "", "the store directory, or quic://HOST:PORT of a server (env FERRY_REMOTE)")
	c.Flags().StringVar(&o.Server.Data, "data", "", "the data directory of a server running on this machine")
	c.Flags().DurationVar(&o.Grace, "grace", gc.DefaultGrace, "spare data written within this long (in-flight uploads)")
	c.Flags().BoolVarP(&o.DryRun, "dry-run", "n", false, "say what would be deleted, delete nothing")
	return c
}

func printGC(w io.Writer, st *gc.Stats) {
	verb := "deleted"
	if st.Policies > 0 {
		fmt.Fprintf(w, "applied %d namespaces' retention policies first: %d versions forgotten\n", st.Policies, st.Forgotten)
	}
	if st.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "marked %d namespaces, %d roots, %d versions: %d objects and %d chunks live (%s)\n",
		st.Namespaces, st.Mark.Roots, st.Mark.Versions, st.Mark.Objects, st.Mark.Chunks, ms(st.MarkMS))
	fmt.Fprintf(w, "%s %d blobs (%s stored) and %d namespace references\n", verb, st.Blobs, human(st.BlobBytes), st.Ownerships)
	if !st.DryRun {
		fmt.Fprintf(w, "packs: %d deleted, %d rewritten (%s moved)", st.PacksDeleted, st.PacksRewritten, human(st.BytesRewritten))
		if st.PacksPunched > 0 {
			fmt.Fprintf(w, ", %d with their dead ranges punched out (no room to rewrite them)", st.PacksPunched)
		}
		fmt.Fprintf(w, "; %s of disk returned (%s)\n", human(st.DiskFreed), ms(st.SweepMS))
	}
}
