package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/lab"
	"github.com/cairn-pki/cairn/site"
)

func newAccountsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "accounts", Short: "ACME accounts across sites: replication status"}
	status := &cobra.Command{
		Use:   "status",
		Short: "Every replication connection (running, error, lag, filter, skipped rows, refused foreign rows) and a cross-site diff of accounts (exit 1 on any problem)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := cluster.Load(g.specPath())
			if err != nil {
				return err
			}
			r, err := accounts.NewMariaDB(spec)
			if err != nil {
				return err
			}
			st := accounts.Check(cmd.Context(), spec, r)
			if g.output == "json" {
				if err := printJSON(cmd.OutOrStdout(), st); err != nil {
					return err
				}
			} else {
				printAccountsStatus(cmd.OutOrStdout(), st)
			}
			if !st.OK {
				return errors.New("account replication has problems (listed above)")
			}
			return nil
		},
	}
	seed := &cobra.Command{
		Use:   "seed",
		Short: "Bring account replication up on a cluster that ran without it, or back after a peer was away longer than its binary logs or restored from backup (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := cluster.Load(g.specPath())
			if err != nil {
				return err
			}
			// With -o json, progress goes to stderr and stdout is the report.
			out := cmd.OutOrStdout()
			if g.output == "json" {
				out = cmd.ErrOrStderr()
			}
			// The lab's databases started without a binary log are
			// restarted with the rendered my.cnf; a provisioned site's
			// are restarted by `cairn provision apply`.
			if l := (&lab.Lab{Spec: spec, Log: out}); l.IsLab() {
				if _, err := l.EnableBinlogs(cmd.Context()); err != nil {
					return err
				}
			}
			open, err := accounts.Admin(spec)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "seeding every site from every peer:")
			rep, err := accounts.Seed(cmd.Context(), spec, open, out)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			fmt.Fprintln(out, "done: check with `cairn accounts status`")
			return nil
		},
	}
	cmd.AddCommand(status, seed, newEABCmd(g))
	return cmd
}

// newEABCmd is `cairn accounts eab`: External Account Binding keys
// (docs/authority.md).
func newEABCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "eab", Short: "External Account Binding keys: who may register ACME accounts, and for which names"}
	var siteName string
	var wait time.Duration
	open := func(cmd *cobra.Command) (*accounts.EAB, error) {
		spec, err := cluster.Load(g.specPath())
		if err != nil {
			return nil, err
		}
		adm, err := accounts.Admin(spec)
		if err != nil {
			return nil, err
		}
		return &accounts.EAB{Spec: spec, Open: adm, Log: cmd.ErrOrStderr(), Wait: wait}, nil
	}
	var label string
	var scope []string
	create := &cobra.Command{
		Use:   "create --label L [--scope SUFFIX]...",
		Short: "Make a key: prints its key ID and HMAC key once (hand both to the team; nothing shows the HMAC key again)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := open(cmd)
			if err != nil {
				return err
			}
			k, err := e.Create(cmd.Context(), siteName, label, scope)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				return printJSON(out, k)
			}
			fmt.Fprintf(out, "kid: %s\nhmac: %s\n", k.KID, k.HMAC)
			fmt.Fprintf(cmd.ErrOrStderr(), "Give both to %q; certbot --eab-kid KID --eab-hmac-key=HMAC, lego --eab --kid KID --hmac=HMAC (with =: an HMAC may begin with a dash). Scope: %s\n",
				k.Label, scopeText(k.Scope))
			return nil
		},
	}
	create.Flags().StringVar(&label, "label", "", "who the key is for (a team or service)")
	create.Flags().StringSliceVar(&scope, "scope", nil, "name suffix the key's accounts may order (repeatable; payments.corp.internal or *.payments.corp.internal: the name and everything under it); none: the cluster's policy.allowedNames")
	create.Flags().StringVar(&siteName, "site", "", "make the key at this site (default: the first whose database answers)")
	list := newEABListCmd(g, open)
	revoke := &cobra.Command{
		Use:   "revoke KID",
		Short: "Revoke a key at every reachable site: its accounts can no longer order anywhere (their certificates stay valid)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := open(cmd)
			if err != nil {
				return err
			}
			took, err := e.Revoke(cmd.Context(), siteName, args[0])
			if err != nil {
				return err
			}
			if g.output == "json" {
				ms := map[string]float64{}
				for s, d := range took {
					ms[s] = float64(d.Microseconds()) / 1000
				}
				return printJSON(cmd.OutOrStdout(), map[string]any{"kid": args[0], "refusedAtMillis": ms})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s: refused at %d of %d sites\n", args[0], len(took), len(e.Spec.Sites))
			return nil
		},
	}
	revoke.Flags().StringVar(&siteName, "site", "", "revoke only at this site; the others learn it by replication (default: every reachable site)")
	cmd.PersistentFlags().DurationVar(&wait, "wait", 30*time.Second, "how long create and revoke wait for every reachable site to have the change")
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func scopeText(scope []string) string {
	if len(scope) == 0 {
		return "(policy.allowedNames)"
	}
	return strings.Join(scope, ",")
}

func printAccountsStatus(w io.Writer, st *accounts.Status) {
	fmt.Fprintf(w, "Account replication: %s\n\n", st.Replication)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tDATABASE\tACCOUNTS\tSKIPPED ROWS\tGTID BINLOG POS")
	for _, s := range st.Sites {
		db := "reachable"
		if !s.Reachable {
			db = "UNREACHABLE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", s.Site, db, s.Accounts, s.SkippedRows, s.BinlogPos)
	}
	tw.Flush()
	if len(st.Connections) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SITE\tFROM\tRUNNING\tLAG s\tLAG tx\tFILTER\tREFUSED\tERROR")
		for _, c := range st.Connections {
			run := "yes"
			switch {
			case c.Missing:
				run = "MISSING"
			case !c.Running:
				run = "NO (IO " + c.IO + ", SQL " + c.SQL + ")"
			}
			filter := "ok"
			if !c.FilterOK {
				filter = "WRONG: " + c.Filter
			}
			refused := "–"
			if c.ForeignWrites != nil {
				refused = fmt.Sprint(c.ForeignWrites.Count)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Site, c.Peer, run, optInt(c.LagSeconds), optInt(c.LagTransactions), filter, refused, trim(c.Error, 80))
		}
		tw.Flush()
		for _, c := range st.Connections {
			if fw := c.ForeignWrites; fw != nil && fw.Count > 0 {
				of := ""
				if fw.LastTable != "" && fw.LastTable != site.ReplicatedTable {
					of = fw.LastTable + " "
				}
				fmt.Fprintf(w, "  %s refused %d rows from %s outside %s's ID range; last: %s of %sid %d at %s\n",
					c.Site, fw.Count, c.Peer, c.Peer, fw.LastOp, of, fw.LastID, fw.LastAt.Format(time.RFC3339))
			}
		}
	}
	fmt.Fprintf(w, "\nAccounts: %d missing somewhere, %d differing, %d keys under several IDs\n", len(st.Missing), len(st.Mismatches), len(st.Conflicts))
	for _, c := range st.Conflicts {
		var parts []string
		for s, id := range c.IDs {
			parts = append(parts, fmt.Sprintf("%s: %d", s, id))
		}
		fmt.Fprintf(w, "  key %s…: %s\n", trim(c.KeySHA, 12), strings.Join(parts, ", "))
	}
	if len(st.Problems) == 0 {
		fmt.Fprintln(w, "\nOK: every connection runs with its filter; every site has every account.")
		return
	}
	fmt.Fprintln(w, "\nProblems:")
	for _, p := range st.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

func optInt(v *int64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprint(*v)
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// newEABListCmd is `cairn accounts eab list`.
func newEABListCmd(g *globals, open func(*cobra.Command) (*accounts.EAB, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Every key (never its HMAC key): label, scope, where it is, accounts bound, revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := open(cmd)
			if err != nil {
				return err
			}
			keys, err := e.List(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				return printJSON(out, keys)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tLABEL\tSCOPE\tCREATED\tMADE AT\tAT SITES\tACCOUNTS\tREVOKED")
			for _, k := range keys {
				revoked := "–"
				if k.Revoked != nil {
					revoked = k.Revoked.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", k.KID, trim(k.Label, 30), scopeText(k.Scope), k.Created.Format(time.RFC3339),
					k.Site, strings.Join(k.At, ","), k.Bound, revoked)
			}
			return tw.Flush()
		},
	}
}
