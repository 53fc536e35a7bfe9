package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/drill"
)

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "drill", Short: "Disaster-recovery rehearsals: real faults, real clients, a report"}
	list := &cobra.Command{
		Use:   "list",
		Short: "The built-in scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := drill.Builtins()
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), all)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SCENARIO\tDURATION\tDESCRIPTION")
			for _, s := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Duration, s.Description)
			}
			return tw.Flush()
		},
	}
	var siteName, out string
	run := &cobra.Command{
		Use:   "run SCENARIO|FILE.yaml",
		Short: "Run a drill against the lab and write report.json, report.md and report.html (exit 1 when a pass criterion fails)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := drill.Load(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("--out DIR is required (where the report goes)")
			}
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			// SIGINT/SIGTERM end the drill early; every fault is restored.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r := &drill.Runner{Lab: l, Scenario: sc, Site: siteName, Log: os.Stderr}
			rep, err := r.Run(ctx)
			if err != nil {
				return err
			}
			if err := rep.Write(out); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\nreport: %s/report.html\n", rep.Markdown(), out)
			if !rep.Passed {
				return fmt.Errorf("drill %s failed: %d pass criteria not met (see %s/report.md)", sc.Name, len(rep.Failures), out)
			}
			return nil
		},
	}
	run.Flags().StringVar(&siteName, "site", "", "the site to fault (default: the active one)")
	run.Flags().StringVar(&out, "out", "", "directory for report.json, report.md, report.html")
	cmd.AddCommand(list, run)
	return cmd
}
