package drill

import (
	"fmt"
	"strings"
	"time"
)

// UpgradeReport is what an upgrade step did, site by site, from the
// drill's events (pass.upgrade).
type UpgradeReport struct {
	Result string        `json:"result,omitempty"` // done, rolled-back, or "" (errored or interrupted)
	Sites  []UpgradeSite `json:"sites,omitempty"`  // in the order the upgrade took them
	// Total: seconds from the upgrade's start to its result.
	Total *float64 `json:"totalSeconds"`
}

// UpgradeSite is one site's phases.
type UpgradeSite struct {
	Site   string         `json:"site"`
	Phases []UpgradePhase `json:"phases"`
	// DrainedToHealthy and DrainedToUndrained: seconds from the site's
	// drain to its gate passing on the new release, and to it being back
	// in rotation (after its canary).
	DrainedToHealthy   *float64 `json:"drainedToHealthySeconds"`
	DrainedToUndrained *float64 `json:"drainedToUndrainedSeconds"`
}

// UpgradePhase is one phase, in seconds from the upgrade's start.
type UpgradePhase struct {
	Phase  string  `json:"phase"`
	At     float64 `json:"at"`
	Detail string  `json:"detail,omitempty"`
}

func (rep *Report) computeUpgrade() {
	var start time.Time
	bySite := map[string]*UpgradeSite{}
	var order []string
	var drained = map[string]time.Time{}
	for _, e := range rep.Events {
		switch {
		case e.Kind == "upgrade-start":
			start = e.At
		case e.Kind == "upgrade-result":
			rep.Upgrade.Result = e.Detail
			rep.Upgrade.Total = secs(start, e.At)
		case strings.HasPrefix(e.Kind, "upgrade-"):
			phase := strings.TrimPrefix(e.Kind, "upgrade-")
			s := bySite[e.Site]
			if s == nil {
				s = &UpgradeSite{Site: e.Site}
				bySite[e.Site] = s
				order = append(order, e.Site)
			}
			s.Phases = append(s.Phases, UpgradePhase{Phase: phase, At: e.At.Sub(start).Seconds(), Detail: e.Detail})
			switch phase {
			case "drained":
				drained[e.Site] = e.At
			case "healthy":
				s.DrainedToHealthy = secs(drained[e.Site], e.At)
			case "done", "rolled-back":
				s.DrainedToUndrained = secs(drained[e.Site], e.At)
			}
		}
	}
	for _, n := range order {
		rep.Upgrade.Sites = append(rep.Upgrade.Sites, *bySite[n])
	}
}

// judgeUpgrade: the upgrade ended as pass.upgrade says; a rolled-back
// upgrade touched only its first site.
func (rep *Report) judgeUpgrade(sc *Scenario, fail func(string, ...any)) {
	want := sc.Pass.Upgrade
	if want == "" {
		return
	}
	u := rep.Upgrade
	if u.Result != want {
		got := u.Result
		if got == "" {
			got = "no result (errored or interrupted)"
		}
		fail("the upgrade ended %s, the scenario expects %s", got, want)
		return
	}
	if want == UpgradeRolledBack {
		if len(u.Sites) != 1 {
			fail("the rolled-back upgrade touched %d sites; the gate must stop it at the first", len(u.Sites))
		}
	}
}

func (u UpgradeReport) markdown(b *strings.Builder) {
	if len(u.Sites) == 0 && u.Result == "" {
		return
	}
	fmt.Fprintf(b, "\n## Upgrade (seconds from its start)\n\nResult: **%s** in %s.\n\n| site | drained → healthy on the new release | drained → back in rotation | phases |\n|---|---|---|---|\n", orNone(u.Result), fmtSecs(u.Total))
	for _, s := range u.Sites {
		var ps []string
		for _, p := range s.Phases {
			ps = append(ps, fmt.Sprintf("%s %.1f", p.Phase, p.At))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", s.Site, fmtSecs(s.DrainedToHealthy), fmtSecs(s.DrainedToUndrained), strings.Join(ps, ", "))
	}
	for _, s := range u.Sites {
		for _, p := range s.Phases {
			if p.Phase == "rollback" {
				fmt.Fprintf(b, "\n* site %s rolled back because: %s\n", s.Site, p.Detail)
			}
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none (errored or interrupted)"
	}
	return s
}
