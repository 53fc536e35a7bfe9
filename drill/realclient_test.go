package drill

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
)

// A scenario's real client that is not installed is skipped with a line
// saying so (and how to get it); the installed ones still run, and the
// report shows the line.
func TestMissingRealClientIsSkippedWithALine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("real clients need root; this checks the split as root runs it")
	}
	bin := t.TempDir()
	for _, n := range []string{"unshare", "nsupdate", "certbot"} {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	have, skipped, err := checkRealClients(cluster.Default([]string{"a"}), []string{"certbot", "lego5"}, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if len(have) != 1 || have[0] != "certbot" {
		t.Errorf("clients run: %v, want [certbot]", have)
	}
	if len(skipped) != 1 || !strings.HasPrefix(skipped[0], "lego5: skipped") || !strings.Contains(skipped[0], "make test") {
		t.Errorf("skipped: %q", skipped)
	}
	rep := &Report{Scenario: "x", SkippedClients: skipped}
	if md := rep.Markdown(); !strings.Contains(md, "Real clients not run") || !strings.Contains(md, "lego5: skipped") {
		t.Errorf("the report does not say lego5 was skipped:\n%s", md)
	}

	// Only the clients that ran are judged.
	rep.summarizeReal([]string{"certbot", "lego5"}, time.Now())
	rep.judge(&Scenario{Pass: Pass{ClientsRenew: true}})
	if len(rep.Real) != 1 || rep.Real[0].Client != "certbot" {
		t.Errorf("judged %+v, want certbot alone", rep.Real)
	}
	for _, f := range rep.Failures {
		if strings.Contains(f, "lego5") {
			t.Errorf("the skipped client is judged: %s", f)
		}
	}

	// What every real client needs is still an error.
	os.Remove(filepath.Join(bin, "unshare"))
	if _, _, err := checkRealClients(cluster.Default([]string{"a"}), []string{"certbot"}, netip.Prefix{}); err == nil || !strings.Contains(err.Error(), "unshare") {
		t.Errorf("without unshare: %v", err)
	}
}

// A client host's client whose challenge the spec does not let through to
// the lab's client network, or whose profile it lacks, is skipped with a
// line naming the field and the fix; with them it runs.
func TestHostClientNeedsItsChallengeAndProfile(t *testing.T) {
	spec := cluster.Default([]string{"a"}) // dns-01 alone, no allowed networks
	clients := cluster.LabClientNetwork(spec)
	for _, tc := range []struct{ client, want string }{
		{"lego-http", "validation.challenges [dns-01] does not offer (add http-01)"},
		{"lego-tls", "does not offer (add tls-alpn-01)"},
		{"certbot", ""},
		{"lego5-shortlived", ""},
	} {
		if got := hostClientMissing(spec, realClientKinds[tc.client], clients); !strings.Contains(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("%s on a dns-01 spec: %q, want %q", tc.client, got, tc.want)
		}
	}
	spec.Validation.Challenges = cluster.Challenges
	spec.Validation.AllowedNetworks = []string{"192.168.0.0/16"}
	if got := hostClientMissing(spec, realClientKinds["certbot-http"], clients); !strings.Contains(got, "validation.allowedNetworks [192.168.0.0/16] does not cover (add "+clients.String()+")") {
		t.Errorf("certbot-http outside the allowed networks: %q", got)
	}
	spec.Validation.AllowedNetworks = []string{"10.0.0.0/8"} // holds the client network
	for _, c := range []string{"certbot-http", "lego-http", "lego-tls", "lego5-shortlived"} {
		if got := hostClientMissing(spec, realClientKinds[c], clients); got != "" {
			t.Errorf("%s with every challenge and 10.0.0.0/8 allowed: %q", c, got)
		}
	}
	spec.Profiles = spec.Profiles[:1]
	if got := hostClientMissing(spec, realClientKinds["lego5-shortlived"], clients); !strings.Contains(got, "profile "+cluster.ShortLivedProfile+", which profiles does not list") {
		t.Errorf("lego5-shortlived without the profile: %q", got)
	}
	for c := range realClientKinds {
		if !slices.Contains(RealClients, c) {
			t.Errorf("%s has a kind but is not one of RealClients", c)
		}
	}
}

// A certificate whose validity differs from the profile the client asked
// for fails the drill; one that matches does not.
func TestProfileValidityIsJudged(t *testing.T) {
	t0 := time.Now()
	week := Duration{7 * 24 * time.Hour}
	run := func(at time.Duration, valid Duration) RealRun {
		return RealRun{Client: "lego5-shortlived", Command: "renew", Start: t0.Add(at), End: t0.Add(at + time.Second), OK: true,
			Challenge: cluster.ChallengeDNS01, Host: "drill-lego5-shortlived.lab.home.arpa", Profile: cluster.ShortLivedProfile, Validity: valid, WantValidity: week}
	}
	rep := &Report{Scenario: "x", RealRuns: []RealRun{run(-time.Second, week), run(time.Second, Duration{90 * 24 * time.Hour})}}
	rep.summarizeReal([]string{"lego5-shortlived"}, t0)
	rep.judge(&Scenario{})
	if len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "certificate valid 2160h0m0s, want 168h0m0s (profile shortlived)") {
		t.Errorf("failures %q, want one for the 90-day certificate", rep.Failures)
	}
	if c := rep.Real[0]; c.Where() != "dns-01 (drill-lego5-shortlived.lab.home.arpa)" {
		t.Errorf("where: %q", c.Where())
	}
	rep = &Report{Scenario: "x", RealRuns: []RealRun{run(-time.Second, week), run(time.Second, week)}}
	rep.summarizeReal([]string{"lego5-shortlived"}, t0)
	rep.judge(&Scenario{})
	if len(rep.Failures) != 0 {
		t.Errorf("failures %q with 7-day certificates", rep.Failures)
	}
}

// A real client that reports a final ARI error (404 unknown issuer) fails
// the drill, even when its run succeeded (lego v5 warns and falls back);
// ARI lines without one, and the retryable 503 of a site that is down, do
// not.
func TestARIErrorsAreJudged(t *testing.T) {
	lego5 := "2026/12/06 10:01:02 WARN retry: acme: error: 404 :: urn:ietf:params:acme:error:malformed :: While parsing ARI CertID an error occurred :: path contained an Authority Key Identifier that did not match a known issuer\n" +
		"2026/12/06 10:01:03 INFO Server responded with a certificate.\n"
	if got := ariError([]byte(lego5)); !strings.HasPrefix(got, "2026/12/06 10:01:02 WARN retry: acme: error: 404") {
		t.Errorf("ariError(lego v5 warning) = %q", got)
	}
	for _, quiet := range []string{"INFO acme: renewalInfo suggests renewing between 10:00 and 11:00\nINFO Server responded with a certificate.\n",
		"Saving debug log to /var/log/letsencrypt/letsencrypt.log\nError: something unrelated\n", "",
		"WARN retry: acme: error: 503 :: urn:ietf:params:acme:error:serverInternal :: the certificate was issued by site b of this CA cluster, which does not answer: retry later (ARI)\n"} {
		if got := ariError([]byte(quiet)); got != "" {
			t.Errorf("ariError(%q) = %q, want none", quiet, got)
		}
	}
	t0 := time.Now()
	run := func(at time.Duration, ari string) RealRun {
		return RealRun{Client: "lego5", Command: "renew", Start: t0.Add(at), End: t0.Add(at + time.Second), OK: true, Challenge: cluster.ChallengeDNS01, ARIError: ari}
	}
	rep := &Report{Scenario: "x", RealRuns: []RealRun{run(-time.Second, ""), run(time.Second, ariError([]byte(lego5)))}}
	rep.summarizeReal([]string{"lego5"}, t0)
	rep.judge(&Scenario{})
	if len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "lego5: ARI renewal-info lookup failed, renew at") {
		t.Errorf("failures %q, want one for the ARI warning", rep.Failures)
	}
}

// A client that runs on a client host needs an infrastructure with
// client hosts: without, the drill stops at once with a line naming it.
func TestHostClientNeedsClientHosts(t *testing.T) {
	spec := cluster.Default([]string{"a"})
	spec.Validation.Challenges = cluster.Challenges
	spec.Validation.AllowedNetworks = []string{"10.0.0.0/8"}
	w := &workload{spec: spec}
	_, _, err := w.newRealClients(context.Background(), []string{"lego-http"}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "workload.clients: lego-http runs on a client host of its own, and this infrastructure has none") {
		t.Errorf("lego-http without client hosts: %v", err)
	}
}

// Without a move a real client's renewal is timed from the fault (it was
// negative, from the window's end, and could never be late); with a move,
// from when every server served it.
func TestRenewalTimedFromTheFaultWithoutAMove(t *testing.T) {
	t0 := time.Now()
	window, visible := t0.Add(60*time.Second), t0.Add(3*time.Second)
	if got := settledAt(t0, window, visible, false); !got.Equal(t0) {
		t.Errorf("no move: settled %v after the fault", got.Sub(t0))
	}
	if got := settledAt(t0, window, visible, true); !got.Equal(visible) {
		t.Errorf("a move: settled %v after the fault", got.Sub(t0))
	}
	if got := settledAt(t0, window, time.Time{}, true); !got.Equal(window) {
		t.Errorf("a move never served everywhere: settled %v after the fault", got.Sub(t0))
	}
	run := func(at time.Duration) RealRun {
		return RealRun{Client: "lego", Command: "renew", Start: t0.Add(at), End: t0.Add(at + time.Second), OK: true, Challenge: cluster.ChallengeDNS01}
	}
	for _, tc := range []struct {
		at   time.Duration
		fail string
	}{{5 * time.Second, ""}, {50 * time.Second, "renewed 51.0 s after the name settled, goal ≤ 35 s"}} {
		rep := &Report{Scenario: "x", DNSUnchanged: true, SettledAt: settledAt(t0, window, time.Time{}, false), RenewDeadline: 35,
			RealRuns: []RealRun{run(-10 * time.Second), run(tc.at)}}
		rep.summarizeReal([]string{"lego"}, t0)
		rep.judge(&Scenario{Pass: Pass{ClientsRenew: true}})
		if got := rep.Real[0].RenewedAfter; got == nil || *got != tc.at.Seconds()+1 {
			t.Errorf("renewal at %s: renewed after %v", tc.at, got)
		}
		if (tc.fail == "") != (len(rep.Failures) == 0) || (tc.fail != "" && !strings.Contains(strings.Join(rep.Failures, "; "), tc.fail)) {
			t.Errorf("renewal at %s: failures %q, want %q", tc.at, rep.Failures, tc.fail)
		}
	}
}
