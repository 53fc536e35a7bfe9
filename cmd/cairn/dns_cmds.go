package main

import (
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/ssupolicy"
	"github.com/cairn-pki/cairn/site"
)

func newDNSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "dns", Short: "The cluster DNS: per-client TSIG keys for DNS-01"}
	key := &cobra.Command{Use: "key", Short: "Per-client TSIG keys: each may write only _acme-challenge.<its name> TXT"}
	key.AddCommand(newDNSKeyAddCmd(g), newDNSKeyListCmd(g), newDNSKeyRemoveCmd(g))
	cmd.AddCommand(key, newDNSUpdatePolicyCmd())
	return cmd
}

// applyNote says how a key change reaches the primary DNS server.
const applyNote = "the primary DNS server applies it at the next render: `cairn lab up` (the lab) or `cairn provision apply`"

func newDNSKeyAddCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "add --name HOST",
		Short: "Make a TSIG key (0600) that may write only the DNS-01 record _acme-challenge.HOST",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := cluster.Load(g.specPath())
			if err != nil {
				return err
			}
			k, err := site.AddClientKey(spec, name)
			if err != nil {
				return fmt.Errorf("--name %w", err)
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), k)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: key %s may write only %s TXT\n%s\n", k.File, k.Key.Name, k.Record(), applyNote)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the host name the key proves (in acme.zone, or the zone itself)")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newDNSKeyListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the per-client TSIG keys and the record each may write",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := cluster.Load(g.specPath())
			if err != nil {
				return err
			}
			keys, err := site.ClientKeys(spec)
			if err != nil {
				return err
			}
			if g.output == "json" {
				if keys == nil {
					keys = []site.ClientKey{}
				}
				return printJSON(cmd.OutOrStdout(), keys)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tMAY WRITE (TXT)\tKEY FILE")
			for _, k := range keys {
				fmt.Fprintf(w, "%s\t%s\t%s\n", k.Name, k.Record(), k.File)
			}
			return w.Flush()
		},
	}
}

func newDNSKeyRemoveCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "remove --name HOST",
		Short: "Delete the TSIG key of HOST",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := cluster.Load(g.specPath())
			if err != nil {
				return err
			}
			if err := site.RemoveClientKey(spec, name); err != nil {
				return fmt.Errorf("--name %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed the key of %s; %s\n", name, applyNote)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the host name whose key to delete")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newDNSUpdatePolicyCmd() *cobra.Command {
	var p ssupolicy.Policy
	var socket string
	cmd := &cobra.Command{
		Use:    "update-policy --socket PATH --zone ZONE --key NAME",
		Short:  "Answer BIND's update-policy \"external\" rule: the clients' shared key may write only _acme-challenge TXT records (started with the cluster DNS)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if p.Zone == "" || p.Key == "" || socket == "" {
				return fmt.Errorf("--socket, --zone and --key are required (the cluster bundle passes them)")
			}
			ln, err := ssupolicy.Listen(socket)
			if err != nil {
				return fmt.Errorf("--socket: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			log.Info("update-policy server listening", "socket", socket, "zone", p.Zone, "key", p.Key)
			return ssupolicy.Serve(cmd.Context(), ln, p, log)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "Unix socket named asks (update-policy external rule)")
	cmd.Flags().StringVar(&p.Zone, "zone", "", "the cluster zone")
	cmd.Flags().StringVar(&p.Key, "key", "", "the clients' shared TSIG key name")
	return cmd
}
