package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newInvite(g *globals) *cobra.Command {
	var (
		o    engine.InviteOptions
		perm string
	)
	c := &cobra.Command{
		Use:   "invite [DIR] [--perm write|read] [--ttl 24h] [--address HOST:PORT]",
		Short: "Print one string that sets up another device: ferry init DIR --invite STRING",
		Long: `Print an invite to this folder's root: one string holding the server's
address, the namespace, the root, the server's certificate fingerprint and a
one-use token. On the other device, 'ferry init DIR --invite STRING' trades it
for a device token of its own (--perm: write, or read for a device that only
receives) and joins the root, with nothing else to type. The invite works once,
until --ttl passes (at most 30 days); 'ferry token list' shows open invites and
'ferry token revoke ID' cancels one. Inviting needs a write token. --address
names the server as the other device reaches it, when that differs from this
folder's remote.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, err := g.folder(a)
			if err != nil {
				return err
			}
			if engine.CheckPerm(perm) != nil || perm == "admin" {
				return usageError{fmt.Errorf("invite: --perm %q: want write or read", perm)}
			}
			if o.TTL <= 0 || o.TTL > engine.MaxInviteTTL {
				return usageError{fmt.Errorf("invite: --ttl %s: want a positive duration of at most %s", o.TTL, engine.MaxInviteTTL)}
			}
			o.Perm = perm
			o.Options, _ = g.options("")
			res, err := engine.Invite(c.Context(), dir, o)
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "%s\n", res.Invite)
				fmt.Fprintf(w, "# invite %s: %s on root %s of namespace %s, once, until %s\n", res.Info.ID, res.Info.Perm, res.Info.Root, res.Info.Namespace, res.Info.Expires.Time().Local().Format(time.DateTime))
				fmt.Fprintf(w, "# on the other device: ferry init DIR --invite '%s'\n", res.Invite)
			})
		},
	}
	c.Flags().StringVar(&perm, "perm", "write", "the new device's permission: write, or read")
	c.Flags().DurationVar(&o.TTL, "ttl", 24*time.Hour, "how long the invite waits to be used (at most 720h)")
	c.Flags().StringVar(&o.Address, "address", "", "the server's HOST:PORT as the other device reaches it (default: this folder's)")
	c.Flags().StringVar(&o.Label, "label", "", "a note kept with the invite (the device or person)")
	return c
}
