package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/state"
	"github.com/spf13/cobra"
)

func newRepair(g *globals) *cobra.Command {
	var (
		remote string
		o      engine.RepairOptions
	)
	c := &cobra.Command{
		Use:   "repair [DIR] [--remote STORE|quic://HOST:PORT] [--data DIR]",
		Short: "Re-verify a store, record damage, and say what heals and what is lost",
		Long: `Repair reads and re-hashes every blob of a store and every kept version,
records each damaged blob so that the store calls it missing (the next push of
any device that still holds its bytes sends them again, even when nothing
changed there), and lists every damaged path once, with its versions, as:

  healed    it was damaged and verifies now (a device sent it again)
  healable  it is in its root's head: every device in sync holds it, and
            its next push heals it
  lost      only older versions hold it: no device is expected to have it

A store directory is repaired here (stop its server first); a server repairs
itself while it serves, given its admin token (--data DIR on its machine, or
--remote quic://... with FERRY_TOKEN). Exit status 1 while anything is damaged.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			if remote == "" && o.Server.Data == "" {
				remote = os.Getenv("FERRY_REMOTE")
			}
			eo, _ := g.options("")
			o.Options = eo
			if remote == "" && o.Server.Data == "" {
				f, err := state.Find(dir)
				if err != nil {
					return usageError{fmt.Errorf("repair: give --remote STORE, or run it in a synced folder: %w", err)}
				}
				remote = f.Config.Remote
				if o.Credentials.Fingerprint == "" {
					o.Credentials.Fingerprint = f.Config.Fingerprint
				}
				f.Close()
			}
			res, err := engine.Repair(c.Context(), remote, o)
			if err != nil && !errors.Is(err, engine.ErrDamaged) && !errors.Is(err, engine.ErrLost) {
				return err
			}
			perr := g.print(res, func(w io.Writer) { printRepair(w, res) })
			if perr != nil {
				return perr
			}
			return err
		},
	}
	c.Flags().StringVar(&remote, "remote", "", "the store directory or server to repair (default: the folder's remote)")
	c.Flags().StringVar(&o.Server.Data, "data", "", "the data directory of a server running on this machine")
	return c
}

func printRepair(w io.Writer, res *engine.RepairResult) {
	fmt.Fprintf(w, "repaired %s: %d blobs (%s) read and re-hashed, %d versions, in %s\n",
		res.Store, res.BlobsRead, human(res.BytesRead), res.Versions, ms(res.DurationMS))
	for _, p := range res.Paths {
		name := p.Path
		if name == "" {
			name = "(top directory or version)"
		}
		fmt.Fprintf(w, "%-8s %s\n", p.Status, name)
		fmt.Fprintf(w, "         in %s\n", strings.Join(p.Versions, ", "))
		if p.Error != "" && p.Status != engine.StatusHealed {
			fmt.Fprintf(w, "         %s\n", p.Error)
		}
	}
	if len(res.Unreferenced) > 0 {
		fmt.Fprintf(w, "%d damaged blobs no kept version needs (gc removes them)\n", len(res.Unreferenced))
	}
	switch {
	case res.OK && res.Healed > 0:
		fmt.Fprintf(w, "no damage left: %d blobs healed\n", res.Healed)
	case res.OK:
		fmt.Fprintln(w, "no damage found")
	default:
		fmt.Fprintf(w, "%d damaged blobs: %d paths healable (push from a device that holds them), %d lost\n", res.Damaged, res.Healable, res.Lost)
	}
}
