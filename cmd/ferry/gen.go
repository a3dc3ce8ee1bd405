package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func newGen(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "gen",
		Short: "Generate documentation: man pages",
	}
	man := &cobra.Command{
		Use:   "man DIR",
		Short: "Write a man page for ferry and each of its commands into DIR (ferry.1, ferry-push.1, ...)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			if err := os.MkdirAll(a[0], 0o755); err != nil {
				return err
			}
			hdr := &doc.GenManHeader{Title: "FERRY", Section: "1", Source: "ferry " + readVersion().Version, Manual: "ferry manual"}
			root := c.Root()
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, hdr, a[0]); err != nil {
				return fmt.Errorf("gen man: %w", err)
			}
			ents, _ := os.ReadDir(a[0])
			return g.print(map[string]any{"dir": a[0], "pages": len(ents)}, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %d man pages into %s (man -l %s/ferry.1)\n", len(ents), a[0], a[0])
			})
		},
	}
	c.AddCommand(man)
	return c
}
