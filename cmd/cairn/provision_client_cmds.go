package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
)

// newProvisionClientCmd is `provision client`: client hosts of --infra
// local and nspawn, on an address range of their own (validation.allowedNetworks),
// where ACME clients answer HTTP-01 and TLS-ALPN-01.
func newProvisionClientCmd(g *globals) *cobra.Command {
	client := &cobra.Command{Use: "client", Short: "Client hosts of --infra local and nspawn (their own address range, in validation.allowedNetworks)"}
	po := &provisionOptions{g: g}
	var addr string
	up := &cobra.Command{
		Use:   "up NAME --address ADDR",
		Short: "Make a client host on the cluster's bridge (idempotent): the cluster DNS as its resolver, the cluster root in its trust store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := netip.ParseAddr(addr)
			if err != nil {
				return fmt.Errorf("--address %q: give the client's IPv4 address, inside validation.allowedNetworks, e.g. 10.79.83.50", cluster.Excerpt(addr))
			}
			p, err := po.provisioner(cmd)
			if err != nil {
				return err
			}
			h, err := p.ClientUp(cmd.Context(), args[0], a)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "client %s up: address %s (netns %s); run commands there with: cairn provision client exec %s -- CMD…\n", h.Name, h.Address, h.Netns(), h.Name)
			return nil
		},
	}
	up.Flags().StringVar(&addr, "address", "", "the client's address (IPv4, in validation.allowedNetworks, not the hosts' 127/8)")
	down := &cobra.Command{
		Use:   "down NAME",
		Short: "Remove a client host (idempotent)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := po.provisioner(cmd)
			if err != nil {
				return err
			}
			return p.ClientDown(cmd.Context(), args[0])
		},
	}
	execCmd := &cobra.Command{
		Use:   "exec NAME -- CMD…",
		Short: "Run CMD on a client host as its root (e.g. lego --http, certbot --standalone)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return errors.New("provision client exec: give the client's name, then -- and the command, e.g. exec web1 -- lego --http …")
			}
			p, err := po.provisioner(cmd)
			if err != nil {
				return err
			}
			c, err := p.ClientCommand(cmd.Context(), args[0], args[1:])
			if err != nil {
				return err
			}
			return runAsCaller(cmd, c)
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "The client hosts made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := po.provisioner(cmd)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), strings.Join(p.Clients(), "\n"))
			return nil
		},
	}
	for _, c := range []*cobra.Command{up, down, execCmd, list} {
		c.Flags().StringVar(&po.o.Infra, "infra", "local", "the infrastructure (client hosts exist on local and nspawn)")
	}
	client.AddCommand(up, down, execCmd, list)
	return client
}
