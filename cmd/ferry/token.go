package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/internal/server"
	"github.com/spf13/cobra"
)

// serverFlags are how admin commands reach a server.
func serverFlags(c *cobra.Command, r *engine.ServerRef) {
	c.PersistentFlags().StringVar(&r.URL, "server", "", "quic://HOST:PORT of the server (env FERRY_REMOTE)")
	c.PersistentFlags().StringVar(&r.Data, "data", "", "the server's data directory on this machine (gives address, fingerprint and admin token)")
}

func (g *globals) serverRef(r engine.ServerRef) engine.ServerRef {
	if r.URL == "" && r.Data == "" {
		r.URL = getenv("FERRY_REMOTE")
	}
	r.Credentials = g.credentials()
	return r
}

func newToken(g *globals) *cobra.Command {
	var r engine.ServerRef
	c := &cobra.Command{
		Use:   "token create|list|revoke|reset-admin",
		Short: "Manage the server's bearer tokens (needs an admin token)",
	}
	serverFlags(c, &r)
	var ns, perm, label string
	create := &cobra.Command{
		Use:   "create --namespace NS --perm read|write|admin [--label TEXT]",
		Short: "Make a token for a namespace; it is printed once and never stored",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if ns == "" {
				return usageError{fmt.Errorf("token create: --namespace is required")}
			}
			if err := engine.CheckPerm(perm); err != nil {
				return usageError{err}
			}
			res, err := engine.TokenCreate(c.Context(), g.serverRef(r), ns, perm, label)
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "%s\n", res.Token)
				fmt.Fprintf(w, "# token %s: %s on namespace %s; keep it secret (it is shown only now)\n", res.Info.ID, res.Info.Perm, res.Info.Namespace)
			})
		},
	}
	create.Flags().StringVar(&ns, "namespace", "", "the namespace the token is for (* with --perm admin: every namespace)")
	create.Flags().StringVar(&perm, "perm", "write", "read, write or admin")
	create.Flags().StringVar(&label, "label", "", "a note (the device or person)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (ids, namespaces, permissions; never the tokens)",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			toks, err := engine.TokenList(c.Context(), g.serverRef(r))
			if err != nil {
				return err
			}
			return g.print(toks, func(w io.Writer) {
				for _, t := range toks {
					fmt.Fprintf(w, "%s %-6s %-20s %s %s\n", t.ID, t.Perm, t.Namespace, t.Created.Time().Local().Format(time.DateTime), t.Label)
				}
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token; its connections are closed at once",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			if err := engine.TokenRevoke(c.Context(), g.serverRef(r), a[0]); err != nil {
				return err
			}
			return g.print(map[string]string{"revoked": a[0]}, func(w io.Writer) { fmt.Fprintf(w, "revoked %s\n", a[0]) })
		},
	}
	var revokeOthers bool
	reset := &cobra.Command{
		Use:   "reset-admin --data DIR [--revoke-others]",
		Short: "Make a new server admin token, on the server's machine, with the server stopped",
		Long: `Make a new server admin token for the server whose data directory is DIR and
write it to DIR/admin.token (mode 0600): the way back in when the admin token
is lost. The server must be stopped (it holds the store's lock). With
--revoke-others, every other server admin token is revoked as well.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if r.Data == "" {
				return usageError{fmt.Errorf("token reset-admin: --data DIR is required")}
			}
			res, err := server.ResetAdmin(r.Data, revokeOthers)
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "new server admin token %s in %s\n", res.ID, res.TokenFile)
				for _, id := range res.Revoked {
					fmt.Fprintf(w, "revoked %s\n", id)
				}
			})
		},
	}
	reset.Flags().BoolVar(&revokeOthers, "revoke-others", false, "revoke every other server admin token")
	c.AddCommand(create, list, revoke, reset)
	return c
}
