package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/cairn-pki/cairn/internal/connlimit"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// probeFlags are the flags of `cairn probe`.
type probeFlags struct {
	deep, watch                               bool
	kinds, rootFile, metricsAddr, historyFile string
	timeout, duration, retention              time.Duration
}

// newProbeCmd is `cairn probe`: one site or URL once, or --watch.
func newProbeCmd(g *globals) *cobra.Command {
	f := &probeFlags{}
	cmd := &cobra.Command{
		Use:   "probe (SITE | URL) [--deep] | probe --watch [SITE | URL]",
		Short: "Probe one site of the spec (addressed directly) or any RFC 8555 directory URL, step by step",
		Long: `Probe one site of the spec, addressed directly (its address, the ACME name
as TLS server name), or any RFC 8555 server by its directory URL.

Without --deep: dns (site only), tls, directory, nonce. With --deep also
account, issuance and crl (site only; issuance uses DNS-01 through the
cluster's primary). --kinds picks kinds explicitly, e.g. --kinds revocation.
Exit status 1 when any probe fails.

--watch runs every kind against every site (or one) on the spec's
intervals, or the kinds that need no spec against one directory URL (any
ACME CA, with --history FILE), stores every result in the probe history
that "cairn report availability" reads, and serves a status page (/: per
site the failing step and ACME problem, step latency over the last hour,
availability over 1 h, 24 h and 30 d) and Prometheus metrics (/metrics)
on --metrics-addr.`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.watch {
				return g.watch(cmd, args, f)
			}
			return g.probeOnce(cmd, args, f)
		},
	}
	cmd.Flags().BoolVar(&f.deep, "deep", false, "also probe account, issuance and CRLs")
	cmd.Flags().StringVar(&f.kinds, "kinds", "", "comma-separated probe kinds instead of the default set")
	cmd.Flags().StringVar(&f.rootFile, "root", "", "PEM file of roots to trust for a URL target (default: system roots)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "deadline of each probe")
	cmd.Flags().BoolVar(&f.watch, "watch", false, "probe continuously on the spec's intervals, with metrics and history")
	cmd.Flags().StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:9109", "with --watch: where the status page (/) and /metrics are served (empty: not served)")
	cmd.Flags().StringVar(&f.historyFile, "history", "", "with --watch: probe history database (default var/probe-history.db next to the spec)")
	cmd.Flags().DurationVar(&f.duration, "for", 0, "with --watch: stop after this long (default: until interrupted)")
	cmd.Flags().DurationVar(&f.retention, "retention", 30*24*time.Hour, "with --watch: delete history older than this")
	return cmd
}

// probeOnce probes the one target args names with each kind in turn,
// prints the results and fails when any probe failed.
func (g *globals) probeOnce(cmd *cobra.Command, args []string, f *probeFlags) error {
	if len(args) != 1 {
		return fmt.Errorf("name a SITE or a directory URL (or use --watch)")
	}
	t, err := g.probeTarget(args[0], f.rootFile)
	if err != nil {
		return err
	}
	var results []healthcheck.Result
	failed := 0
	for _, k := range f.kindsFor(t) {
		fn, ok := healthcheck.KindFunc(k)
		if !ok {
			return fmt.Errorf("--kinds: unknown probe kind %q (kinds: %s)", cluster.Excerpt(k), healthcheck.KindNames())
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
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
}

// kindsFor is the probe kinds to run against t: --kinds, else the default
// set (or the deep one), less those that need the spec when t is a plain
// URL.
func (f *probeFlags) kindsFor(t *healthcheck.Target) []string {
	list := healthcheck.KindsIn(f.deep)
	if f.kinds != "" {
		list = strings.Split(f.kinds, ",")
	}
	if t.Zone == "" { // a plain URL: no zone to ask, no DNS-01, no CRL list
		list = slices.DeleteFunc(slices.Clone(list), func(name string) bool {
			k, ok := healthcheck.KindOf(name)
			return ok && k.NeedsSpec
		})
	}
	return list
}

// specForProbes finds the spec as probe and report do: -f, else the lab's.
func (g *globals) specForProbes() (*cluster.Spec, string, error) {
	path := g.specPath()
	spec, err := cluster.Load(path)
	return spec, path, err
}

func historyPath(spec *cluster.Spec, flag string) string {
	if flag != "" {
		return flag
	}
	return spec.Path(healthcheck.HistoryFile)
}

func (g *globals) watch(cmd *cobra.Command, args []string, f *probeFlags) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pipe, title, history, err := g.watchPipeline(args, f, reg)
	if err != nil {
		return err
	}
	defer pipe.Close()
	ctx := cmd.Context()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	board := healthcheck.NewBoard(pipe.History, reg)
	go board.Run(ctx, 15*time.Second)
	if f.metricsAddr != "" {
		srv, err := connlimit.ServeHTTP(f.metricsAddr, "--metrics-addr", healthcheck.WatchHandler(reg, board, title), nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		fmt.Fprintf(os.Stderr, "status page on http://%s/, metrics on http://%s/metrics\n", f.metricsAddr, f.metricsAddr)
	}
	out := cmd.OutOrStdout()
	var mu sync.Mutex
	pipe.Then = func(r healthcheck.Result) {
		if !r.OK {
			mu.Lock()
			f := r.FailedStep()
			detail := ""
			if f != nil {
				detail = f.Name + ": " + f.ErrorClass + " " + healthcheck.ProblemType(f.ACMEProblemType) + " " + oneLine(f.Detail, 120)
			}
			fmt.Fprintf(out, "%s %s/%s FAILED %s\n", r.Started.UTC().Format(time.RFC3339), r.Site, r.Kind, detail)
			mu.Unlock()
		}
	}
	fmt.Fprintf(os.Stderr, "probing %d target(s); history in %s\n", len(pipe.Targets), history)
	return pipe.Run(ctx)
}

// watchPipeline is the spec's sites (or one), or one directory URL of any
// ACME CA (the kinds that need no spec, on the default intervals).
func (g *globals) watchPipeline(args []string, f *probeFlags, reg prometheus.Registerer) (*healthcheck.Pipeline, string, string, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) == 1 && strings.Contains(args[0], "://") {
		t, err := g.probeTarget(args[0], f.rootFile)
		if err != nil {
			return nil, "", "", err
		}
		if f.historyFile == "" {
			return nil, "", "", errors.New("--history: a URL target has no spec to keep its history next to; give a file (e.g. --history probe-history.db)")
		}
		hist, err := healthcheck.OpenHistory(f.historyFile, f.retention)
		if err != nil {
			return nil, "", "", err
		}
		sched := healthcheck.DefaultSchedule(cluster.Default([]string{"x"}))
		for name := range sched.Intervals {
			if k, ok := healthcheck.KindOf(name); ok && k.NeedsSpec {
				delete(sched.Intervals, name)
			}
		}
		return &healthcheck.Pipeline{Targets: []*healthcheck.Target{t}, Schedule: sched, Metrics: healthcheck.NewMetrics(reg), History: hist, Log: log},
			args[0], f.historyFile, nil
	}
	spec, _, err := g.specForProbes()
	if err != nil {
		return nil, "", "", err
	}
	history := historyPath(spec, f.historyFile)
	pipe, err := healthcheck.NewPipeline(spec, reg, history, f.retention, log)
	if err != nil {
		return nil, "", "", err
	}
	title := spec.ACME.Name
	if len(args) == 1 {
		pipe.Targets = slices.DeleteFunc(pipe.Targets, func(t *healthcheck.Target) bool { return t.Site != args[0] })
		if len(pipe.Targets) == 0 {
			pipe.Close()
			return nil, "", "", fmt.Errorf("no site %q in the spec (%s)", args[0], strings.Join(spec.SiteNames(), ", "))
		}
		title = "site " + args[0]
	}
	return pipe, title, history, nil
}

func newReportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "report", Short: "Reports from the probe history"}
	var since time.Duration
	var historyFile string
	avail := &cobra.Command{
		Use:   "availability [--since DUR]",
		Short: "Uptime, outages and the share of certificate requests clients retrying 0 s, 30 s, 2 min, 10 min would have lost",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			hist, err := g.openHistory(historyFile)
			if err != nil {
				return err
			}
			defer hist.Close()
			to := time.Now()
			from := to.Add(-since)
			before, err := hist.Before(cmd.Context(), from)
			if err != nil {
				return err
			}
			samples, err := hist.Samples(cmd.Context(), from)
			if err != nil {
				return err
			}
			rep := healthcheck.Compute(append(before, samples...), healthcheck.KindIssuance, from, to)
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			printReport(cmd, rep)
			return nil
		},
	}
	steps := &cobra.Command{
		Use:   "steps [--since DUR]",
		Short: "p50 and p95 of every probe step, per site",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			hist, err := g.openHistory(historyFile)
			if err != nil {
				return err
			}
			defer hist.Close()
			timings, err := hist.StepTimings(cmd.Context(), time.Now().Add(-since))
			if err != nil {
				return err
			}
			stats := healthcheck.Percentiles(timings)
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), stats)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "SITE\tKIND\tSTEP\tN\tP50 ms\tP95 ms")
			for _, s := range stats {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%.1f\t%.1f\n", s.Site, s.Kind, s.Step, s.Count, s.P50ms, s.P95ms)
			}
			return w.Flush()
		},
	}
	samples := newReportSamplesCmd(g, &since, &historyFile)
	for _, sub := range []*cobra.Command{avail, steps, samples} {
		sub.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back")
		sub.Flags().StringVar(&historyFile, "history", "", "probe history database (default var/probe-history.db next to the spec)")
	}
	cmd.AddCommand(avail, steps, samples)
	return cmd
}

func (g *globals) openHistory(flag string) (*healthcheck.History, error) {
	spec, _, err := g.specForProbes()
	if err != nil {
		return nil, err
	}
	path := historyPath(spec, flag)
	if !fsutil.Exists(path) {
		return nil, fmt.Errorf("no probe history at %s: run `cairn probe --watch` (or the failover controller) first", path)
	}
	return healthcheck.OpenHistory(path, 0)
}

func printReport(cmd *cobra.Command, rep healthcheck.Report) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "availability of %s probes, %s to %s\n\n", rep.Kind, rep.From.UTC().Format(time.RFC3339), rep.To.UTC().Format(time.RFC3339))
	fmt.Fprintln(w, "\tSAMPLES\tUPTIME\tOUTAGES\tFAILED, NO RETRY\tRETRY 30s\tRETRY 2m\tRETRY 10m")
	all := rep.Sites
	if rep.Service != nil {
		all = append(all, *rep.Service)
	}
	for _, a := range all {
		fmt.Fprintf(w, "%s\t%d\t%.3f%%\t%d\t%.3f%%\t%.3f%%\t%.3f%%\t%.3f%%\n", a.Name, a.Samples, a.UptimePct, len(a.Outages),
			100*a.FailedShare["0s"], 100*a.FailedShare["30s"], 100*a.FailedShare["2m0s"], 100*a.FailedShare["10m0s"])
	}
	w.Flush()
	for _, a := range all {
		for _, o := range a.Outages {
			ongoing := ""
			if o.Ongoing {
				ongoing = " (ongoing)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "outage %s: %s for %s, failing step %s%s\n", a.Name, o.Start.UTC().Format(time.RFC3339),
				o.Duration.Round(time.Second), o.FailingStep, ongoing)
		}
	}
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
	spec, path, err := g.specForProbes()
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

// newReportSamplesCmd is `report samples`: the raw probe results (a drill
// on provisioned hosts reads the controller's this way, on its host).
func newReportSamplesCmd(g *globals, since *time.Duration, historyFile *string) *cobra.Command {
	var from string
	samples := &cobra.Command{
		Use:   "samples [--since DUR | --from TIME]",
		Short: "Every probe result (site, kind, time, ok, failed step), oldest first; read-only, so it may read a running controller's history",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now().Add(-*since)
			if from != "" {
				t, err := time.Parse(time.RFC3339Nano, from)
				if err != nil {
					return fmt.Errorf("--from %q: give an RFC 3339 time, e.g. 2026-12-06T23:00:00Z", cluster.Excerpt(from))
				}
				start = t
			}
			path := *historyFile
			if path == "" {
				spec, _, err := g.specForProbes()
				if err != nil {
					return err
				}
				path = historyPath(spec, "")
			}
			hist, err := healthcheck.OpenHistoryReadOnly(path)
			if err != nil {
				return fmt.Errorf("--history: %w", err)
			}
			defer hist.Close()
			list, err := hist.Samples(cmd.Context(), start)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), list)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tSITE\tKIND\tOK\tFAILED STEP")
			for _, s := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\n", s.At.Format(time.RFC3339Nano), s.Site, s.Kind, s.OK, s.FailedStep)
			}
			return w.Flush()
		},
	}
	samples.Flags().StringVar(&from, "from", "", "from this time (RFC 3339) instead of --since")
	return samples
}
