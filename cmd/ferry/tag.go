package main

import (
	"fmt"
	"io"

	"github.com/ferry-sync/ferry/engine"
	"github.com/spf13/cobra"
)

func newTag(g *globals) *cobra.Command {
	var remove bool
	c := &cobra.Command{
		Use:   "tag [DIR] [NAME [V]]",
		Short: "Name a version (default: head); with no NAME, list the tags",
		Args:  args(cobra.MaximumNArgs(3)),
		RunE: func(c *cobra.Command, a []string) error {
			dir, a := g.folderArg(a)
			name, version := "", "head"
			switch len(a) {
			case 0:
			case 1:
				name = a[0]
			case 2:
				name, version = a[0], a[1]
			default:
				return usageError{errTooManyArgs}
			}
			if remove && name == "" {
				return usageError{fmt.Errorf("tag --delete needs a NAME")}
			}
			o, _ := g.options("")
			tags, err := engine.Tag(c.Context(), dir, name, version, remove, o)
			if err != nil {
				return err
			}
			return g.print(tags, func(w io.Writer) {
				for _, t := range tags {
					fmt.Fprintf(w, "%s %s\n", short(t.Version), t.Tag)
				}
			})
		},
	}
	c.Flags().BoolVarP(&remove, "delete", "d", false, "remove the tag NAME")
	c.Flags().BoolVar(&g.force, "force", false, "move a tag that names another version")
	return c
}
