package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/state"
	"github.com/spf13/cobra"
)

func newCheck(g *globals) *cobra.Command {
	var (
		remote   string
		readData bool
		subset   string
	)
	c := &cobra.Command{
		Use:   "check [DIR] [--remote STORE|quic://HOST:PORT[/NS]] [--read-data | --read-data-subset N/M]",
		Short: "Verify a store: every version resolves; with --read-data every chunk re-hashes",
		Long: `Check a store: every blob record, and every kept version (history and tags)
resolves completely; with --read-data every blob is read and re-hashed (or slice
N of M of them). Damage is reported with the versions and paths it affects.
A store directory is checked here (stop its server first); a server checks
itself while it serves: the whole store with its admin token, one namespace
with that namespace's token (the folder's, when run in a folder).`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			o := engine.CheckOptions{ReadData: readData}
			if subset != "" {
				if _, err := fmt.Sscanf(subset, "%d/%d", &o.SubsetN, &o.SubsetM); err != nil || o.SubsetN < 1 || o.SubsetN > o.SubsetM {
					return usageError{fmt.Errorf("--read-data-subset %q: want N/M with 1 <= N <= M", subset)}
				}
				o.ReadData = true
			}
			if remote == "" {
				remote = os.Getenv("FERRY_REMOTE")
			}
			eo, done := g.options("check")
			defer done()
			if remote == "" {
				f, err := state.Find(dir)
				if err != nil {
					return usageError{fmt.Errorf("check: give --remote STORE, or run it in a synced folder: %w", err)}
				}
				remote = f.Config.Remote
				// A server checks the folder's namespace with the folder's token.
				if eo.Credentials.Token == "" {
					eo.Credentials.Token = f.Token()
				}
				if eo.Credentials.Fingerprint == "" {
					eo.Credentials.Fingerprint = f.Config.Fingerprint
				}
				f.Close()
			}
			o.Options = eo
			res, err := engine.Check(c.Context(), remote, o)
			if err != nil && !errors.Is(err, engine.ErrDamaged) {
				return err
			}
			perr := g.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "checked %s: %d blobs, %d versions, %d objects", res.Store, res.Blobs, res.Versions, res.Objects)
				if res.BlobsRead > 0 {
					fmt.Fprintf(w, ", %d blobs (%s) read and re-hashed", res.BlobsRead, human(res.BytesRead))
				}
				fmt.Fprintf(w, " in %s\n", ms(res.DurationMS))
				for _, d := range res.Damaged {
					fmt.Fprintf(w, "damaged %s: %s\n", short(d.Ref), d.Error)
					for _, v := range d.Versions {
						fmt.Fprintf(w, "  in version %s\n", v)
					}
					for _, p := range d.Paths {
						fmt.Fprintf(w, "  at %s\n", p)
					}
				}
				if res.OK {
					fmt.Fprintln(w, "no damage found")
				}
			})
			if perr != nil {
				return perr
			}
			return err
		},
	}
	c.Flags().StringVar(&remote, "remote", "", "the store directory or server to check (default: the folder's remote)")
	c.Flags().BoolVar(&readData, "read-data", false, "read and re-hash every blob")
	c.Flags().StringVar(&subset, "read-data-subset", "", "read slice N of M of the blobs (N/M)")
	return c
}
