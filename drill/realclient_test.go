package drill

import (
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
	have, skipped, err := checkRealClients(cluster.Default([]string{"a"}), []string{"certbot", "lego5"})
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
	if _, _, err := checkRealClients(cluster.Default([]string{"a"}), []string{"certbot"}); err == nil || !strings.Contains(err.Error(), "unshare") {
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
		if got := hostClientMissing(spec, realClientKinds[tc.client]); !strings.Contains(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("%s on a dns-01 spec: %q, want %q", tc.client, got, tc.want)
		}
	}
	spec.Validation.Challenges = cluster.Challenges
	spec.Validation.AllowedNetworks = []string{"192.168.0.0/16"}
	if got := hostClientMissing(spec, realClientKinds["certbot-http"]); !strings.Contains(got, "validation.allowedNetworks [192.168.0.0/16] does not cover (add "+clients.String()+")") {
		t.Errorf("certbot-http outside the allowed networks: %q", got)
	}
	spec.Validation.AllowedNetworks = []string{"10.0.0.0/8"} // holds the client network
	for _, c := range []string{"certbot-http", "lego-http", "lego-tls", "lego5-shortlived"} {
		if got := hostClientMissing(spec, realClientKinds[c]); got != "" {
			t.Errorf("%s with every challenge and 10.0.0.0/8 allowed: %q", c, got)
		}
	}
	spec.Profiles = spec.Profiles[:1]
	if got := hostClientMissing(spec, realClientKinds["lego5-shortlived"]); !strings.Contains(got, "profile "+cluster.ShortLivedProfile+", which profiles does not list") {
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
