package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

func newProbeCmd(g *globals) *cobra.Command {
	var deep bool
	var kinds, rootFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "probe (SITE | URL) [--deep]",
		Short: "Probe one site of the spec (addressed directly) or any RFC 8555 directory URL, step by step",
		Long: `Probe one site of the spec, addressed directly (its address, the ACME name
as TLS server name), or any RFC 8555 server by its directory URL.

Without --deep: dns (site only), tls, directory, nonce. With --deep also
account, issuance and crl (site only; issuance uses DNS-01 through the
cluster's primary). --kinds picks kinds explicitly, e.g. --kinds revocation.
Exit status 1 when any probe fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.probeTarget(args[0], rootFile)
			if err != nil {
				return err
			}
			list := healthcheck.ShallowKinds
			if deep {
				list = append(append([]string{}, healthcheck.ShallowKinds...), healthcheck.DeepKinds...)
			}
			if kinds != "" {
				list = strings.Split(kinds, ",")
			}
			if t.Zone == "" { // a plain URL: no zone to ask, no DNS-01, no CRL list
				list = slicesFilter(list, func(k string) bool {
					return k != healthcheck.KindDNS && k != healthcheck.KindIssuance && k != healthcheck.KindCRL && k != healthcheck.KindRevocation
				})
			}
			var results []healthcheck.Result
			failed := 0
			for _, k := range list {
				fn, ok := healthcheck.KindFunc(k)
				if !ok {
					return fmt.Errorf("--kinds: unknown probe kind %q (kinds: dns, tls, directory, nonce, account, issuance, crl, revocation)", k)
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				res := fn(ctx, t)
				cancel()
				results = append(results, res)
				if !res.OK {
					failed++
				}
			}
			if g.output == "json" {
				if err := printJSON(cmd.OutOrStdout(), results); err != nil {
					return err
				}
			} else {
				printResults(cmd, results)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d probes of %s failed", failed, len(results), t.Site)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&deep, "deep", false, "also probe account, issuance and CRLs")
	cmd.Flags().StringVar(&kinds, "kinds", "", "comma-separated probe kinds instead of the default set")
	cmd.Flags().StringVar(&rootFile, "root", "", "PEM file of roots to trust for a URL target (default: system roots)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "deadline of each probe")
	return cmd
}

func slicesFilter(in []string, keep func(string) bool) []string {
	var out []string
	for _, s := range in {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// probeTarget is a site of the spec, or a directory URL.
func (g *globals) probeTarget(arg, rootFile string) (*healthcheck.Target, error) {
	if strings.HasPrefix(arg, "https://") || strings.HasPrefix(arg, "http://") {
		u, err := url.Parse(arg)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%q is not a directory URL", arg)
		}
		t := &healthcheck.Target{Site: u.Host, DirectoryURL: arg}
		if rootFile != "" {
			b, err := os.ReadFile(rootFile)
			if err != nil {
				return nil, fmt.Errorf("--root: %w", err)
			}
			t.Roots = x509.NewCertPool()
			if !t.Roots.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("--root %s: no PEM certificate", rootFile)
			}
		}
		return t, nil
	}
	path := g.config
	if !fsutil.Exists(path) && fsutil.Exists(DefaultLabDir+"/"+cluster.DefaultFile) {
		path = DefaultLabDir + "/" + cluster.DefaultFile
	}
	spec, err := cluster.Load(path)
	if err != nil {
		return nil, err
	}
	if _, ok := spec.SiteByName(arg); !ok {
		return nil, fmt.Errorf("%q is neither a site of %s (%s) nor a https:// directory URL", arg, path, strings.Join(spec.SiteNames(), ", "))
	}
	targets, err := healthcheck.SiteTargets(spec)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if t.Site == arg {
			return t, nil
		}
	}
	return nil, fmt.Errorf("site %q not found", arg)
}

func printResults(cmd *cobra.Command, results []healthcheck.Result) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tSTEP\tRESULT\tTIME\tERROR")
	for _, r := range results {
		for i, s := range r.Steps {
			kind := ""
			if i == 0 {
				kind = r.Kind
			}
			res := "ok"
			errText := ""
			if !s.OK {
				res = "FAIL"
				errText = s.ErrorClass
				if s.ACMEProblemType != "" {
					errText += " " + healthcheck.ProblemType(s.ACMEProblemType)
				}
				errText += ": " + oneLine(s.Detail, 100)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%.1f ms\t%s\n", kind, s.Name, res, float64(s.Duration.Microseconds())/1000, errText)
		}
		status := "ok"
		if !r.OK {
			status = "FAILED"
		}
		facts := ""
		for k, v := range r.Facts {
			facts += " " + k + "=" + v
		}
		fmt.Fprintf(w, "\t(total)\t%s\t%.1f ms\t%s\n", status, float64(r.Elapsed.Microseconds())/1000, strings.TrimSpace(facts))
	}
	w.Flush()
}

func oneLine(s string, max int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
