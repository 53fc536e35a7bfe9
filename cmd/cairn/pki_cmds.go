package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/boulderbin"
)

func newPKICmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "The cluster PKI: offline root, per-site intermediates, root CRL",
	}
	cmd.AddCommand(
		pkiChildCmd("sign-infra", "Sign one infrastructure certificate in its token (a SignRequest on stdin; run by cairn itself)", intermediates.SignFromStdin),
		pkiChildCmd("token", "Find or create one PKCS#11 token (a TokenRequest on stdin; run by cairn itself)", intermediates.TokenFromStdin),
		&cobra.Command{
			Use:   "init",
			Short: "Create the root, every site's ECDSA and RSA intermediates and the root CRL (only what is missing)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.withPKI(cmd.Context(), true, func(p *intermediates.PKI) error {
					start := time.Now()
					if err := p.Init(cmd.Context()); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "PKI ready in %.1fs; root certificate: %s\n", time.Since(start).Seconds(), p.RootCertFile())
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "List every certificate with its chain, expiry and revocation state",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.withPKI(cmd.Context(), false, func(p *intermediates.PKI) error {
					st, err := p.Status()
					if err != nil {
						return err
					}
					if g.output == "json" {
						return printJSON(cmd.OutOrStdout(), st)
					}
					printPKIStatus(cmd, st)
					return nil
				})
			},
		},
		newRevokeSiteCmd(g),
		&cobra.Command{
			Use:   "rotate SITE",
			Short: "Create a new generation of a site's intermediates; the old ones stay valid until they expire",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.withPKI(cmd.Context(), true, func(p *intermediates.PKI) error {
					gen, err := p.Rotate(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "site %s now issues from generation %d; re-render and restart the site to use it\n", args[0], gen)
					return nil
				})
			},
		},
	)
	return cmd
}

func newRevokeSiteCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke-site SITE",
		Short: "Have the root revoke every intermediate of SITE and publish a new root CRL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withPKI(cmd.Context(), true, func(p *intermediates.PKI) error {
				n, err := p.RevokeSite(cmd.Context(), args[0], reason)
				if err != nil {
					return err
				}
				if n == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "site %s: every intermediate is already revoked\n", args[0])
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "site %s: %d intermediates revoked (%s); publish the new root CRL %s\n",
					args[0], n, reasonOrDefault(reason), "public/root.crl")
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", intermediates.DefaultRevocationReason, fmt.Sprintf("revocation reason, one of %v", intermediates.RevocationReasons))
	return cmd
}

func reasonOrDefault(r string) string {
	if r == "" {
		return intermediates.DefaultRevocationReason
	}
	return r
}

// pkiChildCmd is a hidden command cairn runs as its own child to use a
// SoftHSM token with that token's configuration in its environment: a
// JSON request on stdin (secrets included), the answer on stdout.
func pkiChildCmd(use, short string, fn func(io.Reader, io.Writer) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Hidden: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return fn(cmd.InOrStdin(), cmd.OutOrStdout()) }}
}

// withPKI loads the spec, makes sure the pinned ceremony binary exists when
// the command signs anything, and opens the PKI under its lock.
func (g *globals) withPKI(ctx context.Context, signs bool, fn func(*intermediates.PKI) error) error {
	spec, err := g.loadSpec()
	if err != nil {
		return err
	}
	// SoftHSM tokens are found, created and used in children of this
	// executable (intermediates.Options.Signer).
	self, err := os.Executable()
	if err != nil {
		return err
	}
	opts := intermediates.Options{Log: os.Stderr, Signer: self}
	if signs {
		bins, err := boulderbin.Ensure(ctx, os.Stderr, "ceremony")
		if err != nil {
			return err
		}
		opts.Ceremony = bins["ceremony"]
	}
	p, unlock, err := intermediates.Open(spec, opts)
	if err != nil {
		return err
	}
	defer unlock()
	return fn(p)
}

func printPKIStatus(cmd *cobra.Command, st *intermediates.Status) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ROLE\tSITE\tGEN\tKEY\tSUBJECT\tSERIAL\tNOT AFTER\tDAYS\tSTATE")
	for _, c := range st.Certificates {
		state := "valid"
		switch {
		case c.Revoked:
			state = "REVOKED"
		case !c.ChainValid:
			state = "BROKEN CHAIN"
		case !c.Current:
			state = "valid (old generation)"
		}
		site, gen := c.Site, ""
		if site == "" {
			site = "-"
		}
		if c.Generation > 0 {
			gen = fmt.Sprint(c.Generation)
		}
		serial := c.Serial
		if len(serial) > 12 {
			serial = serial[:12] + "…"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Role, site, gen, c.KeyType, c.Subject, serial,
			c.NotAfter.Format(time.DateOnly), c.DaysLeft, state)
	}
	w.Flush()
	if !st.RootCRLNextUpdate.IsZero() {
		fmt.Fprintf(cmd.OutOrStdout(), "\nroot CRL #%d: %s (next update %s)\n", st.RootCRLNumber, st.RootCRL, st.RootCRLNextUpdate.Format(time.DateOnly))
	}
	for _, warning := range st.Warnings {
		fmt.Fprintf(cmd.OutOrStdout(), "warning: %s\n", warning)
	}
}
