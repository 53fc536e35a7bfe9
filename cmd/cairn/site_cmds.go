package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/agent"
	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/site"
)

func newSiteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "site", Short: "Run a rendered bundle on this host (hosts without systemd)"}
	var bundle, bin string
	var interval time.Duration
	run := &cobra.Command{
		Use:   "run",
		Short: "Start a site's (or the cluster's) bundle in dependency order and supervise it until SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return hostrun.RunBundle(ctx, bundle, bin, interval, cmd.ErrOrStderr())
		},
	}
	run.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often exited processes are started again")
	step := &cobra.Command{
		Use:       "step db-init|db-load|publish-crls",
		Short:     "One start-up step of a site bundle, for systemd units (ExecStartPre/ExecStartPost)",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"db-init", "db-load", "publish-crls"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return hostrun.BundleStep(cmd.Context(), args[0], bundle, bin)
		},
	}
	super := newSiteSupervisorCmd(&bundle, &bin)
	agentCmd := newSiteAgentCmd()
	stopCmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the bundle's supervisor and every process of the bundle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return hostrun.StopBundle(bundle)
		},
	}
	restartCmd := &cobra.Command{
		Use:   "restart COMPONENT...",
		Short: "Restart some processes of a site bundle in dependency order with what the bundle says now (cairn upgrade apply on provisioned hosts)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return hostrun.RestartBundleComponents(cmd.Context(), bundle, bin, args, cmd.ErrOrStderr())
		},
	}
	sqlCmd := newSiteSQLCmd(&bundle)
	backupCmd := &cobra.Command{
		Use:   "backup-stream",
		Short: "Write a backup of the site's database to standard output (mariadb-backup, gzip); what the cairn-db-backup unit runs for the site agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := site.ReadBundle(bundle)
			if err != nil {
				return err
			}
			return hostrun.BackupDBHere(cmd.Context(), b.Database, cmd.OutOrStdout())
		},
	}
	restoreCmd := &cobra.Command{
		Use:   "restore-db",
		Short: "Restore a backup of the site's database (backup-stream's output, on standard input) into its empty datadir; print the backup's binary log position (cairn site rebuild runs it on a provisioned host)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := site.ReadBundle(bundle)
			if err != nil {
				return err
			}
			info, err := hostrun.RestoreDB(cmd.Context(), b.Database, cmd.InOrStdin())
			if err != nil {
				return err
			}
			// The systemd unit runs MariaDB as mysql: its files are mysql's.
			if err := hostrun.InitDBDir(cmd.Context(), b.Database, hostrun.SystemdDBUser); err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]string{"gtid": info.GTID})
		},
	}
	closeCmd := &cobra.Command{
		Use:   "close-connections",
		Short: "Have the site's ACME front end every kept connection after its next answer (the site is drained for a restart)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return hostrun.CloseConnections(cmd.Context(), bundle)
		},
	}
	for _, c := range []*cobra.Command{run, step, super, stopCmd, restartCmd, sqlCmd, closeCmd, backupCmd, restoreCmd} {
		c.Flags().StringVar(&bundle, "bundle", "/opt/cairn/site", "the rendered bundle (its bundle.json)")
		c.Flags().StringVar(&bin, "bin", "/opt/cairn/bin", "where boulder, ct-test-srv, s3-test-srv and cairn are installed")
	}
	cmd.AddCommand(run, step, super, agentCmd, stopCmd, restartCmd, sqlCmd, closeCmd, backupCmd, restoreCmd, newSiteRebuildCmd(g))
	return cmd
}

// newSiteSupervisorCmd is `cairn site supervisor`.
func newSiteSupervisorCmd(bundle, bin *string) *cobra.Command {
	var interval time.Duration
	var restart, keep bool
	super := &cobra.Command{
		Use:   "supervisor",
		Short: "Make sure `cairn site run` supervises the bundle (started detached; --restart: restart it) and wait until every process is ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			state, err := hostrun.Supervisor(cmd.Context(), *bundle, *bin, interval, restart && !keep, self)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "supervisor %s: %s\n", state, *bundle)
			return nil
		},
	}
	super.Flags().BoolVar(&restart, "restart", false, "restart the supervisor and every process (the bundle changed)")
	super.Flags().BoolVar(&keep, "keep", false, "leave a running supervisor as it is (the default)")
	super.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often exited processes are started again")
	return super
}

// newSiteAgentCmd is `cairn site agent`.
func newSiteAgentCmd() *cobra.Command {
	var agentConfig string
	agentCmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Serve the site agent: the controller's revoke, block-key and publish-crls at this site, over mutual TLS (a bundle process; docs/security.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := agent.Load(agentConfig)
			if err != nil {
				return err
			}
			b, err := hostrun.NewAgentBackend(c)
			if err != nil {
				return err
			}
			return agent.Serve(ctx, c, b, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
		},
	}
	agentCmd.Flags().StringVar(&agentConfig, "config", "", "etc/agent.json of the bundle")
	agentCmd.MarkFlagRequired("config")
	return agentCmd
}

// newSiteSQLCmd is `cairn site sql`.
func newSiteSQLCmd(bundle *string) *cobra.Command {
	sqlCmd := &cobra.Command{
		Use:   "sql",
		Short: "Run the SQL statements on standard input as the site's database administrator (kept out of the binary log); rows tab-separated",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 8<<20))
			if err != nil {
				return err
			}
			out, err := hostrun.BundleSQL(cmd.Context(), *bundle, string(in))
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	return sqlCmd
}
