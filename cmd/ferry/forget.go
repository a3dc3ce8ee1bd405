package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/gc"
	"github.com/spf13/cobra"
)

func newForget(g *globals) *cobra.Command {
	var o engine.ForgetOptions
	var policy func() (gc.Policy, error)
	c := &cobra.Command{
		Use:   "forget [DIR | --remote URL --root NAME] --keep-last N [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-within D] [--keep-tag T] [--dry-run]",
		Short: "Drop versions from the root's history by a retention policy (data goes at the next gc)",
		Long: `Apply a retention policy to the history of the folder's root, restic style:
keep the newest N versions (--keep-last), the newest version of each of the last
N hours, days, ISO weeks, months and years, every version within a duration of
the newest (--keep-within 2y5m7d3h), and tagged versions. A count of -1 keeps
every bucket. The head is always kept; tagged versions are kept unless
--forget-tagged is given (then only --keep-tag names keep). The versions dropped
stay readable until 'ferry gc' (or the server's scheduled gc) reclaims their data.

--remote URL --root NAME forgets in a root with no folder: a store directory, or
quic://HOST:PORT/NAMESPACE with a token (--token-file, FERRY_TOKEN) and the
server's fingerprint (--fingerprint, FERRY_FINGERPRINT).`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			var dir string
			var err error
			if o.Root == "" && o.Remote == getenv("FERRY_REMOTE") {
				o.Remote = "" // the environment's default remote is for init; a folder has its own
			}
			switch {
			case o.Remote != "" && (len(a) > 0 || g.chdir != ""):
				return usageError{fmt.Errorf("forget: --remote names the root; give no DIR")}
			case o.Remote != "" && o.Root == "":
				return usageError{fmt.Errorf("forget: --remote needs --root NAME")}
			case o.Remote == "" && o.Root != "":
				return usageError{fmt.Errorf("forget: --root is for --remote; a folder forgets in its own root")}
			case o.Remote == "":
				if dir, err = g.folder(a); err != nil {
					return err
				}
			}
			if o.Policy, err = policy(); err != nil {
				return err
			}
			eo, _ := g.options("")
			o.Options = eo
			res, err := engine.Forget(c.Context(), dir, o)
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "Applying policy to root %s: %s\n", res.Root, describePolicy(o.Policy))
				printForget(w, "keep", res.Keep, true)
				verb := "remove"
				if res.DryRun {
					verb = "would remove"
				}
				printForget(w, verb, res.Remove, false)
				if !res.DryRun && len(res.Remove) > 0 {
					fmt.Fprintln(w, "their data is reclaimed by the next 'ferry gc'")
				}
			})
		},
	}
	policy = policyFlags(c)
	c.Flags().BoolVarP(&o.DryRun, "dry-run", "n", false, "say what would be removed, remove nothing")
	c.Flags().StringVar(&o.Remote, "remote", "", "forget in a root of this store or server, with no folder (with --root)")
	c.Flags().StringVar(&o.Root, "root", "", "the root to forget in (with --remote)")
	return c
}

// policyFlags adds the --keep-* flags to c and returns the function that
// reads them into a policy, refusing one with no rule.
func policyFlags(c *cobra.Command) func() (gc.Policy, error) {
	var (
		p      gc.Policy
		within string
		noTags bool
	)
	f := c.Flags()
	f.IntVar(&p.Last, "keep-last", 0, "keep the newest N versions")
	f.IntVar(&p.Hourly, "keep-hourly", 0, "keep the newest version of each of the last N hours")
	f.IntVar(&p.Daily, "keep-daily", 0, "keep the newest version of each of the last N days")
	f.IntVar(&p.Weekly, "keep-weekly", 0, "keep the newest version of each of the last N ISO weeks")
	f.IntVar(&p.Monthly, "keep-monthly", 0, "keep the newest version of each of the last N months")
	f.IntVar(&p.Yearly, "keep-yearly", 0, "keep the newest version of each of the last N years")
	f.StringVar(&within, "keep-within", "", "keep versions within this duration of the newest (e.g. 2y5m7d3h, 36h)")
	f.StringSliceVar(&p.Tags, "keep-tag", nil, "keep versions with this tag (repeatable)")
	f.BoolVar(&noTags, "forget-tagged", false, "tagged versions are not kept for being tagged (only --keep-tag keeps)")
	return func() (gc.Policy, error) {
		if within != "" {
			d, err := gc.ParseWithin(within)
			if err != nil {
				return p, usageError{err}
			}
			p.Within = d
		}
		p.KeepTagged = !noTags
		if p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 && p.Yearly == 0 && p.Within == 0 && len(p.Tags) == 0 {
			return p, usageError{fmt.Errorf("give at least one --keep-* rule (refusing to forget every version)")}
		}
		return p, nil
	}
}

func describePolicy(p gc.Policy) string {
	var parts []string
	add := func(n int, what string) {
		switch {
		case n < 0:
			parts = append(parts, "all "+what)
		case n > 0:
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(p.Last, "latest versions")
	add(p.Hourly, "hourly")
	add(p.Daily, "daily")
	add(p.Weekly, "weekly")
	add(p.Monthly, "monthly")
	add(p.Yearly, "yearly")
	if p.Within > 0 {
		parts = append(parts, "all within "+p.Within.String()+" of the newest")
	}
	for _, t := range p.Tags {
		parts = append(parts, "tag "+t)
	}
	if p.KeepTagged {
		parts = append(parts, "every tagged version")
	}
	return "keep " + strings.Join(parts, ", ")
}

func printForget(w io.Writer, verb string, list []engine.ForgetEntry, reasons bool) {
	noun := "versions"
	if len(list) == 1 {
		noun = "version"
	}
	fmt.Fprintf(w, "\n%s %d %s:\n", verb, len(list), noun)
	if len(list) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	if reasons {
		fmt.Fprintln(tw, "VERSION\tTIME\tDEVICE\tFILES\tSIZE\tREASONS")
	} else {
		fmt.Fprintln(tw, "VERSION\tTIME\tDEVICE\tFILES\tSIZE")
	}
	for _, e := range list {
		line := fmt.Sprintf("%s\t%s\t%s\t%d\t%s", short(e.Version), e.Time.Local().Format("2006-01-02 15:04:05"), e.Device, e.Files, human(e.Bytes))
		if reasons {
			line += "\t" + strings.Join(e.Reasons, ", ")
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}
