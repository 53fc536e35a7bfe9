package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/upgrade"
)

func newUpgradeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "upgrade", Short: "Roll a changed cairn.yaml or cairn release through the sites one at a time (plan for now: docs/upgrades.md)"}
	var showDiff bool
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show, site by site in upgrade order (standbys first, the active site last), what would change: Boulder version, bundle generation, files, processes to restart; changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			var st failover.Status
			active := ""
			if err := g.controllerCall(cmd.Context(), http.MethodGet, "/api/status", &st); err == nil {
				active = st.Active
			}
			self, _ := os.Executable()
			plans, err := upgrade.Plan(cmd.Context(), upgrade.Options{Spec: l.Spec, Bundle: l.SiteDir, Root: l.SiteDir, Lab: true, Active: active, Self: self, Log: os.Stderr})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), plans)
			}
			printPlan(cmd.OutOrStdout(), plans, showDiff)
			return nil
		},
	}
	plan.Flags().BoolVar(&showDiff, "diff", false, "also show the configuration diff of every site")
	cmd.AddCommand(plan)
	return cmd
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
