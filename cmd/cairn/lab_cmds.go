package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/lab"
)

// DefaultLabDir is where `cairn lab up` puts a lab when no cairn.yaml is
// given or found.
const DefaultLabDir = "cairn-lab"

func newLabCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "lab", Short: "Run the cluster on this machine: every site and the cluster DNS on loopback"}
	cmd.AddCommand(newLabUpCmd(g), newLabSuperviseCmd(g),
		newLabDownCmd(g), newLabStatusCmd(g), newLabLogsCmd(g), newLabExecCmd(g), newLabDestroySiteCmd(g))
	return cmd
}

func newLabExecCmd(g *globals) *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   "exec [--host NAME] -- CMD [ARG...]",
		Short: "Run a command as a client of the lab: the ACME name resolves through the cluster DNS, the lab root is trusted, lego's RFC2136_* are set; --host: on a client host of its own",
		Long: "Run a command as a client of the lab: the ACME name resolves through the cluster DNS, the lab root is trusted,\n" +
			"lego's RFC2136_* (and DNSUPDATE_*) are set.\n\n" +
			"With --host NAME the command runs on client host NAME: a network namespace of its own with an address in\n" +
			"lab.clientNetwork and NAME.<acme.zone> in the cluster DNS (CAIRN_LAB_HOST and CAIRN_LAB_HOST_ADDRESS are set),\n" +
			"where it may bind ports 80 and 443 for HTTP-01 and TLS-ALPN-01. The host is made on first use and kept until\n" +
			"`cairn lab down`.",
		Example: "  cairn lab exec -- lego --server https://acme.lab.home.arpa/directory --accept-tos --email ops@lab.home.arpa \\\n" +
			"    --path ./lego --dns rfc2136 --domains test.lab.home.arpa run\n" +
			"  cairn lab exec --host web1 -- lego --server https://acme.lab.home.arpa/directory --accept-tos --email ops@lab.home.arpa \\\n" +
			"    --path ./lego --http --domains web1.lab.home.arpa run",
		Args: cobra.ArbitraryArgs, // lab.Exec says what is missing
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			var c *exec.Cmd
			if host != "" {
				c, err = l.ExecHost(cmd.Context(), host, args)
			} else {
				c, err = l.Exec(args)
			}
			if err != nil {
				return err
			}
			return runAsCaller(cmd, c)
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "run on client host NAME (its own network namespace and address, NAME.<acme.zone> in the cluster DNS)")
	return cmd
}

func newLabUpCmd(g *globals) *cobra.Command {
	var reset, restart bool
	var sites string
	up := &cobra.Command{
		Use:   "up",
		Short: "Build, render and start the lab (creates ./cairn-lab/cairn.yaml for 3 sites if there is no spec)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.lab(true, sites)
			if err != nil {
				return err
			}
			sum, err := l.Up(cmd.Context(), lab.UpOptions{Reset: reset, Restart: restart})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), sum)
			}
			self := os.Args[0]
			if g.configChanged {
				self += " -f " + g.specPath()
			}
			printSummary(cmd, sum, l.Spec, self)
			return nil
		},
	}
	up.Flags().BoolVar(&reset, "reset", false, "remove the previous lab's data, keys and PKI first")
	up.Flags().StringVar(&sites, "sites", "", "site names when a new spec is created (default a,b,c)")
	up.Flags().BoolVar(&restart, "restart", false, "restart crashed processes (off by default: drills need real crashes)")
	return up
}

func newLabSuperviseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "supervise",
		Short:  "Restart exited lab processes (started by lab up --restart)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			return l.Supervise(cmd.Context(), time.Second)
		},
	}
}

func newLabDestroySiteCmd(g *globals) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "destroy-site SITE --yes",
		Short: "Lose a site's host and disk: stop the site and remove its whole directory, database included (its HSM token stays)",
		Long: `Lose a lab site's host and disk, to rehearse cairn site rebuild: every
process of the site stopped and its directory (database, logs, rendered
files) removed. Its HSM token stays, as a real HSM outlives a host. Without
a backup (cairn backup list) the site cannot be rebuilt: cairn lab up would
start it with an empty database.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return errors.New("--yes: destroy-site removes the site's database for good")
			}
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			if err := l.DestroySite(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "site %s destroyed (processes stopped, directory removed); cairn site rebuild %s brings it back from its newest backup\n", args[0], args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm: the site's database is removed")
	return cmd
}

func newLabDownCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop every process the lab started (by PID) and remove its loopback addresses; data stays",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			return l.Down(cmd.Context())
		},
	}
}

func newLabStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Each site's processes (pid, RSS, listen address) and whether its ACME directory answers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			st, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printLabStatus(cmd, st)
			return nil
		},
	}
}

func newLabLogsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logs [SITE] [COMPONENT]",
		Short: "Follow the logs of the lab, a site (or cluster), or one component",
		Args:  cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.lab(false, "")
			if err != nil {
				return err
			}
			args = append(args, "", "")
			files, err := l.LogFiles(args[0], args[1])
			if err != nil {
				return err
			}
			return lab.Follow(cmd.Context(), cmd.OutOrStdout(), files, 20)
		},
	}
}

// lab finds the spec for lab commands: -f if given; else ./cairn.yaml if it
// exists; else ./cairn-lab/cairn.yaml, which `up` creates when missing.
func (g *globals) lab(create bool, sites string) (*lab.Lab, error) {
	path := g.specPath()
	if !g.configChanged && !fsutil.Exists(path) {
		if !create {
			return nil, fmt.Errorf("no lab here: neither ./%s nor %s exists (run `cairn lab up`)", cluster.DefaultFile, path)
		}
		names, data, err := specTemplate(sites)
		if err != nil {
			return nil, err
		}
		if err := fsutil.WriteFileAtomic(path, data, 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "created %s (%d sites)\n", path, len(names))
	}
	spec, err := cluster.Load(path)
	if err != nil {
		return nil, err
	}
	return &lab.Lab{Spec: spec, Log: os.Stderr}, nil
}

func printSummary(cmd *cobra.Command, s *lab.Summary, spec *cluster.Spec, self string) {
	w := cmd.OutOrStdout()
	tsig, _ := rfc2136.ReadKey(s.ClientKey)
	key := tsig.Name
	fmt.Fprintf(w, "\nlab up in %.1fs\n\n", s.Elapsed.Seconds())
	fmt.Fprintf(w, "ACME directory:   %s  (resolve %s through %s)\n", s.DirectoryURL, s.ACMEName, s.DNS)
	for _, st := range s.Sites {
		fmt.Fprintf(w, "  site %-10s  %s  (or https://%s/directory)\n", st.Name, st.Directory, st.Address)
	}
	fmt.Fprintf(w, "DNS servers:      %s (primary; DNS-01 updates go here), all: %s\n", s.DNS, strings.Join(s.DNSServers, ", "))
	fmt.Fprintf(w, "Root certificate: %s\n", s.RootCert)
	fmt.Fprintf(w, "DNS-01 TSIG key:  %s (key %s; may only write _acme-challenge TXT records; per-host keys: cairn dns key add)\n", s.ClientKey, key)
	fmt.Fprintf(w, "Status page:      %s\n", s.StatusURL)
	if s.PrometheusURL != "" {
		fmt.Fprintf(w, "Prometheus:       %s  (cairn's alert rules: %salerts)\n", s.PrometheusURL, s.PrometheusURL)
	}
	fmt.Fprintln(w)
	// With eab.required every registration needs a key (docs/authority.md):
	// one command puts a new one in the shell's environment, and the
	// client commands below take it from there.
	legoEAB, certbotEAB := "", ""
	if spec.EAB.Required {
		fmt.Fprintf(w, "EAB is required (eab.required): first make a key and put it in this shell's environment (the HMAC key is printed once):\n")
		fmt.Fprintf(w, "  %s\n\n", eabEnvCommand(self))
		// With "=": a base64url HMAC may begin with "-", which certbot's
		// argument parser takes for an option (1 key in 64).
		legoEAB, certbotEAB = ` --eab --kid "$EAB_KID" --hmac="$EAB_HMAC"`, ` --eab-kid "$EAB_KID" --eab-hmac-key="$EAB_HMAC"`
	}
	// First through the ACME name, as any client of the cluster: lab exec
	// gives the command the cluster DNS and the lab root; --host a client
	// host of its own, where HTTP-01 reaches it when validation may.
	if cluster.LabHostsAnswer(spec, cluster.ChallengeHTTP01) {
		fmt.Fprintf(w, "Get a certificate through the ACME name, with HTTP-01 from client hosts (lab exec --host NAME: an address of %s, NAME.%s in the cluster DNS, the cluster's resolver, the lab root):\n", cluster.LabClientNetwork(spec), s.Zone)
		fmt.Fprintf(w, "  %s lab exec --host web1 -- lego --server %s --accept-tos --email ops@%s --path ./lego \\\n", self, s.DirectoryURL, s.Zone)
		fmt.Fprintf(w, "    --http --domains web1.%s%s run\n", s.Zone, legoEAB)
		fmt.Fprintf(w, "  %s lab exec --host web2 -- certbot certonly --standalone --non-interactive --agree-tos --register-unsafely-without-email \\\n", self)
		fmt.Fprintf(w, "    --server %s --config-dir ./certbot --work-dir ./certbot --logs-dir ./certbot -d web2.%s%s\n\n", s.DirectoryURL, s.Zone, certbotEAB)
		tls := ""
		if cluster.LabHostsAnswer(spec, cluster.ChallengeTLSALPN01) {
			tls = "; TLS-ALPN-01: lego --tls"
		}
		fmt.Fprintf(w, "Renew on the same host: lego … renew instead of run, certbot renew with the same three directories%s.\n", tls)
		fmt.Fprintf(w, "DNS-01, from any name in %s (lab exec sets lego's RFC2136_*):\n", s.Zone)
	} else {
		fmt.Fprintf(w, "Get a certificate through the ACME name (lab exec: the cluster's resolver, the lab root, lego's RFC2136_* set;\n")
		fmt.Fprintf(w, "HTTP-01 from client hosts needs lab.clientNetwork %s in validation.allowedNetworks):\n", cluster.LabClientNetwork(spec))
	}
	fmt.Fprintf(w, "  %s lab exec -- lego --server %s --accept-tos --email ops@%s --path ./lego \\\n", self, s.DirectoryURL, s.Zone)
	fmt.Fprintf(w, "    --dns rfc2136 --domains test1.%s%s run\n", s.Zone, legoEAB)
	nsupdate := `printf "server $CAIRN_LAB_DNS\nupdate %s _acme-challenge.$CERTBOT_DOMAIN. 10 TXT \"$CERTBOT_VALIDATION\"\nsend\n" | nsupdate -k $CAIRN_LAB_TSIG_KEY`
	fmt.Fprintf(w, "  %s lab exec -- certbot certonly --non-interactive --agree-tos --register-unsafely-without-email \\\n", self)
	fmt.Fprintf(w, "    --server %s --config-dir ./certbot --work-dir ./certbot --logs-dir ./certbot \\\n", s.DirectoryURL)
	fmt.Fprintf(w, "    --manual --preferred-challenges dns -d test2.%s%s \\\n", s.Zone, certbotEAB)
	fmt.Fprintf(w, "    --manual-auth-hook '%s' \\\n", fmt.Sprintf(nsupdate, "add"))
	fmt.Fprintf(w, "    --manual-cleanup-hook '%s'\n\n", fmt.Sprintf(nsupdate, "delete"))
	dnsHost, _, err := net.SplitHostPort(s.DNS)
	if err != nil {
		dnsHost = s.DNS
	}
	site := s.Sites[0]
	fmt.Fprintf(w, "Or from one site directly (no resolver needed), site %s with lego:\n", site.Name)
	fmt.Fprintf(w, "  LEGO_CA_CERTIFICATES=%s RFC2136_NAMESERVER=%s RFC2136_ZONES=%s RFC2136_TSIG_KEY=%s \\\n", s.RootCert, s.DNS, s.Zone, key)
	fmt.Fprintf(w, "  RFC2136_TSIG_ALGORITHM=hmac-sha256. RFC2136_TSIG_SECRET=$(sed -n 's/.*secret \"\\(.*\\)\";/\\1/p' %s) \\\n", s.ClientKey)
	fmt.Fprintf(w, "  lego --server https://%s/directory --accept-tos --email ops@%s --path ./lego \\\n", site.Address, s.Zone)
	fmt.Fprintf(w, "    --dns rfc2136 --dns.resolvers %s --dns.disable-cp --domains test1.%s%s run\n\n", s.DNS, s.Zone, legoEAB)
	fmt.Fprintf(w, "and with certbot:\n")
	fmt.Fprintf(w, "  REQUESTS_CA_BUNDLE=%s certbot certonly --non-interactive --agree-tos --register-unsafely-without-email \\\n", s.RootCert)
	fmt.Fprintf(w, "    --server https://%s/directory --config-dir ./certbot --work-dir ./certbot --logs-dir ./certbot \\\n", site.Address)
	hook := fmt.Sprintf(`printf "server %s\nupdate %%s _acme-challenge.$CERTBOT_DOMAIN. 10 TXT \"$CERTBOT_VALIDATION\"\nsend\n" %%s | nsupdate -k %s`, dnsHost, s.ClientKey)
	fmt.Fprintf(w, "    --manual --preferred-challenges dns -d test2.%s%s \\\n", s.Zone, certbotEAB)
	fmt.Fprintf(w, "    --manual-auth-hook '%s' \\\n", fmt.Sprintf(hook, "add", ""))
	fmt.Fprintf(w, "    --manual-cleanup-hook '%s'\n", fmt.Sprintf(hook, "delete", ""))
}

// eabEnvCommand makes an EAB key with self and sets EAB_KID and EAB_HMAC
// in the shell that evaluates it.
func eabEnvCommand(self string) string {
	return `eval "$(` + self + ` accounts eab create --label lab-$USER | sed -n 's/^kid: /EAB_KID=/p; s/^hmac: /EAB_HMAC=/p')"`
}

func printLabStatus(cmd *cobra.Command, st *lab.Status) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "ACME name %s, DNS %s, root %s\n\n", st.ACMEName, strings.Join(st.DNSServers, " "), st.RootCert)
	fmt.Fprintln(w, "SITE\tPROCESS\tSTATE\tPID\tRSS MiB\tPSS MiB\tLISTEN")
	var rss, pss int
	row := func(siteName string, p lab.ProcStatus) {
		state := "up"
		if !p.Up {
			state = "DOWN"
		}
		rss, pss = rss+p.RSSKB, pss+p.PSSKB
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%.0f\t%.0f\t%s\n", siteName, p.Name, state, p.PID, float64(p.RSSKB)/1024, float64(p.PSSKB)/1024, p.Listen)
	}
	for _, p := range st.Cluster {
		row("cluster", p)
	}
	for _, s := range st.Sites {
		for _, p := range s.Processes {
			row(s.Name, p)
		}
	}
	w.Flush()
	for _, s := range st.Sites {
		ok := "answers"
		if !s.DirectoryOK {
			ok = "FAILS: " + s.DirectoryError
		}
		fmt.Fprintf(cmd.OutOrStdout(), "site %s (Boulder %s, bundle %s) directory %s %s\n", s.Name, s.BoulderVersion, s.Generation, s.Directory, ok)
	}
	if st.StatusURL != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "status page %s", st.StatusURL)
		if st.PrometheusURL != "" {
			fmt.Fprintf(cmd.OutOrStdout(), ", Prometheus %s", st.PrometheusURL)
		}
		fmt.Fprintln(cmd.OutOrStdout())
	}
	fmt.Fprintf(cmd.OutOrStdout(), "memory of every lab process: %.0f MiB (PSS: shared pages counted once; summed RSS %.0f MiB counts each binary once per process)\n",
		float64(pss)/1024, float64(rss)/1024)
}

// runAsCaller runs c with the caller's terminal and exits with its exit
// status (a client's failure is the caller's).
func runAsCaller(cmd *cobra.Command, c *exec.Cmd) error {
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		return err
	}
	return nil
}
