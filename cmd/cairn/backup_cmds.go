package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/revocation"
)

func newBackupCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "The off-site backups of the sites' databases and CRLs that a lost site is rebuilt from (docs/backup.md)"}
	nowPO, listPO := &provisionOptions{g: g}, &provisionOptions{g: g}
	now := &cobra.Command{
		Use:   "now [SITE...]",
		Short: "Back up the named sites (default: every site) now, through their agents, into backup.dir; archive their CRLs",
		Long: `Back up each named site's database now, through its agent (the
controller's credential, as the controller does every backup.every), into
backup.dir next to the spec, and archive the site's newest CRLs there.
The leading controller does the same on its own schedule. With --infra,
on the controller's host of the provisioned cluster, as its user, into
its store (where cairn provision apply and cairn site rebuild look).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, names, err := g.specAndSites(args)
			if err != nil {
				return err
			}
			if spec.Backup.Off {
				return errors.New("backup.off is true in the spec: the agents refuse backups")
			}
			if nowPO.o.Infra != "" {
				return onControllerHost(cmd, nowPO, append([]string{"backup", "now"}, args...))
			}
			return backupNow(cmd.Context(), cmd.OutOrStdout(), spec, names)
		},
	}
	list := &cobra.Command{
		Use:   "list [SITE...]",
		Short: "List the backups in backup.dir (with --infra: the provisioned controller host's), newest first, each checked against its manifest",
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, names, err := g.specAndSites(args)
			if err != nil {
				return err
			}
			if listPO.o.Infra != "" {
				return onControllerHost(cmd, listPO, append([]string{"-o", g.output, "backup", "list"}, args...))
			}
			return backupList(cmd.OutOrStdout(), spec, names, g.output == "json")
		},
	}
	nowPO.addFlags(now, "")
	listPO.addFlags(list, "")
	cmd.AddCommand(now, list)
	return cmd
}

// onControllerHost runs a backup command on the provisioned cluster's
// controller host (where its store is) and prints what it printed.
func onControllerHost(cmd *cobra.Command, po *provisionOptions, args []string) error {
	p, err := po.provisioner(cmd)
	if err != nil {
		return err
	}
	d, err := p.DrillInfra(cmd.Context())
	if err != nil {
		return err
	}
	out, err := d.ControllerCLI(cmd.Context(), args...)
	fmt.Fprint(cmd.OutOrStdout(), out)
	return err
}

// specAndSites loads the spec and checks the site arguments.
func (g *globals) specAndSites(args []string) (*cluster.Spec, []string, error) {
	spec, err := cluster.Load(g.specPath())
	if err != nil {
		return nil, nil, err
	}
	names, err := siteArgs(spec, args)
	return spec, names, err
}

// siteArgs is the named sites, or every site.
func siteArgs(spec *cluster.Spec, args []string) ([]string, error) {
	if len(args) == 0 {
		return spec.SiteNames(), nil
	}
	for _, a := range args {
		if !slices.Contains(spec.SiteNames(), a) {
			return nil, fmt.Errorf("site %q: not in the spec; use one of %s", cluster.Excerpt(a), strings.Join(spec.SiteNames(), ", "))
		}
	}
	return args, nil
}

func backupStore(spec *cluster.Spec) backup.Store {
	return backup.Store{Dir: spec.Path(spec.Backup.Dir)}
}

func backupNow(ctx context.Context, w io.Writer, spec *cluster.Spec, names []string) error {
	targets, err := healthcheck.SiteTargets(spec)
	if err != nil {
		return err
	}
	agents := revocation.Agents{Spec: spec}
	store := backupStore(spec)
	var errs []error
	for _, name := range names {
		m, err := store.Take(ctx, name, func(ctx context.Context, w io.Writer) error { return agents.Backup(ctx, name, w) })
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := store.Prune(name, spec.Backup.Keep); err != nil {
			errs = append(errs, err)
		}
		archived := 0
		for _, t := range targets {
			if t.Site != name {
				continue
			}
			crls, err := healthcheck.SiteCRLs(ctx, t)
			if err != nil {
				fmt.Fprintf(w, "site %s: some CRLs not archived: %s\n", name, cluster.FirstLine(err.Error()))
			}
			for _, c := range crls {
				if _, err := store.ArchiveCRL(name, c.URL, c.DER, c.CRL); err != nil {
					errs = append(errs, err)
				} else {
					archived++
				}
			}
		}
		fmt.Fprintf(w, "site %s: %s, %d bytes in %.1fs; %d CRL shards archived\n", name, store.Path(m), m.Bytes, m.Seconds, archived)
	}
	return errors.Join(errs...)
}

func backupList(w io.Writer, spec *cluster.Spec, names []string, asJSON bool) error {
	store := backupStore(spec)
	type listed struct {
		backup.Manifest
		OK    bool   `json:"ok"`
		Error string `json:"error,omitempty"`
	}
	all := []listed{}
	for _, name := range names {
		ms, err := store.List(name)
		if err != nil {
			return err
		}
		for _, m := range ms {
			l := listed{Manifest: m, OK: true}
			if err := store.Verify(m); err != nil {
				l.OK, l.Error = false, cluster.FirstLine(err.Error())
			}
			all = append(all, l)
		}
	}
	if asJSON {
		return printJSON(w, all)
	}
	if len(all) == 0 {
		fmt.Fprintf(w, "no backups in %s (the controller takes one per site every %s; cairn backup now takes one at once)\n", store.Dir, spec.Backup.Every.Days())
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tTAKEN\tAGE\tBYTES\tFILE\tCHECK")
	for _, l := range all {
		check := "ok"
		if !l.OK {
			check = "DAMAGED: " + l.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", l.Site, l.Taken.UTC().Format(time.RFC3339), time.Since(l.Taken).Round(time.Second), l.Bytes, l.File, check)
	}
	return tw.Flush()
}

func newSiteRebuildCmd(g *globals) *cobra.Command {
	var force bool
	po := &provisionOptions{g: g}
	cmd := &cobra.Command{
		Use:   "rebuild SITE",
		Short: "Bring a site whose host and disk are lost back from the newest backup (the lab's sites, or with --infra provisioned systemd hosts)",
		Long: `Bring back a site whose host and disk are gone, from the newest backup
(docs/backup.md): its bundle rendered again, the backup restored into its
empty datadir, its binary log continued where its peers stand, every
serial of its archived CRLs revoked again, accounts created after the
backup copied back from its peers (cairn accounts seed), the site
started, and the failover controller told, so it applies its revocation
journal there again and admits the site like any returning site. Every
peer's database must answer. Without a backup it refuses: then revoke the
site's issuers (cairn pki revoke-site) and give it a new generation.

Without --infra it rebuilds a lab site (cairn lab destroy-site simulates
the loss) from backup.dir. With --infra nspawn|aws|existing it rebuilds a
provisioned site: the hosts made (a destroyed one anew), the site's bundle
installed with its units held, the controller host's newest backup of it
restored there, then the same reconciliation, and every unit started.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := g.loadSpec()
			if err != nil {
				return err
			}
			if _, err := siteArgs(spec, args); err != nil {
				return err
			}
			ctrl := &failover.Client{Spec: spec}
			restored := func(ctx context.Context, site string) error {
				n, err := ctrl.Restored(ctx, site)
				if errors.Is(err, failover.ErrNoController) {
					fmt.Fprintf(cmd.ErrOrStderr(), "  no controller answers: nothing to tell (%v)\n", err)
					return nil
				}
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "  the controller applies %d journaled revocations of %s again\n", n, site)
				}
				return err
			}
			rb, cleanup, err := siteRebuild(cmd, po, args[0], restored)
			if err != nil || rb == nil {
				return err
			}
			defer cleanup()
			rep, err := rb.Run(cmd.Context(), force)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "site %s rebuilt from the backup of %s (%s old): restore %.1fs, %d revocations re-applied from %d archived CRL serials, %d accounts copied back, CRLs published anew %.1fs after its start began, total %.1fs\n",
				rep.Site, rep.Backup.Taken.UTC().Format(time.RFC3339), rep.BackupAge.Round(time.Second), rep.RestoreTime.Seconds(), rep.Reapplied, rep.CRLSerials, rep.Accounts, rep.CRLsAfter.Seconds(), rep.Total.Seconds())
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "the site's datadir still holds a database: move it aside and restore anyway")
	po.addFlags(cmd, "")
	return cmd
}

// siteRebuild is the rebuild of a lab site, or with --infra of a
// provisioned one, and what removes its temporary files. On a cluster
// whose operator's vantage is elsewhere (nspawn's switch namespace) the
// command runs again from there: a nil rebuild (and its error) then
// means it ran.
func siteRebuild(cmd *cobra.Command, po *provisionOptions, name string, restored func(context.Context, string) error) (*backup.Rebuild, func(), error) {
	if po.o.Infra == "" {
		l, err := po.g.lab(false, "")
		if err != nil {
			return nil, nil, err
		}
		rb, err := l.Rebuild(name, restored, cmd.ErrOrStderr())
		return rb, func() {}, err
	}
	p, err := po.provisioner(cmd)
	if err != nil {
		return nil, nil, err
	}
	if ran, err := runFromOperator(cmd, po, p); ran {
		return nil, nil, err
	}
	return p.Rebuild(cmd.Context(), name, restored, cmd.ErrOrStderr())
}
