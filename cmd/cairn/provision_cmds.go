package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/provision"
)

func newProvisionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "provision", Short: "Bring sites up on separate hosts (Terraform + Ansible)"}
	var h provision.NSHost
	var sw provision.NSSwitch
	var addr, gateway string
	var local []string
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
	cmd.AddCommand(host, initCmd)
	return cmd
}
