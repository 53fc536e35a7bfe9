package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/provision"
)

func newProvisionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "provision", Short: "Bring sites up on separate hosts (Terraform + Ansible)"}
	var h provision.NSHost
	var sw provision.NSSwitch
	var addr, gateway string
	var local, extra []string
	parse := func() error {
		if h.Cluster == "" || h.Name == "" || h.StateDir == "" {
			return fmt.Errorf("--cluster, --name and --state are required")
		}
		sw.Cluster = h.Cluster
		var err error
		if sw.Gateway, err = netip.ParseAddr(gateway); err != nil {
			return fmt.Errorf("--gateway %q: give the operator's IPv4 address on the bridge, e.g. 127.0.90.254", gateway)
		}
		if h.Address, err = netip.ParseAddr(addr); err != nil {
			return fmt.Errorf("--address %q: give the host's IPv4 address, e.g. 127.0.91.1", addr)
		}
		h.Extra = nil
		for _, e := range extra {
			a, err := netip.ParseAddr(e)
			if err != nil {
				return fmt.Errorf("--extra %q: give an IPv4 address", e)
			}
			h.Extra = append(h.Extra, a)
		}
		h.Local = nil
		for _, l := range local {
			p, err := netip.ParsePrefix(l)
			if err != nil {
				return fmt.Errorf("--local %q: give a prefix like 127.0.91.0/24", l)
			}
			h.Local = append(h.Local, p)
		}
		return nil
	}
	host := &cobra.Command{Use: "host", Short: "Namespace hosts of the local infrastructure (terraform/local runs these)"}
	up := &cobra.Command{
		Use:   "up",
		Short: "Create a namespace host (idempotent): netns on the cluster bridge, overlay root, anchor process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := parse(); err != nil {
				return err
			}
			if err := sw.Up(cmd.Context()); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if err := h.Up(cmd.Context(), sw, self); err != nil {
				// Nothing half-made: Terraform runs no destroy
				// provisioner for a resource whose create failed.
				h.Down(context.WithoutCancel(cmd.Context()))
				return err
			}
			pid, _ := h.AnchorPID()
			fmt.Fprintf(cmd.OutOrStdout(), "host %s up: netns %s, address %s, anchor pid %d\n", h.Name, h.Netns(), h.Address, pid)
			return nil
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove a namespace host: its processes, mounts, netns and state (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if h.Cluster == "" || h.Name == "" || h.StateDir == "" {
				return fmt.Errorf("--cluster, --name and --state are required")
			}
			return h.Down(cmd.Context())
		},
	}
	for _, c := range []*cobra.Command{up, down} {
		c.Flags().StringVar(&h.Cluster, "cluster", "", "cluster prefix of the namespace names")
		c.Flags().StringVar(&h.Name, "name", "", "host name")
		c.Flags().StringVar(&h.StateDir, "state", "", "the host's state directory (overlay upper, anchor PID)")
	}
	up.Flags().StringVar(&addr, "address", "", "the host's address on the cluster bridge")
	up.Flags().StringVar(&gateway, "gateway", "", "the operator's address on the bridge (in the switch namespace)")
	up.Flags().StringSliceVar(&extra, "extra", nil, "further address others reach (repeatable)")
	up.Flags().StringSliceVar(&local, "local", nil, "prefix local to the host (repeatable), e.g. a site's service network")
	switchDown := &cobra.Command{
		Use:   "switch-down",
		Short: "Remove the cluster's bridge namespace (after every host is down)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if sw.Cluster == "" {
				return fmt.Errorf("--cluster is required")
			}
			return sw.Down(cmd.Context())
		},
	}
	switchDown.Flags().StringVar(&sw.Cluster, "cluster", "", "cluster prefix of the namespace names")
	var state, hostname string
	initCmd := &cobra.Command{
		Use:    "host-init",
		Short:  "The anchor of a namespace host (PID 1 of its namespaces; started by host up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return provision.HostInit(state, hostname)
		},
	}
	initCmd.Flags().StringVar(&state, "state", "", "state directory")
	initCmd.Flags().StringVar(&hostname, "hostname", "", "host name")
	host.AddCommand(up, down, switchDown)
	var o provision.Options
	prov := func(cmd *cobra.Command) (*provision.Provisioner, error) {
		spec, err := g.loadSpec()
		if err != nil {
			return nil, err
		}
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Spec, o.Self, o.Log = spec, self, cmd.ErrOrStderr()
		return provision.New(o)
	}
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show what apply would change (terraform plan); changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := prov(cmd)
			if err != nil {
				return err
			}
			return p.Plan(cmd.Context())
		},
	}
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Make the hosts (Terraform), install every bundle (Ansible), check every site (directory + deep probe)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := prov(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := p.Apply(ctx)
			if res != nil {
				if g.output == "json" {
					printJSON(cmd.OutOrStdout(), res)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "provisioned in %.1fs: terraform %.1fs, render %.1fs\n", res.Total.Seconds(), res.Terraform.Seconds(), res.Render.Seconds())
					for h, d := range res.Ansible {
						fmt.Fprintf(cmd.OutOrStdout(), "  ansible %-12s %.1fs\n", h, d.Seconds())
					}
					for s, c := range res.Checks {
						fmt.Fprintf(cmd.OutOrStdout(), "  check   %-12s %s\n", s, c)
					}
				}
			}
			return err
		},
	}
	destroy := &cobra.Command{
		Use:   "destroy",
		Short: "Remove everything apply made (hosts, bundles, inventory, state); the PKI stays",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := prov(cmd)
			if err != nil {
				return err
			}
			return p.Destroy(cmd.Context())
		},
	}
	for _, c := range []*cobra.Command{plan, apply, destroy} {
		c.Flags().StringVar(&o.Infra, "infra", "local", "infrastructure: "+provision.InfrastructureNames()+" (local: namespace hosts here; aws: --terraform-dir; existing: --inventory)")
		c.Flags().StringVar(&o.TerraformDir, "terraform-dir", "", "--infra aws: a root module composing terraform/aws/modules that outputs the contract")
		c.Flags().StringVar(&o.Inventory, "inventory", "", "--infra existing: the hosts as the output contract (sites, dns_servers), YAML or JSON")
		c.Flags().StringVar(&o.Gateway, "gateway", "127.0.254.254", "--infra local: the operator's address on the hosts' bridge")
	}
	cmd.AddCommand(host, initCmd, plan, apply, destroy)
	return cmd
}
