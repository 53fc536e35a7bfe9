package drill

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Report is everything a drill measured.
type Report struct {
	Scenario     string    `json:"scenario"`
	Description  string    `json:"description"`
	Passed       bool      `json:"passed"`
	Failures     []string  `json:"failures"` // pass criteria not met
	Errors       []string  `json:"errors,omitempty"`
	Interrupted  bool      `json:"interrupted,omitempty"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	FaultAt      time.Time `json:"faultAt"`
	FaultedSite  string    `json:"faultedSite"`
	ActiveBefore string    `json:"activeBefore"`
	ActiveAfter  string    `json:"activeAfter"`
	EpochBefore  int64     `json:"epochBefore"`
	EpochAfter   int64     `json:"epochAfter"`
	// DNSUnchanged: no DNS update while the faults were in place (from the
	// first injection to the last restore before the end; a move to the
	// first site that recovers afterwards is the controller's job).
	DNSUnchanged bool `json:"dnsUnchanged"`
	Moves        int  `json:"moves"`
	// SteadyAfter: seconds from the restore to every site healthy again.
	SteadyAfter *float64 `json:"steadyAfterSeconds"`
	// SettledAt: every authoritative server served the new site (the
	// name moved), or the faults were restored (it did not).
	SettledAt time.Time `json:"settledAt"`
	// RenewDeadline: a real client that renewed before the fault must
	// renew again within TTL + 30 s after SettledAt (pass.clientsRenew).
	RenewDeadline float64 `json:"renewDeadlineSeconds"`
	Alert         bool    `json:"alertRaised"`
	// Timings are seconds from the first injected fault; null when it
	// did not happen.
	Timings       Timings         `json:"timings"`
	Clients       []ClientSummary `json:"clients"`
	Attempts      []Attempt       `json:"attempts"`
	Issuances     []Issuance      `json:"issuances"`
	Events        []Event         `json:"events"`
	RestoreErrors []string        `json:"restoreErrors,omitempty"`
	Problems      map[string]int  `json:"problems"` // failed attempts by problem type
	// Real clients (certbot, lego): every run, and per client a summary.
	RealRuns []RealRun    `json:"realRuns"`
	Real     []RealClient `json:"realClients"`
	// SkippedClients: a line per real client of the scenario that is not
	// installed here, saying so (the others are judged as usual).
	SkippedClients []string `json:"skippedClients,omitempty"`
	// Infra: where the drill ran: "lab", or the infrastructure of a
	// provisioned cluster (nspawn, aws, existing).
	Infra string `json:"infra"`
	// NotChecked: a line per check this infrastructure cannot make,
	// saying why (never silently).
	NotChecked []string `json:"notChecked,omitempty"`
	// Accounts: account replication checks (pass.accountsFlow).
	Accounts AccountsReport `json:"accounts"`
	// Revocation: revocation and CRL checks (pass.revoked, pass.crlsAvailable).
	Revocation RevocationReport `json:"revocation"`
	// Upgrade: what an upgrade step did (pass.upgrade).
	Upgrade UpgradeReport `json:"upgrade"`
	// EABKey: the ID of the EAB key the run's clients registered with
	// (eab.required); EABKeyRevoked: the run revoked it at its end.
	EABKey        string `json:"eabKey,omitempty"`
	EABKeyRevoked bool   `json:"eabKeyRevoked,omitempty"`
}

// RealClient is what happened to one real client.
type RealClient struct {
	Client    string `json:"client"`
	Challenge string `json:"challenge"`
	Host      string `json:"host,omitempty"` // the client host it ran on
	Runs      int    `json:"runs"`
	Failed    int    `json:"failed"`
	// Profile it asked for, and the successful runs whose certificate's
	// validity differed from the profile's (each a line).
	Profile       string   `json:"profile,omitempty"`
	WrongValidity []string `json:"wrongValidity,omitempty"`
	// ARIErrors: runs where it reported a failed ARI lookup (each a line).
	ARIErrors []string `json:"ariErrors,omitempty"`
	// AccountKept: every run used the account it registered before the
	// fault (real clients do not register again by themselves).
	AccountKept bool `json:"accountKept"`
	// RenewedBefore: it renewed before the fault. RenewedAfter: seconds
	// from the name settling (SettledAt) to the end of its first
	// successful run started after the fault; null if none.
	RenewedBefore bool     `json:"renewedBefore"`
	RenewedAfter  *float64 `json:"renewedAfterSettleSeconds"`
	// Recovered: seconds from the fault to its first successful run after
	// a failed one; null if it never failed or never recovered.
	Recovered *float64       `json:"recoveredSeconds"`
	Problems  map[string]int `json:"problems"`
}

// Where is the client's challenge and the client host it ran on.
func (c RealClient) Where() string {
	if c.Host == "" {
		return c.Challenge
	}
	return c.Challenge + " (" + c.Host + ")"
}

// Timings of the phases, in seconds after the fault.
type Timings struct {
	FirstFailedProbe *float64 `json:"firstFailedProbeSeconds"`
	Detect           *float64 `json:"detectSeconds"`       // the faulted site marked down
	Commit           *float64 `json:"commitSeconds"`       // the DNS update acknowledged
	Alert            *float64 `json:"alertSeconds"`        // the first page (warning or critical alert) fired in the lab's Prometheus
	Visible          *float64 `json:"visibleSeconds"`      // every authoritative server serves it
	FirstSuccess     *float64 `json:"firstSuccessSeconds"` // a new client issued again
	// FirstWorkloadSuccess: the first success of a running client (with
	// its DNS cache) after its first failure.
	FirstWorkloadSuccess *float64 `json:"firstWorkloadSuccessSeconds"`
}

// ClientSummary is one retry policy's outcome.
type ClientSummary struct {
	Policy      string `json:"policy"`
	Issuances   int    `json:"issuances"`
	Attempts    int    `json:"attempts"`
	Failed      int    `json:"failed"` // issuances given up (lost)
	FailedTries int    `json:"failedAttempts"`
}

// settledAt is when the name settled: every server served the move (the
// fault window's end if some never did); a name that did not move was
// settled all along, so a client's renewal is timed from the fault (from
// the window's end it came out negative, and no renewal could be late).
func settledAt(fault, window, allVisible time.Time, moved bool) time.Time {
	switch {
	case !moved:
		return fault
	case allVisible.IsZero():
		return window
	default:
		return allVisible
	}
}

func secs(from, to time.Time) *float64 {
	if from.IsZero() || to.IsZero() {
		return nil
	}
	v := to.Sub(from).Seconds()
	return &v
}

// compute fills in the report from the events and the workload's
// attempts, issuances and real runs, and judges it.
func (rep *Report) compute(w *workload, newClient time.Time, sc *Scenario) {
	w.mu.Lock()
	rep.Attempts, rep.Issuances, rep.RealRuns = w.attempts, w.issuances, w.real
	w.mu.Unlock()
	sort.SliceStable(rep.Events, func(i, j int) bool { return rep.Events[i].At.Before(rep.Events[j].At) })
	t0 := rep.FaultAt
	probe, detect, commit, allVisible := rep.phases(t0)
	window := rep.faultWindow(t0)
	rep.DNSUnchanged = true
	for _, e := range rep.Events {
		if e.Kind == "dns-committed" && !e.At.Before(t0) && !e.At.After(window) {
			rep.DNSUnchanged = false
		}
	}
	rep.SettledAt = settledAt(t0, window, allVisible, !rep.DNSUnchanged)
	rep.RenewDeadline = float64(w.spec.ACME.TTL + 30)
	rep.Timings = Timings{FirstFailedProbe: secs(t0, probe), Detect: secs(t0, detect), Commit: secs(t0, commit), Visible: secs(t0, allVisible), FirstSuccess: secs(t0, newClient)}
	rep.Timings.FirstWorkloadSuccess = secs(t0, rep.firstWorkloadSuccess(t0))
	rep.computeUpgrade()
	for _, e := range rep.Events {
		if e.Kind == eventAlertPage && !e.At.Before(t0) {
			rep.Timings.Alert = secs(t0, e.At)
			break
		}
	}
	rep.policySummaries(sc.Workload.Policies)
	rep.summarizeReal(sc.Workload.Clients, t0)
	rep.judge(sc)
}

// summarizeReal sums up each real client that ran (a skipped one has its
// line in SkippedClients and is not judged).
func (rep *Report) summarizeReal(clients []string, t0 time.Time) {
	for _, name := range clients {
		if !slices.ContainsFunc(rep.SkippedClients, func(line string) bool { return strings.HasPrefix(line, name+":") }) {
			rep.Real = append(rep.Real, rep.realClient(name, t0))
		}
	}
}

// phases reads the events from t0 on: the first failed probe, the faulted
// site first marked down, the first DNS commit and when every server had
// served the new answer; it counts the moves and notes an alert.
func (rep *Report) phases(t0 time.Time) (probe, detect, commit, allVisible time.Time) {
	visible := map[string]time.Time{}
	for _, e := range rep.Events {
		if e.At.Before(t0) {
			continue
		}
		switch e.Kind {
		case "probe-failed":
			if probe.IsZero() {
				probe = e.At
			}
		case "site-state":
			if detect.IsZero() && e.Site == rep.FaultedSite && strings.HasPrefix(e.Detail, "down") {
				detect = e.At
			}
		case "dns-committed":
			rep.Moves++
			if commit.IsZero() {
				commit = e.At
			}
		case "dns-visible":
			if _, ok := visible[e.Detail]; !ok {
				visible[e.Detail] = e.At
			}
		case "alert":
			if strings.HasSuffix(e.Detail, "true") {
				rep.Alert = true
			}
		}
	}
	for _, at := range visible {
		if at.After(allVisible) {
			allVisible = at
		}
	}
	return probe, detect, commit, allVisible
}

// faultWindow is when the faults' window ends: the last restore before
// the drill's end (or the end when they are restored only then).
func (rep *Report) faultWindow(t0 time.Time) time.Time {
	window := rep.End
	for _, e := range rep.Events {
		if e.Kind == "fault-restored" && !e.At.Before(t0) && e.At.Before(rep.End) {
			window = e.At
		}
	}
	return window
}

// firstWorkloadSuccess is the first success of a running client after its
// first failure since t0 (zero when none).
func (rep *Report) firstWorkloadSuccess(t0 time.Time) time.Time {
	var firstFail, recovered time.Time
	for _, a := range rep.Attempts {
		if !t0.IsZero() && !a.OK && a.End.After(t0) && (firstFail.IsZero() || a.End.Before(firstFail)) {
			firstFail = a.End
		}
	}
	for _, a := range rep.Attempts {
		if a.OK && !firstFail.IsZero() && a.End.After(firstFail) && (recovered.IsZero() || a.End.Before(recovered)) {
			recovered = a.End
		}
	}
	return recovered
}

// policySummaries counts the failed attempts by problem and sums up each
// retry policy's attempts and issuances, in the scenario's order.
func (rep *Report) policySummaries(policies []string) {
	rep.Problems = map[string]int{}
	byPolicy := map[string]*ClientSummary{}
	for _, p := range policies {
		byPolicy[p] = &ClientSummary{Policy: p}
	}
	for _, a := range rep.Attempts {
		if cs := byPolicy[a.Policy]; cs != nil {
			cs.Attempts++
			if !a.OK {
				cs.FailedTries++
			}
		}
		if !a.OK {
			rep.Problems[a.Problem]++
		}
	}
	for _, is := range rep.Issuances {
		if cs := byPolicy[is.Policy]; cs != nil {
			cs.Issuances++
			if !is.OK {
				cs.Failed++
			}
		}
	}
	for _, p := range policies {
		rep.Clients = append(rep.Clients, *byPolicy[p])
	}
}

// realClient sums up the runs of one real client around the fault at t0.
func (rep *Report) realClient(name string, t0 time.Time) RealClient {
	rc := RealClient{Client: name, AccountKept: true, Problems: map[string]int{}}
	var account string
	var failedAt time.Time
	for _, r := range rep.RealRuns {
		if r.Client != name {
			continue
		}
		rc.Runs++
		rc.Challenge, rc.Host, rc.Profile = r.Challenge, r.Host, r.Profile
		if r.OK && r.WantValidity.Duration > 0 && r.Validity != r.WantValidity {
			got := "certificate valid " + r.Validity.String()
			if r.Validity.Duration == 0 {
				got = r.Detail // it could not be read
			}
			rc.WrongValidity = append(rc.WrongValidity, fmt.Sprintf("%s at %s: %s, want %s (profile %s)",
				r.Command, r.Start.Format("15:04:05"), got, r.WantValidity, r.Profile))
		}
		if r.ARIError != "" {
			rc.ARIErrors = append(rc.ARIErrors, fmt.Sprintf("%s at %s: %s", r.Command, r.Start.Format("15:04:05"), r.ARIError))
		}
		if account == "" {
			account = r.Account
		} else if r.Account != "" && r.Account != account {
			rc.AccountKept = false
		}
		if r.OK && !t0.IsZero() && r.End.Before(t0) {
			rc.RenewedBefore = true
		}
		if r.OK && !t0.IsZero() && !r.Start.Before(t0) && rc.RenewedAfter == nil {
			rc.RenewedAfter = secs(rep.SettledAt, r.End)
		}
		if !r.OK {
			rc.Failed++
			rc.Problems[r.Problem]++
			if failedAt.IsZero() && !t0.IsZero() && r.Start.After(t0) {
				failedAt = r.End
			}
		} else if !failedAt.IsZero() && rc.Recovered == nil {
			rc.Recovered = secs(t0, r.End)
		}
	}
	return rc
}

func (rep *Report) judge(sc *Scenario) {
	p := sc.Pass
	fail := func(format string, args ...any) { rep.Failures = append(rep.Failures, fmt.Sprintf(format, args...)) }
	if rep.FaultAt.IsZero() && len(sc.Timeline) > 0 {
		fail("no fault was injected")
	}
	if p.Moved && (rep.ActiveAfter == "" || rep.ActiveAfter == rep.FaultedSite) {
		fail("the ACME name did not leave %s (it points to %s)", rep.FaultedSite, rep.ActiveAfter)
	}
	if p.MaxMoves != nil && rep.Moves > *p.MaxMoves {
		fail("%d moves, at most %d allowed", rep.Moves, *p.MaxMoves)
	}
	if p.DNSUnchanged && !rep.DNSUnchanged {
		fail("DNS changed while the faults were in place (epoch %d → %d, now %s)", rep.EpochBefore, rep.EpochAfter, rep.ActiveAfter)
	}
	if p.Alert && !rep.Alert {
		fail("the no-healthy-site alert was not raised")
	}
	if p.FirstSuccessWithin.Duration > 0 {
		if rep.Timings.FirstSuccess == nil {
			fail("no new client issued after the fault")
		} else if *rep.Timings.FirstSuccess > p.FirstSuccessWithin.Seconds() {
			fail("first new-client issuance %.1f s after the fault, goal ≤ %s", *rep.Timings.FirstSuccess, p.FirstSuccessWithin)
		}
	}
	for _, c := range rep.Clients {
		if max, ok := p.MaxLost[c.Policy]; ok && c.Failed > max {
			fail("policy %s lost %d issuances, at most %d allowed", c.Policy, c.Failed, max)
		}
	}
	if p.ClientsRenew {
		for _, c := range rep.Real {
			switch {
			case !c.RenewedBefore:
				fail("%s never renewed before the fault, so the drill cannot judge it", c.Client)
			case c.RenewedAfter == nil:
				fail("%s did not renew after the fault (problems: %s)", c.Client, problemList(c.Problems))
			case *c.RenewedAfter > rep.RenewDeadline:
				fail("%s renewed %.1f s after the name settled, goal ≤ %.0f s (TTL + 30 s)", c.Client, *c.RenewedAfter, rep.RenewDeadline)
			}
		}
	}
	for _, c := range rep.Real {
		for _, w := range c.WrongValidity {
			fail("%s %s", c.Client, w)
		}
		for _, e := range c.ARIErrors {
			fail("%s: ARI renewal-info lookup failed, %s", c.Client, e)
		}
	}
	if p.MaxRealFailures != nil {
		for _, c := range rep.Real {
			if c.Failed > *p.MaxRealFailures {
				fail("%s failed %d of %d runs, at most %d allowed (problems: %s)", c.Client, c.Failed, c.Runs, *p.MaxRealFailures, problemList(c.Problems))
			}
			if !c.AccountKept {
				fail("%s did not keep its account", c.Client)
			}
		}
	}
	rep.judgeAccounts(sc, fail)
	rep.judgeRevocation(sc, fail)
	rep.judgeUpgrade(sc, fail)
	if len(rep.RestoreErrors) > 0 {
		fail("restoring faults failed: %s", strings.Join(rep.RestoreErrors, "; "))
	}
	if rep.Interrupted {
		fail("interrupted before the end")
	}
	if len(rep.Errors) > 0 {
		fail("errors: %s", strings.Join(rep.Errors, "; "))
	}
	rep.Passed = len(rep.Failures) == 0
}

// problemList is "type ×N, …" for a failure line.
func problemList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, fmt.Sprintf("%s ×%d", strings.TrimPrefix(k, "urn:ietf:params:acme:error:"), m[k]))
	}
	return strings.Join(out, ", ")
}

// Write puts report.json, report.md and report.html in dir (each atomically).
func (rep *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if rep.Failures == nil {
		rep.Failures = []string{}
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "report.md"), []byte(rep.Markdown()), 0o644); err != nil {
		return err
	}
	var html bytes.Buffer
	if err := htmlReport.Execute(&html, rep.view()); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, "report.html"), html.Bytes(), 0o644)
}

func fmtSecs(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f s", *v)
}

// Markdown is the report for people.
func (rep *Report) Markdown() string {
	var b strings.Builder
	verdict := "PASSED"
	if !rep.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "# Drill %s: %s\n\n%s\n\n", rep.Scenario, verdict, rep.Description)
	where := "the lab"
	if rep.Infra != "" && rep.Infra != "lab" {
		where = "the " + rep.Infra + " hosts"
	}
	fmt.Fprintf(&b, "Run %s – %s on %s. Faulted site **%s**; the ACME name pointed to **%s** before and **%s** after (epoch %d → %d).\n\n",
		rep.Start.Format(time.RFC3339), rep.End.Format(time.TimeOnly), where, rep.FaultedSite, rep.ActiveBefore, rep.ActiveAfter, rep.EpochBefore, rep.EpochAfter)
	if rep.EABKey != "" {
		revoked := "revoked at the end"
		if !rep.EABKeyRevoked {
			revoked = "NOT revoked: cairn accounts eab revoke " + rep.EABKey
		}
		fmt.Fprintf(&b, "Every client registered with the run's EAB key %s (%s).\n\n", rep.EABKey, revoked)
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(&b, "* ✗ %s\n", f)
	}
	t := rep.Timings
	fmt.Fprintf(&b, "\n## Phases (from the fault)\n\n| phase | time |\n|---|---|\n| first failed probe | %s |\n| site marked down | %s |\n| DNS update committed | %s |\n| alert firing (first page) | %s |\n| every authoritative server serves it | %s |\n| first new client issues | %s |\n| first running client issues again | %s |\n",
		fmtSecs(t.FirstFailedProbe), fmtSecs(t.Detect), fmtSecs(t.Commit), fmtSecs(t.Alert), fmtSecs(t.Visible), fmtSecs(t.FirstSuccess), fmtSecs(t.FirstWorkloadSuccess))
	fmt.Fprintf(&b, "\n## Clients (built-in, through the ACME name, DNS cached for its TTL)\n\n| retry policy | issuances | lost | attempts | failed attempts |\n|---|---|---|---|---|\n")
	for _, c := range rep.Clients {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", c.Policy, c.Issuances, c.Failed, c.Attempts, c.FailedTries)
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintf(&b, "\nFailed attempts by problem:\n\n")
		keys := make([]string, 0, len(rep.Problems))
		for k := range rep.Problems {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "* `%s`: %d\n", k, rep.Problems[k])
		}
	}
	if len(rep.NotChecked) > 0 {
		fmt.Fprintf(&b, "\n## Not checked on %s\n\n", rep.Infra)
		for _, line := range rep.NotChecked {
			fmt.Fprintf(&b, "* %s\n", line)
		}
	}
	if len(rep.SkippedClients) > 0 {
		fmt.Fprintf(&b, "\n## Real clients not run\n\n")
		for _, line := range rep.SkippedClients {
			fmt.Fprintf(&b, "* %s\n", line)
		}
	}
	if len(rep.Real) > 0 {
		settled := "The name settled " + fmtSecs(secs(rep.FaultAt, rep.SettledAt)) + " after the fault"
		if rep.DNSUnchanged {
			settled = "The name did not move (times below are from the fault)"
		}
		fmt.Fprintf(&b, "\n## Real clients (certbot, lego: one issuance before the fault, then renewals with the stored account)\n\n%s; a client that renewed before it must renew again within %.0f s (TTL + 30 s) after that.\n\n| client | challenge (client host) | runs | failed | kept its account | recovered after | renewed after the name settled |\n|---|---|---|---|---|---|---|\n",
			settled, rep.RenewDeadline)
		for _, c := range rep.Real {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %v | %s | %s |\n", c.Client, c.Where(), c.Runs, c.Failed, c.AccountKept, fmtSecs(c.Recovered), fmtSecs(c.RenewedAfter))
		}
		fmt.Fprintf(&b, "\n")
		for _, r := range rep.RealRuns {
			outcome := "ok"
			if !r.OK {
				outcome = "**failed** `" + r.Problem + "`: " + r.Detail
			} else if r.WantValidity.Duration > 0 {
				outcome = fmt.Sprintf("ok, profile %s, certificate valid %s (profile: %s)", r.Profile, r.Validity, r.WantValidity)
			}
			fmt.Fprintf(&b, "* %s %s %s at %s (%.1f s): %s\n", r.Start.Format("15:04:05.000"), r.Client, r.Command, r.Site, r.End.Sub(r.Start).Seconds(), outcome)
		}
	}
	if a := rep.Accounts; len(a.ConflictIDs) > 0 || a.FlowSeconds != nil || len(a.Errors) > 0 {
		fmt.Fprintf(&b, "\n## Accounts (replication between sites)\n\n| check | result |\n|---|---|\n")
		fmt.Fprintf(&b, "| one key registered at two sites | %v |\n| reported as a conflict by `cairn accounts status` | %v |\n", a.ConflictIDs, a.ConflictReported)
		fmt.Fprintf(&b, "| rows skipped (all sites) | %d |\n| every connection running with its filter | %v |\n", a.SkippedRows, a.ConnectionsRunning)
		fmt.Fprintf(&b, "| new account at the faulted site reached every site after | %s |\n| accounts missing somewhere at the end | %d |\n", fmtSecs(a.FlowSeconds), a.Missing)
		for _, p := range a.Problems {
			fmt.Fprintf(&b, "\n* status: %s", p)
		}
		for _, e := range a.Errors {
			fmt.Fprintf(&b, "\n* error: %s", e)
		}
		fmt.Fprintln(&b)
	}
	rep.Revocation.markdown(&b, rep.FaultAt)
	rep.Upgrade.markdown(&b)
	fmt.Fprintf(&b, "\n## Events\n\n")
	for _, e := range rep.Events {
		fmt.Fprintf(&b, "* %s `%s` %s %s\n", e.At.Format("15:04:05.000"), e.Kind, e.Site, e.Detail)
	}
	return b.String()
}
