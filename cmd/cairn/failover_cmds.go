package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/failover"
)

// newFailoverCmd is `cairn failover`: the controller and its operator
// commands.
func newFailoverCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "failover", Short: "The controller that moves the ACME name to a healthy site"}
	cmd.AddCommand(newFailoverRunCmd(g), newFailoverStatusCmd(g), newFailoverPlanCmd(g), newFailoverMoveCmd(g),
		newFailoverDrainCmd(g), newFailoverUndrainCmd(g))
	return cmd
}

// newFailoverRunCmd is `failover run`: the controller itself.
func newFailoverRunCmd(g *globals) *cobra.Command {
	var id, historyFile string
	run := &cobra.Command{
		Use:   "run",
		Short: "Probe every site, decide, and move the ACME name through the DNS provider (serves the status page, JSON API and /metrics)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runController(cmd.Context(), id, historyFile)
		},
	}
	run.Flags().StringVar(&id, "id", failover.DefaultID(), "this controller's name in the epoch record")
	run.Flags().StringVar(&historyFile, "history", "", "probe history database (default var/probe-history.db next to the spec)")
	return run
}

// newFailoverStatusCmd is `failover status`.
func newFailoverStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Active site, each site's state, recent moves with reasons and propagation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st failover.Status
			if err := g.controllerCall(cmd.Context(), http.MethodGet, "/api/status", &st); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printFailoverStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
}

// newFailoverPlanCmd is `failover plan`.
func newFailoverPlanCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "plan",
		Short: "What the controller would do now (changes nothing)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var p struct {
				Intents []failover.Intent `json:"intents"`
			}
			if err := g.controllerCall(cmd.Context(), http.MethodGet, "/api/plan", &p); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), p)
			}
			if len(p.Intents) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to do: the active site is usable")
			}
			for _, in := range p.Intents {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s→%s: %s\n", in.Type, in.From, in.To, in.Reason)
			}
			return nil
		},
	}
}

// newFailoverMoveCmd is `failover move`.
func newFailoverMoveCmd(g *globals) *cobra.Command {
	var to string
	move := &cobra.Command{
		Use:   "move --to SITE",
		Short: "Point the ACME name at SITE now (it must be healthy; ignores the hold-down)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return fmt.Errorf("--to SITE is required")
			}
			return g.operatorCall(cmd, "/api/move?to="+to, to)
		},
	}
	move.Flags().StringVar(&to, "to", "", "target site")
	return move
}

// newFailoverDrainCmd is `failover drain`.
func newFailoverDrainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "drain SITE",
		Short: "Take SITE out of rotation (moves the name away if it is active)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.operatorCall(cmd, "/api/drain?site="+args[0], "")
		},
	}
}

// newFailoverUndrainCmd is `failover undrain`.
func newFailoverUndrainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "undrain SITE",
		Short: "Put SITE back into rotation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.operatorCall(cmd, "/api/undrain?site="+args[0], "")
		},
	}
}

func (g *globals) runController(ctx context.Context, id, historyFile string) error {
	spec, _, err := g.specForProbes()
	if err != nil {
		return err
	}
	d := &failover.Daemon{Spec: spec, ID: id, HistoryPath: historyPath(spec, historyFile), Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	return d.Run(ctx)
}

// errNoController: nothing answers at failover.listen.
var errNoController = failover.ErrNoController

func (g *globals) controllerCall(ctx context.Context, method, path string, out any) error {
	spec, _, err := g.specForProbes()
	if err != nil {
		return err
	}
	return (&failover.Client{Spec: spec}).Call(ctx, method, path, out)
}

func (g *globals) operatorCall(cmd *cobra.Command, path, wantActive string) error {
	spec, _, err := g.specForProbes()
	if err != nil {
		return err
	}
	st, err := (&failover.Client{Spec: spec}).Operate(cmd.Context(), path)
	if err != nil {
		return err
	}
	if wantActive != "" && st.Active != wantActive {
		return fmt.Errorf("the ACME name still points to %s (see `cairn failover status`)", st.Active)
	}
	if g.output == "json" {
		return printJSON(cmd.OutOrStdout(), st)
	}
	printFailoverStatus(cmd.OutOrStdout(), st)
	return nil
}

func printFailoverStatus(w io.Writer, st failover.Status) {
	role := "leader"
	if !st.Leading {
		role = "follower of " + st.Leader
		if st.Leader == "" {
			role = "no leader elected"
		}
	}
	fmt.Fprintf(w, "controller %s (%s), active site %s", st.Controller, role, st.Active)
	if !st.HoldUntil.IsZero() && time.Now().Before(st.HoldUntil) {
		fmt.Fprintf(w, " (hold-down until %s)", st.HoldUntil.Format(time.TimeOnly))
	}
	fmt.Fprintln(w)
	if st.Alert {
		fmt.Fprintln(w, "ALERT: no healthy site; the ACME name is left unchanged")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tSTATE\tSINCE\tPRIORITY\tADDRESS\tRELEASE\tNOTE")
	for _, s := range st.Sites {
		note := s.Reason
		if s.Drained {
			note = "drained. " + note
		}
		if s.NotReady != "" {
			note = "NOT READY, a last resort only (" + s.NotReady + "). " + note
		}
		if a := s.Accounts; a != nil && !a.OK {
			note = "ACCOUNT REPLICATION BROKEN (" + a.Detail + "; still issues, not failed over for this). " + note
		}
		mark := ""
		if s.Name == st.Active {
			mark = " *"
		}
		release := "-"
		if r := s.Release; r != nil {
			release = r.Boulder + " " + r.Bundle
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, mark, s.State, s.Since.Format(time.TimeOnly), s.Priority, s.Address, release, note)
	}
	tw.Flush()
	for _, f := range st.CRLFronts {
		if f.Withdrawn {
			fmt.Fprintf(w, "CRL front of %s (%s) withdrawn from the CRL names since %s: %s\n", f.Site, f.Address, f.Since.Format(time.TimeOnly), f.Reason)
		}
	}
	for _, v := range st.Views {
		fresh := "counts"
		if !v.Fresh {
			fresh = "stale, ignored"
		}
		fmt.Fprintf(w, "view of %s: %d observations, published %s ago (%s)\n", v.Controller, v.Observations, time.Since(v.Published).Round(time.Second), fresh)
	}
	for _, m := range st.Moves {
		fmt.Fprintf(w, "move %s %s→%s epoch %d (%s), update %.1f ms", m.At.Format(time.RFC3339), m.From, m.To, m.Epoch, m.Reason, m.CommitMS)
		for _, p := range m.Propagation {
			if p.Done {
				fmt.Fprintf(w, ", %s %.0f ms", p.Server, p.LagMS)
			} else {
				fmt.Fprintf(w, ", %s not yet", p.Server)
			}
		}
		fmt.Fprintln(w)
	}
}
