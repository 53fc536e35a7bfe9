package drill

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time  { return t0.Add(time.Duration(s * float64(time.Second))) }
func tp(s float64) *time.Time { v := at(s); return &v }

// fullReport has something in every section of the report.
func fullReport() *Report {
	return &Report{
		Scenario: "site-down", Description: "The active site's WFE crashes.", Passed: false, Failures: []string{"too slow: <script>"},
		Start: at(0), End: at(120), FaultAt: at(10), FaultedSite: "a", ActiveBefore: "a", ActiveAfter: "b", EpochBefore: 1, EpochAfter: 2,
		SettledAt: at(40), RenewDeadline: 60, Moves: 1,
		Timings: Timings{Commit: f(12.5), Detect: f(4)},
		Clients: []ClientSummary{{Policy: "2m", Issuances: 5, Attempts: 7, Failed: 1, FailedTries: 2}},
		Attempts: []Attempt{
			{Client: "c1", Policy: "2m", Start: at(5), End: at(6), OK: true, Site: "a"},
			{Client: "c1", Policy: "2m", Start: at(11), End: at(12), Problem: "urn:ietf:params:acme:error:serverInternal", Error: "boom"},
		},
		Events: []Event{
			{At: at(10), Kind: "fault-injected", Site: "a", Detail: "crash a/wfe"},
			{At: at(15), Kind: "site-state", Site: "a", Detail: "down: refused"},
			{At: at(22), Kind: "dns-committed", Site: "b", Detail: "epoch 2"},
			{At: at(25), Kind: "first-new-client", Site: "b"},
			{At: at(70), Kind: "fault-restored", Site: "a"},
			{At: at(80), Kind: "site-state", Site: "a", Detail: "healthy"},
		},
		Problems:       map[string]int{"urn:ietf:params:acme:error:serverInternal": 1},
		SkippedClients: []string{"certbot: not installed"},
		Real:           []RealClient{{Client: "lego", Challenge: "http-01", Host: "client1", Runs: 3, Failed: 1, AccountKept: true, Recovered: f(30)}},
		RealRuns: []RealRun{
			{Client: "lego", Command: "issue", Start: at(1), End: at(3), OK: true, Site: "a", Profile: "shortlived", Validity: Duration{Duration: 160 * time.Hour}, WantValidity: Duration{Duration: 160 * time.Hour}},
			{Client: "lego", Command: "renew", Start: at(12), End: at(14), Site: "a", Problem: "exit status 1", Detail: "connection refused"},
		},
		Accounts:   AccountsReport{ConflictIDs: map[string]int64{"a": 7, "b": 8}, ConflictReported: true, FlowSeconds: f(3.5), Problems: []string{"b lacks 1"}, Errors: []string{"db gone"}},
		Revocation: RevocationReport{Journaled: "01ab", InCRLAt: tp(75), RestoredAt: at(70), ACMERevokedAt: tp(30), ACMEDownAnswers: []string{"HTTP 503"}, CRLChecks: 4, CRLFailures: []string{"CRL expired"}, CRLSlowestMS: 6500, CRLRetried: 2, Errors: []string{"rev err"}},
		Upgrade: UpgradeReport{Result: "rolled-back", Total: f(90), Sites: []UpgradeSite{{Site: "a", DrainedToHealthy: f(20),
			Phases: []UpgradePhase{{Phase: "drained", At: 1}, {Phase: "rollback", At: 50, Detail: "gate failed"}}}}},
		EABKey: "kid-1",
	}
}

// Write puts the three files; the JSON reads back as the report; the
// Markdown and the HTML carry every section, with the HTML escaped.
func TestReportWriteAndRender(t *testing.T) {
	rep := fullReport()
	dir := filepath.Join(t.TempDir(), "run")
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	if back := readReport(t, dir); !reflect.DeepEqual(back, rep) {
		t.Errorf("report.json does not read back as the report:\n got %+v\nwant %+v", *back, *rep)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != rep.Markdown() {
		t.Error("report.md is not Markdown()")
	}
	for _, want := range []string{
		"# Drill site-down: FAILED", "* ✗ too slow: <script>", "epoch 1 → 2",
		"registered with the run's EAB key kid-1 (NOT revoked: cairn accounts eab revoke kid-1)",
		"| DNS update committed | 12.5 s |", "| site marked down | 4.0 s |", "| first new client issues | – |",
		"| 2m | 5 | 1 | 7 | 2 |", "* `urn:ietf:params:acme:error:serverInternal`: 1",
		"## Real clients not run\n\n* certbot: not installed",
		"The name settled 30.0 s after the fault", "| lego | http-01 (client1) | 3 | 1 | true | 30.0 s | – |",
		"lego issue at a (2.0 s): ok, profile shortlived, certificate valid 160h0m0s", "lego renew at a (2.0 s): **failed** `exit status 1`: connection refused",
		"| one key registered at two sites | map[a:7 b:8] |", "| new account at the faulted site reached every site after | 3.5 s |",
		"* status: b lacks 1", "* error: db gone",
		"| 3 of 4 passed; slowest 6.5 s; 2 needed more than one try |", "`cairn revoke` (journaled) 01ab: in the site's published CRL | 5.0 s after the restore |",
		"| revocation through ACME went through | 20.0 s after the fault |", "* ACME answer while down: HTTP 503", "* CRL check failed: CRL expired", "* error: rev err",
		"Result: **rolled-back** in 90.0 s.", "| a | 20.0 s | – | drained 1.0, rollback 50.0 |", "* site a rolled back because: gate failed",
		"`dns-committed` b epoch 2",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	h := string(html)
	for _, want := range []string{
		`<span class="FAILED" id="verdict">FAILED</span>`, `<b id="after">b</b>`, "too slow: &lt;script&gt;",
		`>site a</text>`, `>ACME name → site</text>`, `>client 2m</text>`, `>lego</text>`,
		`<title>a down</title>`, `<title>active b</title>`, `<title>issued at a</title>`, `<title>urn:ietf:params:acme:error:serverInternal: boom</title>`,
		`<title>renew: exit status 1: connection refused</title>`, `<line class="fault-injected"`, `<line class="dns-committed"`,
		`>0s</text>`, `>120s</text>`, "<li>certbot: not installed</li>", "<td>http-01 (client1)</td>",
	} {
		if !strings.Contains(h, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if strings.Contains(h, "<script>") || strings.Contains(h, "src=") {
		t.Error("report.html has a script or fetches something")
	}
}

// The timeline's bars follow the events: the faulted site is healthy, then
// down from its state change to the next, across the whole axis.
func TestTimelineLayout(t *testing.T) {
	rep := fullReport()
	v := rep.view()
	var lanes []string
	for _, l := range v.Lanes {
		lanes = append(lanes, l.Label)
	}
	if want := []string{"site a", "ACME name → site", "client 2m", "lego"}; !reflect.DeepEqual(lanes, want) {
		t.Fatalf("lanes %q, want %q", lanes, want)
	}
	var siteA []svgRect
	for _, r := range v.Rects {
		if r.Y == v.Lanes[0].Y {
			siteA = append(siteA, r)
		}
	}
	x := func(s float64) float64 { return svgLeft + svgWidth*s/120 }
	want := []svgRect{
		{X: x(0), Y: v.Lanes[0].Y, W: x(15) - x(0), H: laneH, Class: "healthy", Title: "a healthy"},
		{X: x(15), Y: v.Lanes[0].Y, W: x(80) - x(15), H: laneH, Class: "down", Title: "a down"},
		{X: x(80), Y: v.Lanes[0].Y, W: x(120) - x(80), H: laneH, Class: "healthy", Title: "a healthy"},
	}
	if !reflect.DeepEqual(siteA, want) {
		t.Errorf("site a's bars:\n got %+v\nwant %+v", siteA, want)
	}
	if len(v.Marks) != 4 || v.Marks[0].X != x(10) {
		t.Errorf("marks %+v", v.Marks)
	}
	if len(v.Ticks) != 13 || v.Ticks[12].X != x(120) {
		t.Errorf("%d ticks, want every 10 s of 120 s", len(v.Ticks))
	}
	// Past 5 minutes, a tick a minute; an attempt before the start is
	// clamped to the axis and never thinner than 1.5.
	rep.End = at(600)
	rep.Attempts[0].Start, rep.Attempts[0].End = at(-5), at(-4)
	v = rep.view()
	if len(v.Ticks) != 11 {
		t.Errorf("%d ticks over 10 min, want 11", len(v.Ticks))
	}
	for _, r := range v.Rects {
		if r.Title == "issued at a" && (r.X != svgLeft || r.W != 1.5) {
			t.Errorf("a clamped attempt: %+v", r)
		}
	}
}

// A passing report says so, without the failure list and the empty
// sections.
func TestPassingReportHasNoEmptySections(t *testing.T) {
	rep := &Report{Scenario: "x", Passed: true, Start: at(0), End: at(0), EABKey: "k", EABKeyRevoked: true}
	md := rep.Markdown()
	for _, absent := range []string{"✗", "## Real clients", "## Accounts", "## Revocation", "## Upgrade", "Failed attempts by problem"} {
		if strings.Contains(md, absent) {
			t.Errorf("a passing report without data has %q", absent)
		}
	}
	if !strings.Contains(md, "# Drill x: PASSED") || !strings.Contains(md, "EAB key k (revoked at the end)") {
		t.Errorf("markdown:\n%s", md)
	}
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if !regexp.MustCompile(`"failures": \[\]`).Match(js) {
		t.Error(`report.json: a passing report's failures are not []`)
	}
}

// LoadReports reads every report.json under a campaign directory, in path
// order; the summary's files are its JSON and Markdown.
func TestLoadReportsAndWriteSummary(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadReports(dir); err == nil || !strings.Contains(err.Error(), "no report.json") {
		t.Fatalf("an empty directory: %v", err)
	}
	for i, name := range []string{"2-b", "1-a"} {
		rep := fullReport()
		rep.Passed, rep.Failures = i == 0, nil
		rep.Timings.Commit = f(float64(i + 1))
		if err := rep.Write(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	reps, err := LoadReports(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || *reps[0].Timings.Commit != 2 || *reps[1].Timings.Commit != 1 {
		t.Fatalf("reports not in path order: %d", len(reps))
	}
	sum := Summarize(reps)
	out := filepath.Join(dir, "summary")
	if err := sum.Write(out); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(out, "summary.md"))
	if string(md) != sum.Markdown() {
		t.Error("summary.md is not Markdown()")
	}
	js, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	var back Summary
	if err := json.Unmarshal(js, &back); err != nil || len(back.Scenarios) != 1 || back.Scenarios[0].Runs != 2 || back.Scenarios[0].Passed != 1 {
		t.Fatalf("summary.json: %v %+v", err, back)
	}
	if err := os.WriteFile(filepath.Join(dir, "1-a", "report.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadReports(dir); err == nil || !strings.Contains(err.Error(), filepath.Join("1-a", "report.json")) {
		t.Fatalf("a broken report: %v, want its path", err)
	}
}

// readReport reads dir/report.json.
func readReport(t *testing.T, dir string) *Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}
