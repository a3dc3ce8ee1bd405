package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newStatus(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [DIR]",
		Short: "Show local changes and the remote head; transfers nothing",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			o, done := g.barOptions("scan")
			res, err := engine.Status(c.Context(), dir, o)
			done()
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				printWarnings(w, res.Warnings)
				fmt.Fprintf(w, "folder %s (root %s of %s, device %s)\n", res.Dir, res.Root, res.Remote, res.Device)
				head := short(res.Head)
				if res.Offline {
					head = "unknown: the server is unreachable"
				}
				fmt.Fprintf(w, "base   %s\nhead   %s\n", short(res.Base), head)
				switch {
				case res.InSync:
					fmt.Fprintln(w, "in sync with the head")
				case res.RemoteAhead && res.Mode == engine.ModeSendOnly:
					fmt.Fprintln(w, "the remote has newer versions: this send-only folder's next push overrides them (history keeps them)")
				case res.RemoteAhead && len(res.LocalChanges) == 0:
					fmt.Fprintln(w, "the remote has newer versions: run 'ferry pull'")
				case res.RemoteAhead:
					fmt.Fprintln(w, "the remote has newer versions, and the folder has changes of its own")
				}
				if len(res.LocalChanges) > 0 && res.Mode == engine.ModeReceiveOnly {
					fmt.Fprintf(w, "%d local only changes (receive-only: not sent; 'ferry revert' drops them):\n", len(res.LocalChanges))
					printChanges(w, res.LocalChanges)
				} else if len(res.LocalChanges) > 0 {
					fmt.Fprintf(w, "%d local changes since the base (run 'ferry push'):\n", len(res.LocalChanges))
					printChanges(w, res.LocalChanges)
				}
				switch {
				case res.Healable > 0:
					fmt.Fprintf(w, "the store found %d of its blobs damaged; this folder holds %d files or objects with them: 'ferry push' sends them again\n", res.StoreDamaged, res.Healable)
				case res.StoreDamaged > 0:
					fmt.Fprintf(w, "the store found %d of its blobs damaged, and this folder holds none of them (see 'ferry repair')\n", res.StoreDamaged)
				}
				if len(res.Conflicts) > 0 {
					fmt.Fprintf(w, "%d unresolved conflicts (settle with 'ferry resolve PATH --keep local|remote|both'):\n", len(res.Conflicts))
					for _, c := range res.Conflicts {
						fmt.Fprintf(w, "  ! %s (other copy: %s, from %s)\n", c.Path, c.Copy, c.Device)
					}
				}
			})
		},
	}
}

func printChanges(w io.Writer, changes []engine.Change) {
	for _, c := range changes {
		mark := map[string]string{"added": "+", "removed": "-", "modified": "M"}[c.Op]
		suffix := ""
		if c.Kind == "dir" {
			suffix = "/"
		}
		fmt.Fprintf(w, "  %s %s%s\n", mark, c.Path, suffix)
	}
}
