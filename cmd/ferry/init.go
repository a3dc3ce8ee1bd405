package main

import (
	"fmt"
	"io"
	"os"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newInit(g *globals) *cobra.Command {
	var o engine.InitOptions
	c := &cobra.Command{
		Use:   "init DIR --remote URL [--root NAME]",
		Short: "Make DIR a synced folder of a store or server",
		Long: `Make DIR a synced folder. URL is a local store directory (made when missing)
or quic://HOST:PORT/NAMESPACE. DIR is made when missing. The root name (default:
DIR's base name) names the folder's history in the store; folders on other
devices with the same root sync with each other.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			if o.Remote == "" {
				o.Remote = os.Getenv("FERRY_REMOTE")
			}
			if o.Remote == "" {
				return usageError{fmt.Errorf("init: --remote is required (or FERRY_REMOTE)")}
			}
			o.Credentials = g.credentials()
			if g.tokenFile != "" && o.Token == "" {
				return usageError{fmt.Errorf("init: --token-file %s could not be read", g.tokenFile)}
			}
			res, err := engine.Init(c.Context(), a[0], o)
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				printWarnings(w, res.Warnings)
				fmt.Fprintf(w, "initialized %s\n  remote %s\n  root   %s\n  device %s\n", res.Dir, res.Remote, res.Root, res.Device)
				if res.Head != "" {
					fmt.Fprintf(w, "the root has versions: run 'ferry pull' to fetch head %s\n", res.Head[:12])
				}
			})
		},
	}
	c.Flags().StringVar(&o.Remote, "remote", "", "store directory or quic://HOST:PORT/NAMESPACE (env FERRY_REMOTE)")
	c.Flags().StringVar(&o.Root, "root", "", "root name in the store (default: DIR's base name)")
	return c
}
