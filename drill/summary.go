package drill

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Summary condenses several runs of each scenario: the median (p50), the
// fastest and the slowest of every phase, and the losses per retry policy.
type Summary struct {
	Scenarios []ScenarioSummary `json:"scenarios"`
}

// ScenarioSummary is one scenario over its runs.
type ScenarioSummary struct {
	Scenario string `json:"scenario"`
	Runs     int    `json:"runs"`
	Passed   int    `json:"passed"`
	// Phases: per phase (the keys of report.json's timings) the figures
	// of the runs where it happened.
	Phases map[string]Stat `json:"phases"`
	// Lost: per retry policy, issuances lost and issuances in all runs.
	Lost map[string][2]int `json:"lost"`
	// Real: per real client, failed runs and runs in all drills, and in
	// how many drills it kept its account.
	Real map[string][3]int `json:"realClients"`
	// Renewed: per real client, seconds from the name settling to its
	// first renewal after the fault, over the runs where it renewed.
	Renewed  map[string]Stat `json:"renewedAfterSettle"`
	Failures []string        `json:"failures,omitempty"`
}

// Stat is the spread of one phase over the runs where it happened.
type Stat struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// phaseNames are the timings in the order they happen.
var phaseNames = []string{"firstFailedProbe", "detect", "commit", "alert", "visible", "firstSuccess", "firstWorkloadSuccess"}

func (t Timings) byName() map[string]*float64 {
	return map[string]*float64{"firstFailedProbe": t.FirstFailedProbe, "detect": t.Detect, "commit": t.Commit, "alert": t.Alert,
		"visible": t.Visible, "firstSuccess": t.FirstSuccess, "firstWorkloadSuccess": t.FirstWorkloadSuccess}
}

// p50 is the median (the mean of the middle two for an even count).
func p50(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Summarize groups reports by scenario, in the order they first appear.
func Summarize(reps []*Report) Summary {
	var sum Summary
	idx := map[string]int{}
	values := map[string]map[string][]float64{}
	renewed := map[string]map[string][]float64{}
	for _, r := range reps {
		i, ok := idx[r.Scenario]
		if !ok {
			i = len(sum.Scenarios)
			idx[r.Scenario] = i
			sum.Scenarios = append(sum.Scenarios, ScenarioSummary{Scenario: r.Scenario, Phases: map[string]Stat{}, Lost: map[string][2]int{}, Real: map[string][3]int{}})
			values[r.Scenario] = map[string][]float64{}
			renewed[r.Scenario] = map[string][]float64{}
		}
		s := &sum.Scenarios[i]
		s.Runs++
		if r.Passed {
			s.Passed++
		}
		for _, f := range r.Failures {
			s.Failures = append(s.Failures, fmt.Sprintf("run %d: %s", s.Runs, f))
		}
		for name, v := range r.Timings.byName() {
			if v != nil {
				values[r.Scenario][name] = append(values[r.Scenario][name], *v)
			}
		}
		for _, c := range r.Clients {
			l := s.Lost[c.Policy]
			s.Lost[c.Policy] = [2]int{l[0] + c.Failed, l[1] + c.Issuances}
		}
		for _, c := range r.Real {
			x := s.Real[c.Client]
			kept := 0
			if c.AccountKept {
				kept = 1
			}
			s.Real[c.Client] = [3]int{x[0] + c.Failed, x[1] + c.Runs, x[2] + kept}
			if c.RenewedAfter != nil {
				renewed[r.Scenario][c.Client] = append(renewed[r.Scenario][c.Client], *c.RenewedAfter)
			}
		}
	}
	for i := range sum.Scenarios {
		s := &sum.Scenarios[i]
		for name, v := range values[s.Scenario] {
			s.Phases[name] = Stat{N: len(v), P50: p50(v), Min: slices.Min(v), Max: slices.Max(v)}
		}
		s.Renewed = map[string]Stat{}
		for c, v := range renewed[s.Scenario] {
			s.Renewed[c] = Stat{N: len(v), P50: p50(v), Min: slices.Min(v), Max: slices.Max(v)}
		}
	}
	return sum
}

func fmtStat(s Stat, ok bool) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.1f (%.1f–%.1f, n=%d)", s.P50, s.Min, s.Max, s.N)
}

// Markdown: one table of phase medians, one of losses.
func (sum Summary) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Drill summary\n\nSeconds after the fault: p50 (min–max, runs where the phase happened).\n\n")
	fmt.Fprintf(&b, "| scenario | passed | first failed probe | site down | DNS committed | alert firing | every server | first new client | running clients recover |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range sum.Scenarios {
		fmt.Fprintf(&b, "| %s | %d/%d", s.Scenario, s.Passed, s.Runs)
		for _, n := range phaseNames {
			st, ok := s.Phases[n]
			fmt.Fprintf(&b, " | %s", fmtStat(st, ok))
		}
		fmt.Fprintf(&b, " |\n")
	}
	fmt.Fprintf(&b, "\nIssuances lost per retry policy (all runs), and real clients' failed runs:\n\n| scenario | lost per policy | real clients: failed/runs, drills that kept the account |\n|---|---|---|\n")
	for _, s := range sum.Scenarios {
		var lost, real []string
		for _, p := range sortedKeys(s.Lost) {
			lost = append(lost, fmt.Sprintf("%s %d/%d", p, s.Lost[p][0], s.Lost[p][1]))
		}
		for _, c := range sortedKeys(s.Real) {
			real = append(real, fmt.Sprintf("%s %d/%d, %d/%d", c, s.Real[c][0], s.Real[c][1], s.Real[c][2], s.Runs))
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", s.Scenario, strings.Join(lost, "; "), strings.Join(real, "; "))
	}
	fmt.Fprintf(&b, "\nReal clients: seconds from the name settling to their first renewal after the fault, p50 (min–max, runs where they renewed):\n\n| scenario | per client |\n|---|---|\n")
	for _, s := range sum.Scenarios {
		var parts []string
		for _, c := range sortedKeys(s.Renewed) {
			parts = append(parts, c+" "+fmtStat(s.Renewed[c], true))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", s.Scenario, strings.Join(parts, "; "))
	}
	for _, s := range sum.Scenarios {
		if len(s.Failures) > 0 {
			fmt.Fprintf(&b, "\n%s failures:\n\n", s.Scenario)
			for _, f := range s.Failures {
				fmt.Fprintf(&b, "* %s\n", f)
			}
		}
	}
	return b.String()
}

// LoadReports reads every report.json under dir (runs of `cairn drill
// run`, also from several invocations), in path order.
func LoadReports(dir string) ([]*Report, error) {
	var reps []*Report
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "report.json" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		reps = append(reps, &r)
		return nil
	})
	if err == nil && len(reps) == 0 {
		err = fmt.Errorf("no report.json under %s", dir)
	}
	return reps, err
}

// Write puts summary.json and summary.md in dir.
func (sum Summary) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "summary.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, "summary.md"), []byte(sum.Markdown()), 0o644)
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
