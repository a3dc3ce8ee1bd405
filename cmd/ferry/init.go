package main

import (
	"fmt"
	"io"
	"os"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newInit(g *globals) *cobra.Command {
	var (
		o    engine.InitOptions
		mode string
	)
	c := &cobra.Command{
		Use:   "init DIR --remote URL [--root NAME | --new-root] | init DIR --invite STRING",
		Short: "Make DIR a synced folder of a store or server",
		Long: `Make DIR a synced folder. URL is a local store directory (made when missing)
or quic://HOST:PORT/NAMESPACE. DIR is made when missing. The root names the
folder's history in the store; folders on other devices with the same root sync
with each other. Without --root, init joins the remote's only root, makes one
named after DIR when the remote has none, and lists them when it has several.
--root NAME joins NAME; a root the remote lacks, beside others, needs --new-root
(so a typo does not start an empty history). --new-root makes a new root.

--invite STRING sets up a second device from what 'ferry invite' printed on
the first: the remote, root and fingerprint come from it, and its one-use token
is traded for this device's own.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			if o.Invite != "" {
				if err := engine.CheckInvite(o.Invite); err != nil {
					return usageError{fmt.Errorf("init --invite: %w", err)}
				}
			}
			if o.Remote == "" && o.Invite == "" {
				o.Remote = os.Getenv("FERRY_REMOTE")
			}
			if o.Invite != "" && o.Remote == os.Getenv("FERRY_REMOTE") {
				o.Remote = "" // the environment's default yields to the invite's
			}
			if o.Invite != "" && (o.Remote != "" || o.Root != "" || o.NewRoot) {
				return usageError{fmt.Errorf("init: --invite names the remote and the root; give no --remote, --root or --new-root")}
			}
			if o.Invite != "" {
				if err := engine.CheckInvite(o.Invite); err != nil {
					return usageError{fmt.Errorf("init --invite: %w", err)}
				}
			}
			if o.Remote == "" && o.Invite == "" {
				return usageError{fmt.Errorf("init: --remote is required (or FERRY_REMOTE)")}
			}
			o.Credentials = g.credentials()
			m, err := engine.ParseMode(mode)
			if err != nil {
				return usageError{err}
			}
			o.Mode = m
			res, err := engine.Init(c.Context(), a[0], o)
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				printWarnings(w, res.Warnings)
				fmt.Fprintf(w, "initialized %s\n  remote %s\n  root   %s\n  device %s\n", res.Dir, res.Remote, res.Root, res.Device)
				switch res.RootFrom {
				case "only":
					fmt.Fprintf(w, "joined the remote's only root, %q\n", res.Root)
				case "invite":
					fmt.Fprintf(w, "joined root %q by invite, with a device token of its own\n", res.Root)
				case "new":
					fmt.Fprintf(w, "made a new root, %q\n", res.Root)
				}
				if res.Head != "" {
					fmt.Fprintf(w, "the root has versions: run 'ferry pull' to fetch head %s\n", res.Head[:12])
				}
			})
		},
	}
	c.Flags().StringVar(&o.Remote, "remote", "", "store directory or quic://HOST:PORT/NAMESPACE (env FERRY_REMOTE)")
	c.Flags().StringVar(&o.Root, "root", "", "the root to join (default: the remote's only one)")
	c.Flags().BoolVar(&o.NewRoot, "new-root", false, "make a new root (--root NAME, default DIR's base name)")
	c.Flags().StringVar(&o.Invite, "invite", "", "what 'ferry invite' printed on another device")
	c.Flags().StringVar(&mode, "mode", "both", "both; receive-only: pull, and keep local changes here unsent; send-only: push, and override remote changes")
	return c
}
