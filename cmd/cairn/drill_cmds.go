package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/drill"
	"github.com/cairn-pki/cairn/lab"
)

// newDrillCmd is `cairn drill`: list, run, restore and summary.
func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "drill", Short: "Disaster-recovery rehearsals: real faults, real clients, a report"}
	cmd.AddCommand(newDrillListCmd(g), newDrillRunCmd(g), newDrillRestoreCmd(g), newDrillSummaryCmd())
	return cmd
}

// newDrillListCmd is `drill list`.
func newDrillListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
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
}

// drillRun is one `drill run`: its flags.
type drillRun struct {
	g        *globals
	siteName string
	out      string
	runs     int
}

// newDrillRunCmd is `drill run`.
func newDrillRunCmd(g *globals) *cobra.Command {
	d := &drillRun{g: g}
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
			return d.run(cmd, args[0])
		},
	}
	run.Flags().StringVar(&d.siteName, "site", "", "the site to fault (default: the active one)")
	run.Flags().StringVar(&d.out, "out", "", "directory for report.json, report.md, report.html")
	run.Flags().IntVar(&d.runs, "runs", 1, "run each scenario this many times and summarise (p50 of every phase)")
	return run
}

// drillScenarios are the scenarios arg names: every built-in one for
// "all", else the built-in scenario or file arg names.
func drillScenarios(arg string) ([]*drill.Scenario, error) {
	if arg == "all" {
		return drill.Builtins()
	}
	sc, err := drill.Load(arg)
	if err != nil {
		return nil, err
	}
	return []*drill.Scenario{sc}, nil
}

// run runs every scenario arg names --runs times, writes their reports
// (and a summary unless there is a single run), and fails when any drill
// failed.
func (d *drillRun) run(cmd *cobra.Command, arg string) error {
	scenarios, err := drillScenarios(arg)
	if err != nil {
		return err
	}
	if d.out == "" {
		return fmt.Errorf("--out DIR is required (where the report goes)")
	}
	if d.runs < 1 {
		return fmt.Errorf("--runs %d: give 1 or more", d.runs)
	}
	l, err := d.g.lab(false, "")
	if err != nil {
		return err
	}
	// SIGINT/SIGTERM end the drill early; every fault is restored.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	single := len(scenarios) == 1 && d.runs == 1
	var reps []*drill.Report
	failed := 0
	for _, sc := range scenarios {
		for k := 1; k <= d.runs && ctx.Err() == nil; k++ {
			rep, err := d.runOne(ctx, cmd.OutOrStdout(), l, sc, k, single)
			if err != nil {
				return err
			}
			reps = append(reps, rep)
			if !rep.Passed {
				failed++
			}
		}
	}
	if !single {
		sum := drill.Summarize(reps)
		if err := sum.Write(d.out); err != nil {
			return fmt.Errorf("--out %s: %w", d.out, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s\nsummary: %s/summary.md\n", sum.Markdown(), d.out)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d drills failed: pass criteria not met (see the report.md files under %s)", failed, len(reps), d.out)
	}
	return nil
}

// runOne runs run k of a scenario, writes its report (to --out itself when
// it is the single run, else to --out/SCENARIO/run-K) and says how it went.
func (d *drillRun) runOne(ctx context.Context, w io.Writer, l *lab.Lab, sc *drill.Scenario, k int, single bool) (*drill.Report, error) {
	dir := d.out
	if !single {
		dir = filepath.Join(d.out, sc.Name, fmt.Sprintf("run-%d", k))
	}
	r := &drill.Runner{Lab: l, Scenario: sc, Site: d.siteName, Log: os.Stderr}
	rep, err := r.Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s run %d: %w", sc.Name, k, err)
	}
	if err := rep.Write(dir); err != nil {
		return nil, fmt.Errorf("--out %s: %w", d.out, err)
	}
	if single {
		fmt.Fprintf(w, "%s\nreport: %s/report.html\n", rep.Markdown(), dir)
	} else {
		fmt.Fprintf(w, "%s run %d: passed %v, report %s/report.html\n", sc.Name, k, rep.Passed, dir)
	}
	return rep, nil
}

// newDrillRestoreCmd is `drill restore`.
func newDrillRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
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
}

// newDrillSummaryCmd is `drill summary`.
func newDrillSummaryCmd() *cobra.Command {
	return &cobra.Command{
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
}
