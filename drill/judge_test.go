package drill

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// judged is the failures judge adds for sc, one string each.
func judged(judge func(*Scenario, func(string, ...any)), sc *Scenario) string {
	var out []string
	judge(sc, func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) })
	return strings.Join(out, "\n")
}

// pass.revoked and pass.crlsAvailable: each missing or wrong outcome is
// one failure naming it; a clean run has none; a move back before the
// serial is in the CRL is a failure and recorded.
func TestJudgeRevocation(t *testing.T) {
	sc := &Scenario{}
	sc.Pass.Revoked, sc.Pass.CRLsAvailable = true, true
	clean := func() *Report {
		return &Report{FaultedSite: "a", FaultAt: at(10), Revocation: RevocationReport{Journaled: "01", InCRLAt: tp(80), RestoredAt: at(70),
			ACMERevokedAt: tp(75), ACMEDownAnswers: []string{"HTTP 503 urn:ietf:params:acme:error:serverInternal"}, CRLChecks: 5}}
	}
	if got := judged(clean().judgeRevocation, sc); got != "" {
		t.Fatalf("a clean run fails: %s", got)
	}
	for _, c := range []struct {
		name string
		mod  func(*Report)
		want string
	}{
		{"no CRL check", func(r *Report) { r.Revocation.CRLChecks = 0 }, "no CRL check ran"},
		{"CRL check failed", func(r *Report) { r.Revocation.CRLFailures = []string{"expired CRL"} }, "1 of 5 relying-party CRL checks failed while the site was down: expired CRL"},
		{"never in the CRL", func(r *Report) { r.Revocation.InCRLAt, r.Revocation.JournalState = nil, "pending" }, "(01) never reached a's published CRL (journal: pending)"},
		{"moved back first", func(r *Report) { r.Events = []Event{{At: at(78), Kind: "dns-committed", Site: "a"}} }, "the name moved back to a at 12:01:18, before the revoked serial was in its CRL (12:01:20)"},
		{"ACME never", func(r *Report) { r.Revocation.ACMERevokedAt = nil }, "the revocation through ACME never went through (answers: HTTP 503"},
		{"ACME 404", func(r *Report) { r.Revocation.ACMEDownAnswers = []string{"HTTP 404 not found"} }, "answered HTTP 404 not found"},
		{"ACME 200 while down", func(r *Report) { r.Revocation.ACMEDownAnswers = []string{"HTTP 200"} }, "answered HTTP 200"},
		{"errors", func(r *Report) { r.Revocation.Errors = []string{"journal: etcd down"} }, "journal: etcd down"},
	} {
		r := clean()
		c.mod(r)
		got := judged(r.judgeRevocation, sc)
		if !strings.Contains(got, c.want) || strings.Count(got, "\n") != 0 {
			t.Errorf("%s: failures %q, want one with %q", c.name, got, c.want)
		}
		if c.name == "moved back first" && !r.Revocation.MovedBackFirst {
			t.Error("a move back before the CRL is not recorded")
		}
	}
	// Without the pass criteria nothing is judged.
	r := clean()
	r.Revocation = RevocationReport{}
	if got := judged(r.judgeRevocation, &Scenario{}); got != "" {
		t.Errorf("judged without pass.revoked: %s", got)
	}
}

// pass.accountsFlow: each problem one failure.
func TestJudgeAccounts(t *testing.T) {
	sc := &Scenario{}
	sc.Pass.AccountsFlow = true
	sc.Accounts.ConflictAt = Duration{Duration: 5 * time.Second}
	clean := func() *Report {
		return &Report{Accounts: AccountsReport{ConnectionsRunning: true, FlowSeconds: f(2), ConflictIDs: map[string]int64{"a": 1, "b": 2}, ConflictReported: true}}
	}
	if got := judged(clean().judgeAccounts, sc); got != "" {
		t.Fatalf("a clean run fails: %s", got)
	}
	for _, c := range []struct {
		mod  func(*AccountsReport)
		want string
	}{
		{func(a *AccountsReport) { a.Errors = []string{"db"} }, "accounts: db"},
		{func(a *AccountsReport) { a.ConnectionsRunning = false }, "replication is not running everywhere"},
		{func(a *AccountsReport) { a.ConflictReported = false }, "is not reported as a conflict"},
		{func(a *AccountsReport) { a.Missing = 3 }, "3 accounts still missing"},
		{func(a *AccountsReport) { a.FlowSeconds = nil }, "did not reach every site within 1m"},
	} {
		r := clean()
		c.mod(&r.Accounts)
		if got := judged(r.judgeAccounts, sc); !strings.Contains(got, c.want) || strings.Contains(got, "\n") {
			t.Errorf("failures %q, want one with %q", got, c.want)
		}
	}
	if got := judged((&Report{}).judgeAccounts, &Scenario{}); got != "" {
		t.Errorf("judged without pass.accountsFlow: %s", got)
	}
}

// The upgrade's events become per-site phases and durations; the result
// is judged against pass.upgrade.
func TestUpgradeReport(t *testing.T) {
	rep := &Report{Events: []Event{
		{At: at(100), Kind: "upgrade-start"},
		{At: at(101), Kind: "upgrade-drained", Site: "a"},
		{At: at(131), Kind: "upgrade-healthy", Site: "a"},
		{At: at(141), Kind: "upgrade-done", Site: "a"},
		{At: at(142), Kind: "upgrade-drained", Site: "b"},
		{At: at(150), Kind: "upgrade-rollback", Site: "b", Detail: "gate: finalize failed"},
		{At: at(160), Kind: "upgrade-rolled-back", Site: "b"},
		{At: at(161), Kind: "upgrade-result", Detail: UpgradeRolledBack},
		{At: at(170), Kind: "dns-committed", Site: "b"},
	}}
	rep.computeUpgrade()
	u := rep.Upgrade
	if u.Result != UpgradeRolledBack || *u.Total != 61 || len(u.Sites) != 2 || u.Sites[0].Site != "a" {
		t.Fatalf("upgrade %+v", u)
	}
	if *u.Sites[0].DrainedToHealthy != 30 || *u.Sites[0].DrainedToUndrained != 40 || u.Sites[1].DrainedToHealthy != nil || *u.Sites[1].DrainedToUndrained != 18 {
		t.Errorf("site durations %+v %+v", u.Sites[0], u.Sites[1])
	}
	if p := u.Sites[1].Phases[1]; p.Phase != "rollback" || p.At != 50 || p.Detail != "gate: finalize failed" {
		t.Errorf("b's rollback phase %+v", p)
	}
	sc := &Scenario{}
	sc.Pass.Upgrade = UpgradeRolledBack
	if got := judged(rep.judgeUpgrade, sc); !strings.Contains(got, "touched 2 sites") {
		t.Errorf("a rollback past the first site: %q", got)
	}
	sc.Pass.Upgrade = UpgradeDone
	if got := judged(rep.judgeUpgrade, sc); got != "the upgrade ended rolled-back, the scenario expects done" {
		t.Errorf("wrong result: %q", got)
	}
	rep.Upgrade.Result = ""
	if got := judged(rep.judgeUpgrade, sc); !strings.Contains(got, "no result (errored or interrupted)") {
		t.Errorf("no result: %q", got)
	}
	var b strings.Builder
	rep.Upgrade.markdown(&b)
	if !strings.Contains(b.String(), "Result: **none (errored or interrupted)** in 61.0 s.") || !strings.Contains(b.String(), "site b rolled back because: gate: finalize failed") {
		t.Errorf("markdown:\n%s", b.String())
	}
	rep.Upgrade.Sites = rep.Upgrade.Sites[:1]
	rep.Upgrade.Result = UpgradeRolledBack
	sc.Pass.Upgrade = UpgradeRolledBack
	if got := judged(rep.judgeUpgrade, sc); got != "" {
		t.Errorf("a rollback at the first site fails: %q", got)
	}
}

// Load finds a built-in by name or reads a file, and says what exists
// when neither; durations go to JSON as seconds and back, to YAML as
// written.
func TestLoadAndDurations(t *testing.T) {
	s, err := Load("site-down")
	if err != nil || s.Name != "site-down" {
		t.Fatalf("Load(site-down): %v %v", s, err)
	}
	if _, err := Load("no-such"); err == nil || !strings.Contains(err.Error(), "site-down") || !strings.Contains(err.Error(), ".yaml") {
		t.Errorf("an unknown name: %v", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(file, []byte("name: mine\nduration: 90s\nsteadyState: {within: 45s}\ntimeline:\n  - {at: 5s, fault: crash, site: active, component: wfe, for: 30s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "mine" || s.SteadyWithin() != 45*time.Second || s.Timeline[0].For.Duration != 30*time.Second {
		t.Errorf("loaded %+v", s)
	}
	if (&Scenario{}).SteadyWithin() != 3*time.Minute {
		t.Error("the default steady-state window is not 3m")
	}
	if err := os.WriteFile(file, []byte("name: mine\nduration: soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Errorf("a bad file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "absent.yaml")); err == nil {
		t.Error("a missing file loads")
	}

	d := Duration{Duration: 1500 * time.Millisecond}
	js, err := json.Marshal(d)
	if err != nil || string(js) != "1.5" {
		t.Fatalf("JSON %s %v", js, err)
	}
	var back Duration
	if err := json.Unmarshal(js, &back); err != nil || back != d {
		t.Errorf("JSON back %v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`"1.5s"`), &back); err == nil {
		t.Error("a JSON string reads as seconds")
	}
	y, err := yaml.Marshal(struct{ D Duration }{d})
	if err != nil || strings.TrimSpace(string(y)) != "d: 1.5s" {
		t.Errorf("YAML %q %v", y, err)
	}
}
