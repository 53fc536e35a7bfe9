package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/provision"
)

// newProvisionCmd is `cairn provision`: plan, apply and destroy, and the
// namespace hosts of the local infrastructure.
func newProvisionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "provision", Short: "Bring sites up on separate hosts (Terraform + Ansible)"}
	po := &provisionOptions{g: g}
	plan, apply, destroy := newProvisionPlanCmd(po), newProvisionApplyCmd(po), newProvisionDestroyCmd(po)
	for _, c := range []*cobra.Command{plan, apply, destroy} {
		po.addFlags(c, "local")
	}
	cmd.AddCommand(newProvisionHostCmd(), newHostInitCmd(), newProvisionNspawnCmd(), newProvisionClientCmd(g), plan, apply, destroy)
	return cmd
}

// nsHostFlags are what the host subcommands share: the namespace host and
// the cluster's bridge namespace, and up's address flags.
type nsHostFlags struct {
	h             provision.NSHost
	sw            provision.NSSwitch
	addr, gateway string
	local, extra  []string
	onlink        []string
}

// parse checks the flags of host up and fills in the host and the switch.
func (f *nsHostFlags) parse() error {
	h := &f.h
	if h.Cluster == "" || h.Name == "" || h.StateDir == "" {
		return fmt.Errorf("--cluster, --name and --state are required")
	}
	f.sw.Cluster = h.Cluster
	var err error
	if f.sw.Gateway, err = netip.ParseAddr(f.gateway); err != nil {
		return fmt.Errorf("--gateway %q: give the operator's IPv4 address on the bridge, e.g. 127.0.90.254", f.gateway)
	}
	if h.Address, err = netip.ParseAddr(f.addr); err != nil {
		return fmt.Errorf("--address %q: give the host's IPv4 address, e.g. 127.0.91.1", f.addr)
	}
	h.Extra = nil
	for _, e := range f.extra {
		a, err := netip.ParseAddr(e)
		if err != nil {
			return fmt.Errorf("--extra %q: give an IPv4 address", e)
		}
		h.Extra = append(h.Extra, a)
	}
	h.Local = nil
	for _, l := range f.local {
		p, err := netip.ParsePrefix(l)
		if err != nil {
			return fmt.Errorf("--local %q: give a prefix like 127.0.91.0/24", l)
		}
		h.Local = append(h.Local, p)
	}
	h.OnLink = nil
	for _, l := range f.onlink {
		p, err := netip.ParsePrefix(l)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("--onlink %q: give an IPv4 prefix like 10.79.83.0/24", cluster.Excerpt(l))
		}
		h.OnLink = append(h.OnLink, p)
	}
	return nil
}

// newProvisionHostCmd is `provision host`: up, down and switch-down.
func newProvisionHostCmd() *cobra.Command {
	host := &cobra.Command{Use: "host", Short: "Namespace hosts of the local infrastructure (terraform/local runs these)"}
	f := &nsHostFlags{}
	up, down := newHostUpCmd(f), newHostDownCmd(f)
	for _, c := range []*cobra.Command{up, down} {
		c.Flags().StringVar(&f.h.Cluster, "cluster", "", "cluster prefix of the namespace names")
		c.Flags().StringVar(&f.h.Name, "name", "", "host name")
		c.Flags().StringVar(&f.h.StateDir, "state", "", "the host's state directory (overlay upper, anchor PID)")
	}
	up.Flags().StringVar(&f.addr, "address", "", "the host's address on the cluster bridge")
	up.Flags().StringVar(&f.gateway, "gateway", "", "the operator's address on the bridge (in the switch namespace)")
	up.Flags().StringSliceVar(&f.extra, "extra", nil, "further address others reach (repeatable)")
	up.Flags().StringSliceVar(&f.local, "local", nil, "prefix local to the host (repeatable), e.g. a site's service network")
	up.Flags().StringSliceVar(&f.onlink, "onlink", nil, "further network on the bridge the host reaches from its address (repeatable), e.g. its clients' network")
	host.AddCommand(up, down, newSwitchDownCmd(f))
	return host
}

// newHostUpCmd is `provision host up`.
func newHostUpCmd(f *nsHostFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Create a namespace host (idempotent): netns on the cluster bridge, overlay root, anchor process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.parse(); err != nil {
				return err
			}
			if err := f.sw.Up(cmd.Context()); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if err := f.h.Up(cmd.Context(), f.sw, self); err != nil {
				// Nothing half-made: Terraform runs no destroy
				// provisioner for a resource whose create failed.
				f.h.Down(context.WithoutCancel(cmd.Context()))
				return err
			}
			pid, _ := f.h.AnchorPID()
			fmt.Fprintf(cmd.OutOrStdout(), "host %s up: netns %s, address %s, anchor pid %d\n", f.h.Name, f.h.Netns(), f.h.Address, pid)
			return nil
		},
	}
}

// newHostDownCmd is `provision host down`.
func newHostDownCmd(f *nsHostFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove a namespace host: its processes, mounts, netns and state (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.h.Cluster == "" || f.h.Name == "" || f.h.StateDir == "" {
				return fmt.Errorf("--cluster, --name and --state are required")
			}
			return f.h.Down(cmd.Context())
		},
	}
}

// newSwitchDownCmd is `provision host switch-down`.
func newSwitchDownCmd(f *nsHostFlags) *cobra.Command {
	switchDown := &cobra.Command{
		Use:   "switch-down",
		Short: "Remove the cluster's bridge namespace (after every host is down)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.sw.Cluster == "" {
				return fmt.Errorf("--cluster is required")
			}
			return f.sw.Down(cmd.Context())
		},
	}
	switchDown.Flags().StringVar(&f.sw.Cluster, "cluster", "", "cluster prefix of the namespace names")
	return switchDown
}

// newHostInitCmd is `provision host-init`, the hidden anchor of a
// namespace host.
func newHostInitCmd() *cobra.Command {
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
	return initCmd
}

// provisionOptions are the options plan, apply and destroy share.
type provisionOptions struct {
	g *globals
	o provision.Options
}

// addFlags adds the infrastructure flags to plan, apply or destroy (and,
// with no default infrastructure, to the upgrade and drill commands: the
// lab unless --infra names one).
func (po *provisionOptions) addFlags(c *cobra.Command, infra string) {
	o := &po.o
	what := "infrastructure: " + provision.InfrastructureNames() + " (local: namespace hosts here; nspawn: systemd hosts here; aws: --terraform-dir; existing: --inventory)"
	if infra == "" {
		what = "act on the cluster provisioned on this infrastructure (" + provision.InfrastructureNames() + ") instead of the lab"
	}
	c.Flags().StringVar(&o.Infra, "infra", infra, what)
	c.Flags().StringVar(&o.TerraformDir, "terraform-dir", "", "--infra aws: a root module composing terraform/aws/modules that outputs the contract")
	c.Flags().StringVar(&o.Inventory, "inventory", "", "--infra existing: the hosts as the output contract (sites, dns_servers), YAML or JSON")
	c.Flags().StringVar(&o.Gateway, "gateway", "", "--infra local, nspawn: the operator's address on the hosts' bridge (default 127.0.254.254; nspawn: the network's last address but one)")
	c.Flags().StringVar(&o.ImageCache, "image-cache", "", "--infra nspawn: where the hosts' root filesystem is cached (default ~/.cache/cairn/nspawn)")
	c.Flags().StringVar(&o.Mirror, "mirror", "", "--infra nspawn: the Debian mirror the root filesystem is made from (default: apt's)")
}

// provisioner is the provisioner of the spec named by -f.
func (po *provisionOptions) provisioner(cmd *cobra.Command) (*provision.Provisioner, error) {
	spec, err := po.g.loadSpec()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	po.o.Spec, po.o.Self, po.o.Log = spec, self, cmd.ErrOrStderr()
	return provision.New(po.o)
}

// newProvisionPlanCmd is `provision plan`.
func newProvisionPlanCmd(po *provisionOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "plan",
		Short: "Show what apply would change (terraform plan); changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := po.provisioner(cmd)
			if err != nil {
				return err
			}
			return p.Plan(cmd.Context())
		},
	}
}

// newProvisionApplyCmd is `provision apply`.
func newProvisionApplyCmd(po *provisionOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "apply",
		Short: "Make the hosts (Terraform), install every bundle (Ansible), check every site (directory + deep probe)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := po.provisioner(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := p.Apply(ctx)
			if res != nil {
				printApplyResult(cmd, po.g.output, res)
			}
			return err
		},
	}
}

// printApplyResult prints what apply did, as JSON or as text.
func printApplyResult(cmd *cobra.Command, output string, res *provision.Result) {
	if output == "json" {
		printJSON(cmd.OutOrStdout(), res)
		return
	}
	fmt.Fprintf(cmd.OutOrStdout(), "provisioned in %.1fs: terraform %.1fs, render %.1fs\n", res.Total.Seconds(), res.Terraform.Seconds(), res.Render.Seconds())
	for h, d := range res.Ansible {
		fmt.Fprintf(cmd.OutOrStdout(), "  ansible %-12s %.1fs\n", h, d.Seconds())
	}
	for s, c := range res.Checks {
		fmt.Fprintf(cmd.OutOrStdout(), "  check   %-12s %s\n", s, c)
	}
}

// newProvisionDestroyCmd is `provision destroy`.
func newProvisionDestroyCmd(po *provisionOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "destroy",
		Short: "Remove everything apply made (hosts, bundles, inventory, state); the PKI stays",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := po.provisioner(cmd)
			if err != nil {
				return err
			}
			return p.Destroy(cmd.Context())
		},
	}
}
