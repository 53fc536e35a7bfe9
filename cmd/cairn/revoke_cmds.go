package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/revocation"
)

func newRevokeCmd(g *globals) *cobra.Command {
	var certFile, serial, reason string
	cmd := &cobra.Command{
		Use:   "revoke (--cert FILE | --serial HEX) [--reason R]",
		Short: "Revoke a certificate of the cluster at the site that issued it (found from the serial prefix)",
		Long: `Revoke a certificate of the cluster at the site that issued it: the serial's
first byte is the issuing site's serialPrefix. The site revokes it with
Boulder's admin tool over its own mTLS, and lists it in its next CRL
(within the crl-updater period, 5 minutes). Only the issuing site can:
no other site holds the certificate or may sign its CRLs.

Runs where the sites' rendered bundles are (the lab).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (certFile == "") == (serial == "") {
				return errors.New("give exactly one of --cert FILE and --serial HEX")
			}
			if err := revocation.CheckReason(reason); err != nil {
				return err
			}
			spec, err := cluster.Load(g.specPath())
			if err != nil {
				return err
			}
			var s string
			if certFile != "" {
				s, err = revocation.SerialOfCert(certFile)
			} else {
				s, err = revocation.ParseSerial(serial)
			}
			if err != nil {
				return err
			}
			site, err := revocation.Route(spec, s)
			if err != nil {
				return err
			}
			bins, err := boulderbin.Ensure(cmd.Context(), os.Stderr, "admin")
			if err != nil {
				return err
			}
			a := revocation.Admin{Binary: bins["admin"], Config: func(name string) string { return spec.Path(filepath.Join("sites", name, "etc", "admin.json")) }}
			switch err := a.Revoke(cmd.Context(), site, s, reason); {
			case errors.Is(err, revocation.ErrAlreadyRevoked):
				fmt.Fprintf(cmd.OutOrStdout(), "%s was already revoked at site %s\n", s, site)
			case err != nil:
				return err
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "revoked %s at site %s (%s); it is in site %s's CRL within 5 minutes\n", s, site, reason, site)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file of the certificate to revoke")
	cmd.Flags().StringVar(&serial, "serial", "", "serial of the certificate to revoke, in hex")
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "CRL reason: unspecified, keyCompromise, superseded, cessationOfOperation or privilegeWithdrawn")
	return cmd
}
