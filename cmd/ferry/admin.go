package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newAdmin(g *globals) *cobra.Command {
	var r engine.ServerRef
	c := &cobra.Command{
		Use:   "admin clients|roots|history",
		Short: "Server admin views (needs an admin token)",
	}
	serverFlags(c, &r)
	clients := &cobra.Command{
		Use:   "clients",
		Short: "Connected clients: address, namespace, device, bytes in and out",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			list, err := engine.AdminClients(c.Context(), g.serverRef(r))
			if err != nil {
				return err
			}
			return g.print(list, func(w io.Writer) {
				for _, ci := range list {
					fmt.Fprintf(w, "%-22s %-16s %-8s %-6s since %s  in %s  out %s\n", ci.Addr, ci.Namespace, ci.Device, ci.Perm,
						time.Unix(0, ci.Since).Local().Format(time.DateTime), human(ci.BytesIn), human(ci.BytesOut))
				}
			})
		},
	}
	roots := &cobra.Command{
		Use:   "roots",
		Short: "Every namespace's roots: head, versions, last update",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			list, err := engine.AdminRoots(c.Context(), g.serverRef(r))
			if err != nil {
				return err
			}
			return g.print(list, func(w io.Writer) {
				for _, ri := range list {
					fmt.Fprintf(w, "%s/%s head %s, %d versions, updated %s\n", ri.Namespace, ri.Root, short(ri.Head), ri.Versions, ri.Updated.Local().Format(time.DateTime))
				}
			})
		},
	}
	history := &cobra.Command{
		Use:   "history NAMESPACE/ROOT",
		Short: "The versions a root's head has taken",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			list, err := engine.AdminHistory(c.Context(), g.serverRef(r), a[0])
			if err != nil {
				return err
			}
			return g.print(list, func(w io.Writer) {
				for _, h := range list {
					fmt.Fprintf(w, "%6d %s %s\n", h.Seq, h.Time.Local().Format(time.DateTime), short(h.Version))
				}
			})
		},
	}
	c.AddCommand(clients, roots, history)
	return c
}
