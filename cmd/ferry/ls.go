package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

var errTooManyArgs = errors.New("too many arguments")

func newLs(g *globals) *cobra.Command {
	var version string
	var recursive bool
	c := &cobra.Command{
		Use:   "ls [DIR] [--version V] [PATH]",
		Short: "List a version's entries at PATH (default: the head's top level)",
		Args:  args(cobra.MaximumNArgs(2)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, path, err := g.locatedPath(a)
			if err != nil {
				return err
			}
			o, _ := g.options("")
			o.Warn = g.warn
			entries, err := engine.Ls(c.Context(), dir, version, path, recursive, o)
			if err != nil {
				return err
			}
			return g.print(entries, func(w io.Writer) {
				for _, e := range entries {
					name := e.Path
					switch e.Kind {
					case "dir":
						name += "/"
					case "symlink":
						name += " -> " + e.Target
					}
					when := ""
					if !e.MTime.IsZero() {
						when = e.MTime.Local().Format("2006-01-02 15:04:05")
					}
					fmt.Fprintf(w, "%s %10s %19s  %s\n", e.Mode, human(e.Size), when, name)
				}
			})
		},
	}
	c.Flags().StringVar(&version, "version", "head", "the version to list")
	c.Flags().BoolVarP(&recursive, "recursive", "R", false, "list everything below PATH")
	return c
}
