package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/upgrade"
)

func newUpgradeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "upgrade", Short: "Roll a Boulder release or a changed cairn.yaml through the sites one at a time, gated by deep probes (docs/upgrades.md)"}
	uo := &upgradeOptions{po: provisionOptions{g: g}}
	var showDiff, rotate bool
	var to string
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show, site by site in upgrade order (standbys first, the active site last), what would change: Boulder version, bundle generation, files, processes to restart; changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := uo.options(cmd)
			if err != nil {
				return err
			}
			if st, err := o.Controller.Status(cmd.Context()); err == nil {
				o.Active = st.Active
			}
			o.To, o.RotateInternal = to, rotate
			plans, err := upgrade.Plan(cmd.Context(), o.Options)
			if err != nil {
				return err
			}
			if uo.po.g.output == "json" {
				return printJSON(cmd.OutOrStdout(), plans)
			}
			printPlan(cmd.OutOrStdout(), plans, showDiff)
			return nil
		},
	}
	plan.Flags().BoolVar(&showDiff, "diff", false, "also show the configuration diff of every site")
	plan.Flags().StringVar(&to, "to", "", "Boulder release to plan for (default: each site keeps its own)")
	plan.Flags().BoolVar(&rotate, "rotate-internal", false, rotateInternalHelp)
	apply, abandon, status := newUpgradeApplyCmd(uo), newUpgradeAbandonCmd(uo), newUpgradeStatusCmd(uo)
	for _, c := range []*cobra.Command{plan, apply, abandon, status} {
		uo.po.addFlags(c, "")
	}
	cmd.AddCommand(plan, apply, abandon, status)
	return cmd
}

// upgradeOptions pick what an upgrade acts on: the lab, or with --infra
// the provisioned cluster.
type upgradeOptions struct{ po provisionOptions }

func (uo *upgradeOptions) options(cmd *cobra.Command) (upgrade.ApplyOptions, error) {
	if uo.po.o.Infra != "" {
		p, err := uo.po.provisioner(cmd)
		if err != nil {
			return upgrade.ApplyOptions{}, err
		}
		return p.UpgradeOptions(cmd.Context())
	}
	l, err := uo.po.g.lab(false, "")
	if err != nil {
		return upgrade.ApplyOptions{}, err
	}
	return l.UpgradeOptions(cmd.Context())
}

// stateFile is where the upgrade's progress is recorded (status reads
// only that: no controller, probes or hosts).
func (uo *upgradeOptions) stateFile(cmd *cobra.Command) (string, error) {
	if uo.po.o.Infra != "" {
		p, err := uo.po.provisioner(cmd)
		if err != nil {
			return "", err
		}
		return p.UpgradeStateFile(), nil
	}
	l, err := uo.po.g.lab(false, "")
	if err != nil {
		return "", err
	}
	return upgrade.StateFile(l.Spec), nil
}

const rotateInternalHelp = "make every internal certificate of each site again (gRPC, Redis, DoH, agent, the controller's agent credential): new keys under the site's internal CA"

type applyFlags struct {
	to, sites     string
	canary        time.Duration
	canaryTraffic bool
	rotate        bool
	gate          int
	gateTimeout   time.Duration
}

// print shows the recorded upgrade (text or JSON).
func (uo *upgradeOptions) print(cmd *cobra.Command, st *upgrade.State) {
	if st == nil {
		return
	}
	if uo.po.g.output == "json" {
		printJSON(cmd.OutOrStdout(), st)
		return
	}
	printUpgrade(cmd.OutOrStdout(), st)
}

func newUpgradeApplyCmd(uo *upgradeOptions) *cobra.Command {
	f := &applyFlags{}
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Upgrade the sites one at a time (standbys first, the active site last, drained): re-render, migrate, restart, gate on deep probes, canary; roll a failing site back and stop. Re-run to resume.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := uo.options(cmd)
			if err != nil {
				return err
			}
			o.To, o.Canary, o.CanaryTraffic, o.Gate, o.GateTimeout, o.RotateInternal = f.to, f.canary, f.canaryTraffic, f.gate, f.gateTimeout, f.rotate
			if f.sites != "" {
				o.Sites = strings.Split(f.sites, ",")
			}
			if f.canary < 0 {
				return fmt.Errorf("--canary %s: give a duration of 0 or more (0: no canary)", f.canary)
			}
			st, err := upgrade.Apply(cmd.Context(), o)
			uo.print(cmd, st)
			return err
		},
	}
	cmd.Flags().StringVar(&f.to, "to", "", "Boulder release every site moves to, e.g. v0.20260908.0 (default: each keeps its own; the upgrade is then a cairn.yaml or cairn change)")
	cmd.Flags().StringVar(&f.sites, "sites", "", "comma-separated sites to upgrade (default: all)")
	cmd.Flags().BoolVar(&f.rotate, "rotate-internal", false, rotateInternalHelp)
	cmd.Flags().DurationVar(&f.canary, "canary", 10*time.Minute, "how long each upgraded site is watched by deep probes before the next one starts")
	cmd.Flags().BoolVar(&f.canaryTraffic, "canary-traffic", false, "also move the ACME name to each upgraded site for its canary period")
	cmd.Flags().IntVar(&f.gate, "gate", 0, "consecutive successful deep-probe rounds a site needs on the new release (default failover.upAfter)")
	cmd.Flags().DurationVar(&f.gateTimeout, "gate-timeout", 5*time.Minute, "how long a site may take to pass its gate")
	return cmd
}

func newUpgradeAbandonCmd(uo *upgradeOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "abandon",
		Short: "End a half-done upgrade: roll the site in progress back and undrain it; finished sites keep the new release",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := uo.options(cmd)
			if err != nil {
				return err
			}
			st, err := upgrade.Abandon(cmd.Context(), o)
			uo.print(cmd, st)
			return err
		},
	}
}

func newUpgradeStatusCmd(uo *upgradeOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the recorded upgrade: each site's phase, release before and after, and times",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := uo.stateFile(cmd)
			if err != nil {
				return err
			}
			st, err := upgrade.ReadState(path)
			if err != nil {
				return err
			}
			if st == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "no upgrade recorded")
				return nil
			}
			if uo.po.g.output == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printUpgrade(cmd.OutOrStdout(), st)
			return nil
		},
	}
}

func printUpgrade(w io.Writer, st *upgrade.State) {
	state := "in progress (re-run `cairn upgrade apply` to resume, or `cairn upgrade abandon`)"
	switch {
	case st.Abandoned:
		state = "abandoned " + st.Finished.Format(time.RFC3339)
	case !st.Finished.IsZero():
		state = fmt.Sprintf("finished in %s", st.Finished.Sub(st.Started).Round(time.Second))
	}
	to := st.To
	if to == "" {
		to = "each site's own Boulder release"
	}
	fmt.Fprintf(w, "upgrade to %s, started %s: %s\n", to, st.Started.Format(time.RFC3339), state)
	for i, name := range st.Order {
		ss := st.Sites[name]
		fmt.Fprintf(w, "%d. site %s: %s", i+1, name, ss.Phase)
		if ss.FromGeneration != "" {
			fmt.Fprintf(w, " (Boulder %s → %s, bundle %s → %s)", ss.FromBoulder, ss.ToBoulder, ss.FromGeneration, ss.ToGeneration)
		}
		fmt.Fprintln(w)
		if len(ss.Phases) > 0 {
			t0 := ss.Phases[0].At
			var parts []string
			for _, e := range ss.Phases {
				parts = append(parts, fmt.Sprintf("%s +%.1fs", e.Phase, e.At.Sub(t0).Seconds()))
			}
			fmt.Fprintf(w, "   %s\n", strings.Join(parts, ", "))
		}
		if ss.Error != "" {
			fmt.Fprintf(w, "   error: %s\n", ss.Error)
		}
	}
}

func printPlan(w io.Writer, plans []upgrade.SitePlan, showDiff bool) {
	changes := 0
	for _, p := range plans {
		role := "standby"
		if p.Active {
			role = "active: drained first, the name moves away"
		}
		if p.Unchanged() {
			fmt.Fprintf(w, "%d. site %s (%s): unchanged (Boulder %s, bundle %s)\n", p.Step, p.Site, role, p.FromBoulder, p.FromGeneration)
			continue
		}
		changes++
		fmt.Fprintf(w, "%d. site %s (%s): Boulder %s → %s, bundle %s → %s\n", p.Step, p.Site, role, p.FromBoulder, p.ToBoulder, p.FromGeneration, p.ToGeneration)
		if len(p.Changed) > 0 {
			fmt.Fprintf(w, "   files: %s\n", strings.Join(p.Changed, ", "))
		}
		if len(p.Restart) > 0 {
			fmt.Fprintf(w, "   restart: %s\n", strings.Join(p.Restart, ", "))
		}
		if showDiff && p.Diff != "" {
			fmt.Fprintln(w, indent(p.Diff, "   "))
		}
	}
	fmt.Fprintf(w, "%d of %d sites would change; nothing was changed\n", changes, len(plans))
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pre)
}
