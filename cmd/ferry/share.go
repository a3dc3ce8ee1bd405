package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newShare(g *globals) *cobra.Command {
	var (
		o      engine.ShareOptions
		list   bool
		extend string
		revoke string
	)
	c := &cobra.Command{
		Use:   "share [DIR] [PATH] --ttl 24h [--version V] | --list | --extend ID --ttl D | --revoke ID",
		Short: "Print a read-only link to a file or directory, valid for --ttl; list, extend or revoke links",
		Long: `Make a link to PATH (a file or directory of the folder, as it is in --version,
default head) that 'ferry get LINK' downloads without a synced folder, until it
expires (--ttl) or is revoked. The link holds a read-only token good for that
path only; it is printed once. The server keeps what a live share names from
garbage collection; once it expires, the link stops working and the data is
collectable like any other. Needs a folder synced with a server.`,
		Args: args(cobra.MaximumNArgs(2)),
		RunE: func(c *cobra.Command, a []string) error {
			loc, err := g.located(a)
			if err != nil {
				return err
			}
			dir, p := loc.Dir, ""
			switch {
			case len(loc.Paths) > 1:
				return usageError{errTooManyArgs}
			case len(loc.Paths) == 1 && (list || extend != "" || revoke != ""):
				return usageError{fmt.Errorf("share --list, --extend and --revoke take no PATH")}
			case len(loc.Paths) == 1:
				p = loc.Paths[0]
			}
			eo, _ := g.options("")
			o.Options = eo
			switch {
			case list:
				shares, err := engine.Shares(c.Context(), dir, eo)
				if err != nil {
					return err
				}
				return g.print(shares, func(w io.Writer) {
					for _, s := range shares {
						printShare(w, s)
					}
				})
			case extend != "" || revoke != "":
				id, ttl := extend, o.TTL
				if revoke != "" {
					id, ttl = revoke, 0
				} else if ttl <= 0 {
					return usageError{fmt.Errorf("share --extend needs --ttl")}
				}
				s, err := engine.UpdateShare(c.Context(), dir, id, ttl, eo)
				if err != nil {
					return err
				}
				return g.print(s, func(w io.Writer) {
					if revoke != "" {
						fmt.Fprintf(w, "revoked share %s (%s): its link no longer works\n", s.ID, s.Name)
						return
					}
					printShare(w, *s)
				})
			}
			if o.TTL <= 0 {
				return usageError{fmt.Errorf("share: give --ttl (for example 24h)")}
			}
			res, err := engine.Share(c.Context(), dir, p, o)
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				fmt.Fprintln(w, res.Link)
				fmt.Fprintf(w, "# share %s: %s %q (%s), expires %s; fetch it with: ferry get 'LINK'\n", res.Share.ID, res.Share.Kind, res.Share.Name,
					human(res.Share.Size), res.Share.Expires.Time().Local().Format(time.DateTime))
			})
		},
	}
	c.Flags().DurationVar(&o.TTL, "ttl", 0, "how long the link works (24h, 7*24h=168h)")
	c.Flags().StringVar(&o.Version, "version", "head", "the version to share")
	c.Flags().BoolVar(&list, "list", false, "list the namespace's shares")
	c.Flags().StringVar(&extend, "extend", "", "give share ID a new expiry, --ttl from now")
	c.Flags().StringVar(&revoke, "revoke", "", "revoke share ID now")
	return c
}

func printShare(w io.Writer, s engine.ShareInfo) {
	state := "expires " + s.Expires.Time().Local().Format(time.DateTime)
	if s.Expired(time.Now()) {
		state = "expired " + s.Expires.Time().Local().Format(time.DateTime)
	}
	fmt.Fprintf(w, "%s  %-4s %-30s %9s  %s/%s  %s\n", s.ID, s.Kind, s.Name, human(s.Size), s.Root, s.Path, state)
}

func newGet(g *globals) *cobra.Command {
	var o engine.GetOptions
	c := &cobra.Command{
		Use:   "get LINK [--to PATH] [--dry-run]",
		Short: "Download what a share link names (a file, or a directory) without a synced folder",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			var done func()
			o.Options, done = g.options("get")
			res, err := engine.Get(c.Context(), a[0], o)
			done()
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				if res.DryRun {
					printRestorePlan(w, false, res.Plan, res.Target)
					return
				}
				fmt.Fprintf(w, "got %s %q into %s: %d files (%s) in %s\n", res.Share.Kind, res.Share.Name, res.Target, res.FilesWritten, human(res.BytesWritten), ms(res.DurationMS))
			})
		},
	}
	c.Flags().StringVar(&o.To, "to", "", "where to write it (default: the shared name, here)")
	c.Flags().BoolVar(&o.DryRun, "dry-run", false, "list what get would write, and write nothing")
	c.Flags().BoolVar(&g.force, "force", false, "replace what is already at the target")
	return c
}
