package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
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

The request goes through the failover controller (admin token), which
keeps it in its etcd journal: a site that is down gets it when it is back,
and may not become the active site before the serial is in its CRL.
` + "`cairn revoke status`" + ` lists every request. Without a controller it revokes
directly (the site must be up). Revoking needs the site's rendered bundle
on the controller's host (the lab).`,
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
			var s, spki string
			if certFile != "" {
				c, err := revocation.ReadCert(certFile)
				if err != nil {
					return err
				}
				s, spki = revocation.Serial(c), revocation.SPKIHash(c)
			} else if s, err = revocation.ParseSerial(serial); err != nil {
				return err
			}
			site, err := revocation.Route(spec, s)
			if err != nil {
				return err
			}
			var e revocation.Entry
			path := "/api/revoke?serial=" + url.QueryEscape(s) + "&reason=" + url.QueryEscape(reason)
			if reason == "keyCompromise" {
				if spki == "" {
					fmt.Fprintln(cmd.ErrOrStderr(), "cairn: with --serial only the issuing site blocks the key; give --cert to block it at every site")
				} else {
					path += "&spki=" + spki
				}
			}
			if err := g.controllerCall(cmd.Context(), http.MethodPost, path, &e); err != nil {
				if !errors.Is(err, errNoController) {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "cairn: %v\ncairn: revoking directly at site %s (not journaled)\n", err, site)
				return revokeDirectly(cmd, spec, site, s, reason)
			}
			printEntry(cmd.OutOrStdout(), e)
			return nil
		},
	}
	cmd.AddCommand(newRevokeStatusCmd(g))
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM file of the certificate to revoke")
	cmd.Flags().StringVar(&serial, "serial", "", "serial of the certificate to revoke, in hex")
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "CRL reason: unspecified, keyCompromise, superseded, cessationOfOperation or privilegeWithdrawn")
	return cmd
}

func revokeDirectly(cmd *cobra.Command, spec *cluster.Spec, site, serial, reason string) error {
	switch err := (revocation.Agents{Spec: spec}).Revoke(cmd.Context(), site, serial, reason); {
	case errors.Is(err, revocation.ErrAlreadyRevoked):
		fmt.Fprintf(cmd.OutOrStdout(), "%s was already revoked at site %s\n", serial, site)
	case err != nil:
		return err
	default:
		fmt.Fprintf(cmd.OutOrStdout(), "revoked %s at site %s (%s); it is in site %s's CRL within 5 minutes\n", serial, site, reason, site)
	}
	return nil
}

func printEntry(w io.Writer, e revocation.Entry) {
	switch e.State() {
	case "pending":
		fmt.Fprintf(w, "%s: pending at site %s (%s): %s; journaled, applied when the site answers\n", e.Serial, e.Site, e.Reason, e.LastError)
	case "revoked":
		fmt.Fprintf(w, "revoked %s at site %s (%s); it is in the site's CRL within 5 minutes (cairn revoke status)\n", e.Serial, e.Site, e.Reason)
	default:
		fmt.Fprintf(w, "%s: revoked at site %s, in its CRL since %s\n", e.Serial, e.Site, e.InCRLAt.UTC().Format(time.RFC3339))
	}
}

func newRevokeStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Every revocation request: pending, revoked at its site, or in its CRL (and when)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var es []revocation.Entry
			if err := g.controllerCall(cmd.Context(), http.MethodGet, "/api/revocations", &es); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), es)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSITE\tREASON\tSTATE\tREQUESTED\tREVOKED\tIN CRL\tLAST ERROR")
			ts := func(t time.Time) string {
				if t.IsZero() {
					return "-"
				}
				return t.UTC().Format(time.RFC3339)
			}
			for _, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Serial, e.Site, e.Reason, e.State(), ts(e.RequestedAt), ts(e.AppliedAt), ts(e.InCRLAt), e.LastError)
			}
			return tw.Flush()
		},
	}
}
