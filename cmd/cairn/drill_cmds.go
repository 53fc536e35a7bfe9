package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
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
	var runs int
	run := &cobra.Command{
		Use:   "run SCENARIO|FILE.yaml|all",
		Short: "Run a drill against the lab and write report.json, report.md and report.html (exit 1 when a pass criterion fails)",
		Long: `Run a drill against the lab and write report.json, report.md and report.html
to --out. "all" runs every built-in scenario. With --runs N each scenario
runs N times (reports in --out/SCENARIO/run-K) and summary.json/summary.md
give the median of every phase. Ctrl-C ends the drill early and restores
every fault; a drill that was killed is restored by the next one or by
"cairn drill restore".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var scenarios []*drill.Scenario
			if args[0] == "all" {
				all, err := drill.Builtins()
				if err != nil {
					return err
				}
				scenarios = all
			} else {
				sc, err := drill.Load(args[0])
				if err != nil {
					return err
				}
				scenarios = []*drill.Scenario{sc}
			}
			if out == "" {
				return fmt.Errorf("--out DIR is required (where the report goes)")
			}
			if runs < 1 {
				return fmt.Errorf("--runs %d: give 1 or more", runs)
			}
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			// SIGINT/SIGTERM end the drill early; every fault is restored.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			single := len(scenarios) == 1 && runs == 1
			var reps []*drill.Report
			failed := 0
			for _, sc := range scenarios {
				for k := 1; k <= runs && ctx.Err() == nil; k++ {
					dir := out
					if !single {
						dir = filepath.Join(out, sc.Name, fmt.Sprintf("run-%d", k))
					}
					r := &drill.Runner{Lab: l, Scenario: sc, Site: siteName, Log: os.Stderr}
					rep, err := r.Run(ctx)
					if err != nil {
						return fmt.Errorf("%s run %d: %w", sc.Name, k, err)
					}
					if err := rep.Write(dir); err != nil {
						return fmt.Errorf("--out %s: %w", out, err)
					}
					reps = append(reps, rep)
					if !rep.Passed {
						failed++
					}
					if single {
						fmt.Fprintf(cmd.OutOrStdout(), "%s\nreport: %s/report.html\n", rep.Markdown(), dir)
					} else {
						fmt.Fprintf(cmd.OutOrStdout(), "%s run %d: passed %v, report %s/report.html\n", sc.Name, k, rep.Passed, dir)
					}
				}
			}
			if !single {
				sum := drill.Summarize(reps)
				if err := sum.Write(out); err != nil {
					return fmt.Errorf("--out %s: %w", out, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\nsummary: %s/summary.md\n", sum.Markdown(), out)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d drills failed: pass criteria not met (see the report.md files under %s)", failed, len(reps), out)
			}
			return nil
		},
	}
	run.Flags().StringVar(&siteName, "site", "", "the site to fault (default: the active one)")
	run.Flags().StringVar(&out, "out", "", "directory for report.json, report.md, report.html")
	run.Flags().IntVar(&runs, "runs", 1, "run each scenario this many times and summarise (p50 of every phase)")
	restore := &cobra.Command{
		Use:   "restore",
		Short: "Restore the faults a killed drill left behind (from its journal, " + drill.JournalFile + ")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			done, err := drill.RestoreLeftovers(cmd.Context(), l)
			for _, d := range done {
				fmt.Fprintf(cmd.OutOrStdout(), "restored: %s\n", d)
			}
			if err != nil {
				return err
			}
			if len(done) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to restore: no drill left faults behind")
			}
			return nil
		},
	}
	summary := &cobra.Command{
		Use:   "summary DIR",
		Short: "Summarise every report.json under DIR (p50 of every phase per scenario) into DIR/summary.md and summary.json",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reps, err := drill.LoadReports(args[0])
			if err != nil {
				return err
			}
			sum := drill.Summarize(reps)
			if err := sum.Write(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\nsummary: %s/summary.md\n", sum.Markdown(), args[0])
			return nil
		},
	}
	cmd.AddCommand(list, run, restore, summary)
	return cmd
}
