package drill

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
)

// Campaign runs scenarios Runs times each against an infrastructure and writes
// every report under Out (one scenario run once: Out itself; otherwise
// Out/SCENARIO/run-K/ and a summary of all runs).
type Campaign struct {
	Infra     Infra
	Scenarios []*Scenario
	Runs      int
	Site      string // the faulted site ("" = the active one)
	Out       string
	// Progress gets a line per finished run (or the whole report of a
	// single run); Log gets the runner's own log.
	Progress, Log io.Writer
	// run runs one scenario (nil: a Runner on the lab; tests give a fake).
	run func(r *Runner, ctx context.Context) (*Report, error)
}

// CampaignResult is what a campaign ran.
type CampaignResult struct {
	Reports []*Report
	Summary *Summary // nil for a single run
	Failed  int
}

func (c *Campaign) single() bool { return len(c.Scenarios) == 1 && c.Runs == 1 }

// Run runs every scenario Runs times, stopping early when ctx ends (every
// fault is restored by the runner).
func (c *Campaign) Run(ctx context.Context) (*CampaignResult, error) {
	if c.Runs < 1 {
		return nil, fmt.Errorf("--runs %d: give 1 or more", c.Runs)
	}
	res := &CampaignResult{}
	for _, sc := range c.Scenarios {
		for k := 1; k <= c.Runs && ctx.Err() == nil; k++ {
			rep, err := c.runOne(ctx, sc, k)
			if err != nil {
				return res, err
			}
			res.Reports = append(res.Reports, rep)
			if !rep.Passed {
				res.Failed++
			}
		}
	}
	if !c.single() {
		sum := Summarize(res.Reports)
		res.Summary = &sum
		if err := res.Summary.Write(c.Out); err != nil {
			return res, fmt.Errorf("--out %s: %w", c.Out, err)
		}
		fmt.Fprintf(c.Progress, "%s\nsummary: %s/summary.md\n", res.Summary.Markdown(), c.Out)
	}
	return res, nil
}

func (c *Campaign) runOne(ctx context.Context, sc *Scenario, k int) (*Report, error) {
	dir := c.Out
	if !c.single() {
		dir = filepath.Join(c.Out, sc.Name, fmt.Sprintf("run-%d", k))
	}
	r := &Runner{Infra: c.Infra, Scenario: sc, Site: c.Site, Log: c.Log}
	run := (*Runner).Run
	if c.run != nil {
		run = c.run
	}
	rep, err := run(r, ctx)
	if err != nil {
		return nil, fmt.Errorf("%s run %d: %w", sc.Name, k, err)
	}
	if err := rep.Write(dir); err != nil {
		return nil, fmt.Errorf("--out %s: %w", c.Out, err)
	}
	if c.single() {
		fmt.Fprintf(c.Progress, "%s\nreport: %s/report.html\n", rep.Markdown(), dir)
	} else {
		fmt.Fprintf(c.Progress, "%s run %d: passed %v, report %s/report.html\n", sc.Name, k, rep.Passed, dir)
	}
	return rep, nil
}
