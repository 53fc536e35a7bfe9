// Command cairn stands up and runs a redundant private ACME CA made of
// independent Boulder sites. This file only wires commands; logic lives in
// the packages named in docs/architecture.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// globals are the flags every command has.
type globals struct {
	config        string
	configChanged bool // -f given explicitly
	output        string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ve cluster.Errors
		var ran ranElsewhere
		if errors.As(err, &ran) {
			os.Exit(int(ran)) // it said why itself
		}
		if errors.As(err, &ve) {
			for _, e := range ve {
				fmt.Fprintf(os.Stderr, "cairn: %s\n", e)
			}
		} else {
			fmt.Fprintf(os.Stderr, "cairn: %s\n", err)
		}
		os.Exit(1)
	}
}

// ranElsewhere is the exit status of this command run again elsewhere
// (from the operator's vantage), which printed its own errors.
type ranElsewhere int

func (r ranElsewhere) Error() string { return fmt.Sprintf("exit status %d", int(r)) }

// jsonCommands are the commands whose -o json prints JSON (and nothing
// else) on standard output; every other command refuses -o json.
var jsonCommands = map[string]bool{
	"accounts status": true, "backup list": true, "accounts seed": true, "accounts eab create": true, "accounts eab list": true, "accounts eab revoke": true,
	"dns key add": true, "dns key list": true, "drill list": true,
	"failover status": true, "failover plan": true, "failover move": true, "failover drain": true, "failover undrain": true,
	"lab up": true, "lab status": true, "pki status": true, "probe": true, "report availability": true, "report steps": true, "report samples": true,
	"provision apply": true, "revoke status": true, "validate": true,
	"upgrade plan": true, "upgrade apply": true, "upgrade abandon": true, "upgrade status": true,
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "cairn",
		Short:         "A redundant private ACME CA made of independent Boulder sites",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			g.configChanged = cmd.Flags().Changed("config")
			if g.output != "text" && g.output != "json" {
				return fmt.Errorf("-o %q: use text or json", g.output)
			}
			if path := strings.TrimPrefix(cmd.CommandPath(), "cairn "); g.output == "json" && !jsonCommands[path] {
				return fmt.Errorf("-o json: `cairn %s` has no JSON output; drop -o json", path)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&g.config, "config", "f", cluster.DefaultFile, "cluster spec file")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(newInitCmd(g), newValidateCmd(g), newPKICmd(g), newLabCmd(g), newProbeCmd(g), newReportCmd(g), newFailoverCmd(g), newDrillCmd(g), newProvisionCmd(g), newAccountsCmd(g), newRevokeCmd(g), newUpgradeCmd(g), newSiteCmd(g), newDNSCmd(g), newBackupCmd(g))
	return root
}

// loadSpec reads and validates the spec named by -f.
func (g *globals) loadSpec() (*cluster.Spec, error) {
	return cluster.Load(g.config)
}

// specPath is where lab, probe, report and failover commands find the
// spec: -f when given or when ./cairn.yaml exists, else the lab's
// ./cairn-lab/cairn.yaml.
func (g *globals) specPath() string {
	if g.configChanged || fsutil.Exists(g.config) {
		return g.config
	}
	return filepath.Join(DefaultLabDir, cluster.DefaultFile)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
