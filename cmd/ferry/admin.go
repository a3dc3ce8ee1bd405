package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/gc"
	"github.com/ferry-sync/ferry/internal/server"
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
						ci.Since.Time().Local().Format(time.DateTime), human(ci.BytesIn), human(ci.BytesOut))
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
	rootCmd := &cobra.Command{
		Use:   "root delete NAMESPACE/ROOT",
		Short: "Delete a root: its head, history and tags",
	}
	rootCmd.AddCommand(&cobra.Command{
		Use:   "delete NAMESPACE/ROOT",
		Short: "Delete a root: its head, history and tags (its data goes at a later gc, after the grace period)",
		Long: `Delete a root of a namespace: its head, its history and its tags. What only
that root kept becomes garbage, removed by a later gc once the grace period has
passed. A push that moves the head while this runs makes it fail, so nothing
is deleted unseen. Folders synced with the root are untouched: their next sync
says the root is gone, and 'ferry config set root NAME' starts it again.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			res, err := engine.AdminDeleteRoot(c.Context(), g.serverRef(r), a[0])
			if err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "deleted root %s/%s (head %s, %d versions); its data goes at a gc after the grace period\n", res.Namespace, res.Root, short(res.Head), res.Versions)
			})
		},
	})
	var toPacks, fromPacks, toMeta, fromMeta string
	migrate := &cobra.Command{
		Use:   "migrate --data DIR ([--to-store s3://...] [--to-meta postgres://...] | --to-local [--packs s3://...] [--meta postgres://...])",
		Short: "Move a stopped server's packs into an S3 bucket and its records into PostgreSQL (a cluster's layout), or back, verifying each",
		Long: `Move the store of the server whose data directory is DIR (stopped: it holds the
store's lock) into a cluster's layout. --to-store (or --to-packs) URL: each pack
is uploaded to the S3 bucket, read back and compared byte for byte, and only then
does the store record that its packs are in the bucket. --to-meta DSN: every
record (blobs' index, ownerships, heads, history, tags, tokens, shares,
policies) is copied into the PostgreSQL database, which must hold no store, and
compared record by record; the local records are then marked moved, so the
directory is only served with --meta. Both together move the packs first.
Serve afterwards with the same --store and --meta.

Back (--to-local): --meta DSN copies the records into DIR again (compared the
same way), then --packs URL downloads every pack and re-hashes every blob.
Credentials come from the AWS_* and PG* variables, ~/.aws, or the URLs.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			toLocal, _ := c.Flags().GetBool("to-local")
			switch {
			case r.Data == "":
				return usageError{fmt.Errorf("admin migrate: --data DIR (or --from DIR) is required")}
			case toLocal && (toPacks != "" || toMeta != ""):
				return usageError{fmt.Errorf("admin migrate: --to-local goes with --packs and --meta (where things are now), not --to-store or --to-meta")}
			case !toLocal && toPacks == "" && toMeta == "":
				return usageError{fmt.Errorf("admin migrate: give --to-store URL and/or --to-meta DSN, or --to-local with --packs URL and/or --meta DSN")}
			case toLocal && fromPacks == "" && fromMeta == "":
				return usageError{fmt.Errorf("admin migrate --to-local: --packs and/or --meta name where the packs and records are now")}
			}
			var res server.MigrateResult
			var lines []string
			ctx := c.Context()
			if !toLocal && toPacks != "" {
				st, err := server.Migrate(ctx, r.Data, toPacks, true)
				if err != nil {
					return err
				}
				res.Packs = &st
				lines = append(lines, fmt.Sprintf("moved %d packs (%s) to %s, each compared after its upload", st.Packs, human(st.Bytes), toPacks))
			}
			dsn := toMeta
			if toLocal {
				dsn = fromMeta
			}
			if dsn != "" {
				st, err := server.MigrateRecords(ctx, r.Data, dsn, !toLocal)
				if err != nil {
					return err
				}
				res.Records = &st
				if toLocal {
					lines = append(lines, fmt.Sprintf("brought %d records back from the database, each compared", st.Records))
				} else {
					lines = append(lines, fmt.Sprintf("copied %d records (%s) into the database, each compared; the local ones are marked moved", st.Records, human(st.Bytes)))
				}
			}
			if toLocal && fromPacks != "" {
				st, err := server.Migrate(ctx, r.Data, fromPacks, false)
				if err != nil {
					return err
				}
				res.Packs = &st
				lines = append(lines, fmt.Sprintf("brought %d packs (%s) back from %s; every blob re-hashed", st.Packs, human(st.Bytes), fromPacks))
			}
			return g.print(res, func(w io.Writer) {
				for _, l := range lines {
					fmt.Fprintln(w, l)
				}
				var flags []string
				switch {
				case !toLocal && toPacks != "":
					flags = append(flags, "--store '"+toPacks+"'")
				case toLocal && fromPacks == "" && fromMeta != "":
					flags = append(flags, "--packs (where the packs are)")
				}
				if !toLocal && toMeta != "" {
					flags = append(flags, "--meta (that database)")
				}
				if len(flags) > 0 {
					fmt.Fprintf(w, "serve with %s\n", strings.Join(flags, " "))
				} else if toLocal && fromPacks != "" {
					fmt.Fprintln(w, "serve without --packs or --meta")
				}
			})
		},
	}
	migrate.Flags().StringVar(&r.Data, "from", "", "the same as --data (the stopped server's data directory)")
	migrate.Flags().StringVar(&toPacks, "to-store", "", "the S3 bucket to move the packs into: s3://BUCKET/PREFIX?endpoint=URL")
	migrate.Flags().StringVar(&toPacks, "to-packs", "", "the same as --to-store")
	migrate.Flags().StringVar(&toMeta, "to-meta", "", "the PostgreSQL database to copy the records into (it must hold no store)")
	migrate.Flags().Bool("to-local", false, "move the packs and/or records back into the data directory")
	migrate.Flags().StringVar(&fromPacks, "packs", "", "with --to-local: where the packs are now")
	migrate.Flags().StringVar(&fromMeta, "meta", "", "with --to-local: the database the records are in now")
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
	var setQuota string
	quota := &cobra.Command{
		Use:   "quota NAMESPACE [--set SIZE|none]",
		Short: "A namespace's bytes held and its quota; --set changes the quota (10GiB, 500MB, none)",
		Long: `Show the bytes a namespace holds (each blob's stored size, counted once per
namespace, whether referenced yet or still in flight) and its quota. --set
changes it: a push that would pass the quota is refused (EQUOTA) before it sends
anything, or blob by blob if it crosses the quota midway; other namespaces are
unaffected. Sizes: 1048576, 500MB, 10GiB; none removes the quota.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			var set *int64
			if setQuota != "" {
				n, err := parseSize(setQuota)
				if err != nil {
					return usageError{err}
				}
				set = &n
			}
			q, err := engine.AdminQuota(c.Context(), g.serverRef(r), a[0], set)
			if err != nil {
				return err
			}
			return g.print(q, func(w io.Writer) {
				limit := "no quota"
				if q.Limit > 0 {
					limit = fmt.Sprintf("quota %s (%.0f%% used)", human(q.Limit), 100*float64(q.Used)/float64(q.Limit))
				}
				fmt.Fprintf(w, "%s: %s held, %s\n", q.Namespace, human(q.Used), limit)
			})
		},
	}
	quota.Flags().StringVar(&setQuota, "set", "", "the new quota: a size (500MB, 10GiB) or none")
	var clearPolicy bool
	policyCmd := &cobra.Command{
		Use:   "policy NAMESPACE [--keep-last N ...] [--clear]",
		Short: "A namespace's retention policy, which the server applies before each scheduled gc",
		Long: `Show or set the retention policy of a namespace (the --keep-* rules of
'ferry forget'). Before each scheduled collection (serve --gc-every), the server
forgets, in every root of the namespace, the versions the policy does not keep.
--clear removes the policy. With no rule and no --clear, shows the policy.`,
		Args: args(cobra.ExactArgs(1)),
	}
	readPolicy := policyFlags(policyCmd)
	policyCmd.Flags().BoolVar(&clearPolicy, "clear", false, "remove the policy")
	var previewPolicy bool
	policyCmd.Flags().BoolVarP(&previewPolicy, "dry-run", "n", false, "say what the policy given (or the namespace's) would forget now in each root, and change nothing")
	policyCmd.RunE = func(c *cobra.Command, a []string) error {
		var set *gc.Policy
		changed := false
		for _, name := range []string{"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly", "keep-within", "keep-tag", "forget-tagged"} {
			changed = changed || c.Flags().Changed(name)
		}
		if !clearPolicy && changed {
			p, err := readPolicy()
			if err != nil {
				return err
			}
			set = &p
		}
		if previewPolicy {
			if clearPolicy {
				return usageError{fmt.Errorf("admin policy: --dry-run previews a policy; --clear removes one")}
			}
			results, used, err := engine.AdminPolicyPreview(c.Context(), g.serverRef(r), a[0], set, nil)
			if err != nil {
				return err
			}
			return g.print(results, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %s (dry run: nothing is forgotten)\n", a[0], describePolicy(*used))
				for _, res := range results {
					fmt.Fprintf(w, "\nroot %s:", res.Root)
					printForget(w, "would keep", res.Keep, true)
					printForget(w, "would forget", res.Remove, false)
				}
			})
		}
		p, err := engine.AdminPolicy(c.Context(), g.serverRef(r), a[0], set, clearPolicy)
		if err != nil {
			return err
		}
		return g.print(p, func(w io.Writer) {
			if p == nil {
				fmt.Fprintf(w, "%s: no retention policy (every version is kept)\n", a[0])
				return
			}
			fmt.Fprintf(w, "%s: %s\n", a[0], describePolicy(*p))
		})
	}
	var portable bool
	nsCmd := &cobra.Command{
		Use:   "namespace NAMESPACE [--portable[=false]]",
		Short: "A namespace's settings: --portable refuses names Windows cannot hold",
		Long: `Show or change a namespace's settings. A portable namespace refuses, at each push,
names that Windows (or a FAT or NTFS volume) cannot hold: device names such as
CON, nul.txt or COM1, a trailing dot or space, and < > : " | ? *; the error names
the path. Without it such names sync with a warning at the pushing device.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			var set *bool
			if c.Flags().Changed("portable") {
				set = &portable
			}
			st, err := engine.AdminNamespace(c.Context(), g.serverRef(r), a[0], set)
			if err != nil {
				return err
			}
			return g.print(st, func(w io.Writer) {
				fmt.Fprintf(w, "%s: portable %v\n", a[0], st.Portable)
			})
		},
	}
	nsCmd.Flags().BoolVar(&portable, "portable", false, "refuse names Windows cannot hold (--portable=false allows them again)")
	c.AddCommand(clients, roots, rootCmd, history, quota, policyCmd, nsCmd, migrate)
	return c
}

// parseSize reads 1048576, 500MB, 10GiB, 2T or none (0).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	if t == "none" || t == "0" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	// NaN fails every comparison, so the test is written to refuse it;
	// 2^63 bytes and more do not fit.
	if err != nil || !(v >= 0 && v*float64(mult) < 1<<63) {
		return 0, fmt.Errorf("size %q: want a byte count like 500MB or 10GiB, or none", s)
	}
	return int64(v * float64(mult)), nil
}
