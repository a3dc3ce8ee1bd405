package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newLog(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "log [DIR] [PATH]",
		Short: "List the versions of the folder, or those in which PATH changed",
		Args:  args(cobra.MaximumNArgs(2)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, path, err := g.locatedPath(a)
			if err != nil {
				return err
			}
			o, _ := g.options("")
			entries, err := engine.Log(c.Context(), dir, path, o)
			if err != nil {
				return err
			}
			return g.print(entries, func(w io.Writer) {
				for _, e := range entries {
					var marks []string
					if e.Head {
						marks = append(marks, "head")
					}
					marks = append(marks, e.Tags...)
					m := ""
					if len(marks) > 0 {
						m = " (" + strings.Join(marks, ", ") + ")"
					}
					fmt.Fprintf(w, "%s %s %-7s %6d files %10s%s", short(e.Version), e.Stored.Local().Format(engine.LogTimeLayout), e.Device, e.Files, human(e.Bytes), m)
					if e.PathOp != "" {
						fmt.Fprintf(w, "  %s %s (%s)", e.PathOp, e.Path, human(e.PathSize))
					}
					if e.Message != "" {
						fmt.Fprintf(w, "  %q", e.Message)
					}
					fmt.Fprintln(w)
					for _, c := range e.Conflicts {
						if c.Kind == "overridden" {
							fmt.Fprintf(w, "    overridden %s (the first parent has the remote's)\n", c.Path)
						} else {
							fmt.Fprintf(w, "    conflict %s (copy %s)\n", c.Path, c.Copy)
						}
					}
				}
			})
		},
	}
}
