package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/drill"
	"github.com/cairn-pki/cairn/provision"
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
	po       provisionOptions
	siteName string
	out      string
	runs     int
}

// newDrillRunCmd is `drill run`.
func newDrillRunCmd(g *globals) *cobra.Command {
	d := &drillRun{g: g, po: provisionOptions{g: g}}
	run := &cobra.Command{
		Use:   "run SCENARIO|FILE.yaml|all",
		Short: "Run a drill against the lab (or with --infra the provisioned cluster) and write report.json, report.md and report.html (exit 1 when a pass criterion fails)",
		Long: `Run a drill against the lab and write report.json, report.md and report.html
to --out. With --infra (nspawn, aws, existing) it runs against the cluster
"cairn provision apply" made there: components are the hosts' systemd units,
and the drill runs from the operator's vantage (docs/drill.md). "all" runs
every built-in scenario. With --runs N each scenario runs N times (reports
in --out/SCENARIO/run-K) and summary.json/summary.md give the median of
every phase. Ctrl-C ends the drill early and restores
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
	d.po.addFlags(run, "")
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
	in, err := drillInfra(cmd, &d.po)
	if err != nil || in == nil {
		return err
	}
	// SIGINT/SIGTERM end the drill early; every fault is restored.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &drill.Campaign{Infra: in, Scenarios: scenarios, Runs: d.runs, Site: d.siteName, Out: d.out, Progress: cmd.OutOrStdout(), Log: os.Stderr}
	res, err := c.Run(ctx)
	if err != nil {
		return err
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d of %d drills failed: pass criteria not met (see the report.md files under %s)", res.Failed, len(res.Reports), d.out)
	}
	return nil
}

// A provisioned cluster is an infrastructure a drill acts through, with
// faults on its hosts, the controller's probe history read there, client
// hosts (nspawn) and releases rolled with `cairn upgrade apply`'s options.
var _ interface {
	drill.Infra
	drill.ClientHosts
	drill.HostFaults
	drill.HostPower
	drill.SiteLoss
	drill.ProbeHistory
	drill.Provisioned
	drill.Releases
} = (*provision.DrillInfra)(nil)

// drillInfra is what a drill acts on: the lab, or with --infra the
// provisioned cluster. On a cluster whose operator's vantage is
// elsewhere (a switch namespace) the command runs again from there: nil
// (and its error) then means it ran.
func drillInfra(cmd *cobra.Command, po *provisionOptions) (drill.Infra, error) {
	if po.o.Infra == "" {
		return po.g.lab(false, "")
	}
	p, err := po.provisioner(cmd)
	if err != nil {
		return nil, err
	}
	if ran, err := runFromOperator(cmd, po, p); ran {
		return nil, err
	}
	return p.DrillInfra(cmd.Context())
}

// runFromOperator runs this command again from the operator's vantage
// when the cluster has one elsewhere (nspawn's switch namespace): ran
// says it did, with its error (its exit code passed on). SIGTERM is
// passed on (a drill stopped so restores its faults).
func runFromOperator(cmd *cobra.Command, po *provisionOptions, p *provision.Provisioner) (bool, error) {
	argv, elsewhere := p.DrillFromOperator(append([]string{po.o.Self}, os.Args[1:]...))
	if !elsewhere {
		return false, nil
	}
	c := exec.CommandContext(cmd.Context(), argv[0], argv[1:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 5 * time.Minute
	if err := c.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			return true, ranElsewhere(exit.ExitCode())
		}
		return true, err
	}
	return true, nil
}

func newDrillRestoreCmd(g *globals) *cobra.Command {
	po := &provisionOptions{g: g}
	restore := &cobra.Command{
		Use:   "restore",
		Short: "Restore the faults a killed drill left behind (from its journal, " + drill.JournalFile + ")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := drillInfra(cmd, po)
			if err != nil || in == nil {
				return err
			}
			done, err := drill.RestoreLeftovers(cmd.Context(), in)
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
	po.addFlags(restore, "")
	return restore
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
