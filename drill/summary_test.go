package drill

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
)

func f(v float64) *float64 { return &v }

func TestSummarizeTakesTheMedianOfRunsWherePhasesHappened(t *testing.T) {
	var reps []*Report
	for i, c := range []float64{3, 1, 2, 10} {
		r := &Report{Scenario: "site-down", Passed: i != 3, Timings: Timings{Commit: f(c)},
			Clients: []ClientSummary{{Policy: "2m", Issuances: 5, Failed: i % 2}},
			Real:    []RealClient{{Client: "lego", Runs: 4, Failed: 1, AccountKept: true, RenewedAfter: f(c + 5)}}}
		if i == 3 {
			r.Failures = []string{"too slow"}
		}
		reps = append(reps, r)
	}
	reps = append(reps, &Report{Scenario: "full-outage", Passed: true})
	sum := Summarize(reps)
	if len(sum.Scenarios) != 2 || sum.Scenarios[0].Scenario != "site-down" {
		t.Fatalf("scenarios %+v", sum.Scenarios)
	}
	s := sum.Scenarios[0]
	if got := s.Phases["commit"]; got.N != 4 || got.P50 != 2.5 || got.Min != 1 || got.Max != 10 {
		t.Errorf("commit %+v, want n=4 p50=2.5 min=1 max=10", got)
	}
	if _, ok := s.Phases["visible"]; ok {
		t.Errorf("a phase that never happened has figures")
	}
	if s.Runs != 4 || s.Passed != 3 || s.Lost["2m"] != [2]int{2, 20} || s.Real["lego"] != [3]int{4, 16, 4} {
		t.Errorf("summary %+v", s)
	}
	md := sum.Markdown()
	if got := s.Renewed["lego"]; got.N != 4 || got.P50 != 7.5 {
		t.Errorf("lego renewed %+v, want n=4 p50=7.5", got)
	}
	for _, want := range []string{"| site-down | 3/4 | – | – | 2.5 (1.0–10.0, n=4)", "2m 2/20", "lego 4/16, 4/4", "run 4: too slow", "| site-down | lego 7.5 (6.0–15.0, n=4) |"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestRealProblemFindsTheACMEProblem(t *testing.T) {
	out := "2026/11/21 renewing\n2026/11/21 [acme.lab] acme: error: 400 :: POST :: https://acme.lab/acme/new-order :: urn:ietf:params:acme:error:accountDoesNotExist :: Account not found\n"
	p, d := realProblem([]byte(out), errors.New("exit status 1"), false)
	if p != "urn:ietf:params:acme:error:accountDoesNotExist" || !strings.Contains(d, "Account not found") {
		t.Errorf("problem %q detail %q", p, d)
	}
	// lego v5: an ARI warning first, the error it stopped on last.
	p, _ = realProblem([]byte("WARN retry: acme: error: 404 :: urn:ietf:params:acme:error:malformed :: While parsing ARI CertID\n"+
		"ERROR acme: error: 400 :: urn:ietf:params:acme:error:accountDoesNotExist :: Account not found\n"), errors.New("exit status 1"), false)
	if p != "urn:ietf:params:acme:error:accountDoesNotExist" {
		t.Errorf("lego v5: problem %q, want the last one", p)
	}
	p, d = realProblem([]byte("Saving debug log\nAn unexpected error occurred:\nconnection refused\nAsk for help or search for solutions at https://community.letsencrypt.org.\n"), errors.New("exit status 1"), false)
	if p != "exit status 1" || d != "connection refused" {
		t.Errorf("problem %q detail %q", p, d)
	}
	if p, _ = realProblem(nil, errors.New("signal: killed"), true); p != "timeout" {
		t.Errorf("a run cut by its timeout: %q", p)
	}
}

// A move after the faults are restored is recovery, not a change under
// the fault; one while they are in place is.
func TestDNSUnchangedCountsOnlyTheFaultWindow(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 11, 21, 0, 0, s, 0, time.UTC) }
	sc, err := Parse([]byte("name: x\nduration: 60s\ntimeline:\n  - {at: 5s, fault: crash, site: all, component: wfe, for: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		move int
		want bool
	}{{41, true}, {20, false}} {
		rep := &Report{Start: at(0), End: at(60), FaultAt: at(5), Events: []Event{
			{At: at(5), Kind: "fault-injected"}, {At: at(35), Kind: "fault-restored"},
			{At: at(tc.move), Kind: "dns-committed", Site: "b"}, {At: at(61), Kind: "fault-restored"}}}
		rep.compute(&workload{spec: cluster.Default([]string{"a", "b"})}, time.Time{}, sc)
		if rep.DNSUnchanged != tc.want {
			t.Errorf("move at %ds: DNSUnchanged %v, want %v", tc.move, rep.DNSUnchanged, tc.want)
		}
	}
}

// pass.clientsRenew: a real client that renewed before the fault must
// renew again within TTL + 30 s after every server serves the new site.
func TestClientsRenewJudgesRealClientsAgainstTheSettledName(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 11, 21, 0, 0, s, 0, time.UTC) }
	sc, err := Parse([]byte("name: x\nduration: 100s\ntimeline:\n  - {at: 5s, fault: crash, site: active, component: wfe}\n" +
		"workload: {every: 2s, policies: [none], clients: [certbot, lego]}\npass: {clientsRenew: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	spec := cluster.Default([]string{"a", "b"})
	spec.ACME.TTL = 30 // deadline: 60 s after the name settled at 8 s, so 68 s
	run := func(client string, start, end int, ok bool, problem string) RealRun {
		return RealRun{Client: client, Command: "renew", Start: at(start), End: at(end), OK: ok, Problem: problem, Account: "https://x/acme/acct/1"}
	}
	for _, tc := range []struct {
		name     string
		runs     []RealRun
		failures []string // substrings, one per expected failure
	}{
		{"both renew at the new site", []RealRun{run("certbot", 1, 3, true, ""), run("lego", 1, 3, true, ""),
			run("certbot", 10, 12, false, "accountDoesNotExist"), run("certbot", 20, 22, true, ""), run("lego", 20, 23, true, "")}, nil},
		{"certbot never renews again", []RealRun{run("certbot", 1, 3, true, ""), run("lego", 1, 3, true, ""),
			run("certbot", 20, 22, false, "urn:ietf:params:acme:error:accountDoesNotExist"), run("lego", 20, 23, true, "")},
			[]string{"certbot did not renew after the fault (problems: accountDoesNotExist ×1)"}},
		{"lego renews too late", []RealRun{run("certbot", 1, 3, true, ""), run("lego", 1, 3, true, ""),
			run("certbot", 20, 22, true, ""), run("lego", 70, 75, true, "")}, []string{"lego renewed 67.0 s after the name settled, goal ≤ 60 s"}},
		{"a client that never renewed before cannot be judged", []RealRun{run("certbot", 1, 3, true, ""), run("lego", 1, 3, false, "timeout"),
			run("certbot", 20, 22, true, ""), run("lego", 20, 23, true, "")}, []string{"lego never renewed before the fault"}},
	} {
		rep := &Report{Start: at(0), End: at(100), FaultAt: at(5), Events: []Event{
			{At: at(5), Kind: "fault-injected"}, {At: at(7), Kind: "dns-committed", Site: "b"},
			{At: at(7), Kind: "dns-visible", Detail: "primary"}, {At: at(8), Kind: "dns-visible", Detail: "secondary"},
			{At: at(101), Kind: "fault-restored"}}}
		rep.compute(&workload{spec: spec, real: tc.runs}, time.Time{}, sc)
		if len(rep.Failures) != len(tc.failures) {
			t.Errorf("%s: failures %q, want %d", tc.name, rep.Failures, len(tc.failures))
			continue
		}
		for i, want := range tc.failures {
			if !strings.Contains(rep.Failures[i], want) {
				t.Errorf("%s: failure %q lacks %q", tc.name, rep.Failures[i], want)
			}
		}
	}
}
