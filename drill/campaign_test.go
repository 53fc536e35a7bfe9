package drill

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRuns is a campaign's runner that passes every run but the failing
// ones (1-based, over the whole campaign) and records what it ran.
func fakeRuns(failing map[int]bool, ran *[]string) func(*Runner, context.Context) (*Report, error) {
	return func(r *Runner, _ context.Context) (*Report, error) {
		*ran = append(*ran, r.Scenario.Name+"@"+r.Site)
		n := len(*ran)
		rep := &Report{Scenario: r.Scenario.Name, Passed: !failing[n], Timings: Timings{Commit: f(float64(n))}, Start: at(0), End: at(10)}
		if failing[n] {
			rep.Failures = []string{"slow"}
		}
		return rep, nil
	}
}

// A campaign runs each scenario Runs times, writes each report under
// Out/SCENARIO/run-K and a summary of all, counts the failed runs and
// prints a line per run.
func TestCampaignRunsAndSummarizes(t *testing.T) {
	out := t.TempDir()
	var progress bytes.Buffer
	var ran []string
	c := &Campaign{Scenarios: []*Scenario{{Name: "x"}, {Name: "y"}}, Runs: 2, Site: "b", Out: out, Progress: &progress,
		run: fakeRuns(map[int]bool{2: true}, &ran)}
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ran, " ") != "x@b x@b y@b y@b" || len(res.Reports) != 4 || res.Failed != 1 || res.Summary == nil {
		t.Fatalf("ran %v, result %+v", ran, res)
	}
	for _, d := range []string{"x/run-1", "x/run-2", "y/run-1", "y/run-2"} {
		if _, err := os.Stat(filepath.Join(out, d, "report.html")); err != nil {
			t.Errorf("report %s: %v", d, err)
		}
	}
	if rep := readReport(t, filepath.Join(out, "x", "run-2")); rep.Passed || *rep.Timings.Commit != 2 {
		t.Errorf("x run 2's report: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(out, "summary.md")); err != nil {
		t.Error(err)
	}
	p := progress.String()
	for _, want := range []string{"x run 2: passed false, report " + filepath.Join(out, "x", "run-2") + "/report.html", "summary: " + out + "/summary.md", "| x | 1/2 |"} {
		if !strings.Contains(p, want) {
			t.Errorf("progress lacks %q:\n%s", want, p)
		}
	}
}

// One scenario run once writes its report in Out itself and prints it;
// a runner's error stops the campaign naming the run; --runs 0 is refused.
func TestCampaignSingleRunAndErrors(t *testing.T) {
	out := t.TempDir()
	var progress bytes.Buffer
	var ran []string
	c := &Campaign{Scenarios: []*Scenario{{Name: "x"}}, Runs: 1, Out: out, Progress: &progress, run: fakeRuns(nil, &ran)}
	res, err := c.Run(context.Background())
	if err != nil || res.Summary != nil || res.Failed != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	if rep := readReport(t, out); rep.Scenario != "x" {
		t.Errorf("report in --out: %+v", rep)
	}
	if !strings.Contains(progress.String(), "# Drill x: PASSED") || !strings.Contains(progress.String(), "report: "+out+"/report.html") {
		t.Errorf("progress:\n%s", progress.String())
	}
	if _, err := os.Stat(filepath.Join(out, "summary.md")); err == nil {
		t.Error("a single run wrote a summary")
	}

	c.Runs = 0
	if _, err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--runs 0") {
		t.Errorf("--runs 0: %v", err)
	}
	c.Runs = 3
	c.run = func(r *Runner, _ context.Context) (*Report, error) { return nil, errors.New("steady state: a is down") }
	if _, err := c.Run(context.Background()); err == nil || err.Error() != "x run 1: steady state: a is down" {
		t.Errorf("a failed run: %v", err)
	}
}
