package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/provision"
)

// nspawnFlags are what the nspawn host subcommands share.
type nspawnFlags struct {
	nsHostFlags
	network, cache, mirror string
	machine, image, netns  string // run's
}

// host is the nspawn host the flags name (up's address flags checked).
func (f *nspawnFlags) host() (provision.NspawnHost, error) {
	if err := f.parse(); err != nil {
		return provision.NspawnHost{}, err
	}
	n, err := netip.ParsePrefix(f.network)
	if err != nil || n.Addr().IsLoopback() {
		return provision.NspawnHost{}, fmt.Errorf("--network %q: give the hosts' network, a block that is not loopback, e.g. 10.78.0.0/16", f.network)
	}
	f.sw.Bits = n.Bits()
	return provision.NspawnHost{Cluster: f.h.Cluster, Name: f.h.Name, Address: f.h.Address, Network: n.Masked(),
		Extra: f.h.Extra, Local: f.h.Local, StateDir: f.h.StateDir}, nil
}

// newProvisionNspawnCmd is `provision nspawn`: the systemd hosts of the
// nspawn infrastructure (terraform/nspawn runs these).
func newProvisionNspawnCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nspawn", Short: "Debian 12 hosts with systemd as PID 1 for --infra nspawn (terraform/nspawn runs these)"}
	f := &nspawnFlags{}
	up := &cobra.Command{
		Use:   "up",
		Short: "Boot an nspawn host (idempotent): cached root image, overlay, host0 on the cluster bridge; waits for systemd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := f.host()
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			im := provision.NspawnImage{Cache: f.cache, Mirror: f.mirror, Log: cmd.ErrOrStderr()}
			if h.Image, err = im.Ensure(cmd.Context()); err != nil {
				return err
			}
			if err := f.sw.Up(cmd.Context()); err != nil {
				return err
			}
			if err := h.Up(cmd.Context(), f.sw, self); err != nil {
				// Nothing half-made: Terraform runs no destroy
				// provisioner for a resource whose create failed.
				h.Down(context.WithoutCancel(cmd.Context()))
				return err
			}
			pid, _ := h.LeaderPID()
			fmt.Fprintf(cmd.OutOrStdout(), "host %s up: machine %s, address %s, systemd pid %d\n", h.Name, h.Machine(), h.Address, pid)
			return nil
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Shut an nspawn host down and remove it: processes, cgroups, overlay, state (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.h.Cluster == "" || f.h.Name == "" || f.h.StateDir == "" {
				return fmt.Errorf("--cluster, --name and --state are required")
			}
			return provision.NspawnHost{Cluster: f.h.Cluster, Name: f.h.Name, StateDir: f.h.StateDir}.Down(cmd.Context())
		},
	}
	for _, c := range []*cobra.Command{up, down} {
		c.Flags().StringVar(&f.h.Cluster, "cluster", "", "cluster prefix of the names")
		c.Flags().StringVar(&f.h.Name, "name", "", "host name")
		c.Flags().StringVar(&f.h.StateDir, "state", "", "the host's state directory (overlay upper, launcher PID, console)")
	}
	up.Flags().StringVar(&f.addr, "address", "", "the host's address on the cluster bridge")
	up.Flags().StringVar(&f.network, "network", "", "the hosts' network, e.g. 10.78.0.0/16")
	up.Flags().StringVar(&f.gateway, "gateway", "", "the operator's address on the bridge (in the switch namespace)")
	up.Flags().StringSliceVar(&f.extra, "extra", nil, "further address others reach (repeatable)")
	up.Flags().StringSliceVar(&f.local, "local", nil, "prefix local to the host (repeatable), e.g. a site's service network")
	up.Flags().StringVar(&f.cache, "image-cache", "", "directory of the cached root filesystem")
	up.Flags().StringVar(&f.mirror, "mirror", "", "Debian mirror for the root filesystem (default: apt's)")
	run := &cobra.Command{
		Use:    "run",
		Short:  "The launcher of an nspawn host (started by nspawn up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return provision.NspawnRun(f.h.StateDir, f.machine, f.image, f.netns)
		},
	}
	run.Flags().StringVar(&f.h.StateDir, "state", "", "state directory")
	run.Flags().StringVar(&f.machine, "machine", "", "machine name")
	run.Flags().StringVar(&f.image, "image", "", "the cached root filesystem (overlay lower)")
	run.Flags().StringVar(&f.netns, "netns", "", "the switch namespace holding the bridge")
	cmd.AddCommand(up, down, run, newSwitchDownCmd(&f.nsHostFlags))
	return cmd
}
