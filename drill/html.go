package drill

import (
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"
)

// The HTML report is one file: inline CSS and SVG, no script, no fetch.

type svgRect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type svgMark struct {
	X     float64
	Label string
	Class string
}

type svgLane struct {
	Y     float64
	Label string
}

type htmlView struct {
	*Report
	Width, Height float64
	Lanes         []svgLane
	Rects         []svgRect
	Marks         []svgMark
	Ticks         []svgMark
	Verdict       string
}

const (
	svgLeft  = 150.0
	svgWidth = 900.0
	laneH    = 22.0
)

// view lays out the report's timeline: a lane per site, one for the ACME
// name, one per retry policy and one per real client, with the events
// marked and ticks along the time axis.
func (rep *Report) view() htmlView {
	v := htmlView{Report: rep, Width: svgLeft + svgWidth + 20, Verdict: "PASSED"}
	if !rep.Passed {
		v.Verdict = "FAILED"
	}
	span := rep.End.Sub(rep.Start).Seconds()
	if span <= 0 {
		span = 1
	}
	l := &layout{v: &v, rep: rep, span: span, y: 30}
	l.siteLanes()
	l.activeLane()
	l.clientLanes()
	l.realLanes()
	l.marks()
	l.ticks()
	v.Height = l.y + 30
	return v
}

// layout places the timeline's lanes top to bottom, with the drill's time
// (span seconds from its start) along the x axis.
type layout struct {
	v    *htmlView
	rep  *Report
	span float64
	y    float64 // the next lane's top
}

// x is where t falls on the time axis (clamped to the drill).
func (l *layout) x(t time.Time) float64 {
	s := t.Sub(l.rep.Start).Seconds()
	return svgLeft + svgWidth*min(max(s, 0), l.span)/l.span
}

// lane adds a lane below the others and returns its top.
func (l *layout) lane(label string) float64 {
	l.v.Lanes = append(l.v.Lanes, svgLane{Y: l.y, Label: label})
	l.y += laneH + 6
	return l.y - laneH - 6
}

// bar adds a rectangle from one time to another.
func (l *layout) bar(from, to time.Time, y, h float64, class, title string) {
	l.v.Rects = append(l.v.Rects, svgRect{X: l.x(from), Y: y, W: l.x(to) - l.x(from), H: h, Class: class, Title: title})
}

// siteLanes are the sites' health, from the controller's state changes.
func (l *layout) siteLanes() {
	rep := l.rep
	sites := map[string][]Event{}
	var names []string
	for _, e := range rep.Events {
		if e.Kind == "site-state" {
			if _, ok := sites[e.Site]; !ok {
				names = append(names, e.Site)
			}
			sites[e.Site] = append(sites[e.Site], e)
		}
	}
	for _, n := range []string{rep.ActiveBefore, rep.FaultedSite} {
		if _, ok := sites[n]; !ok && n != "" {
			names = append(names, n)
			sites[n] = nil
		}
	}
	sort.Strings(names)
	for _, n := range names {
		ly := l.lane("site " + n)
		cur, from := "healthy", rep.Start
		for _, e := range sites[n] {
			state, _, _ := strings.Cut(e.Detail, ":")
			l.bar(from, e.At, ly, laneH, cur, n+" "+cur)
			cur, from = state, e.At
		}
		l.bar(from, rep.End, ly, laneH, cur, n+" "+cur)
	}
}

// activeLane is the active site.
func (l *layout) activeLane() {
	rep := l.rep
	ly := l.lane("ACME name → site")
	cur, from := rep.ActiveBefore, rep.Start
	for _, e := range rep.Events {
		if e.Kind == "dns-committed" {
			l.bar(from, e.At, ly, laneH, "active", "active "+cur)
			cur, from = e.Site, e.At
		}
	}
	l.bar(from, rep.End, ly, laneH, "active", "active "+cur)
}

// attempt adds the bar of one attempt or run (at least 1.5 wide).
func (l *layout) attempt(start, end time.Time, ly float64, class, title string) {
	l.v.Rects = append(l.v.Rects, svgRect{X: l.x(start), Y: ly + 3, W: max(l.x(end)-l.x(start), 1.5), H: laneH - 6, Class: class, Title: title})
}

// clientLanes are the client attempts per policy: one bar per attempt.
func (l *layout) clientLanes() {
	for _, c := range l.rep.Clients {
		ly := l.lane("client " + c.Policy)
		for _, a := range l.rep.Attempts {
			if a.Policy != c.Policy {
				continue
			}
			cls, title := "ok", "issued at "+a.Site
			if !a.OK {
				cls, title = "fail", a.Problem+": "+a.Error
			}
			l.attempt(a.Start, a.End, ly, cls, title)
		}
	}
}

// realLanes are the real clients: one bar per run.
func (l *layout) realLanes() {
	for _, c := range l.rep.Real {
		ly := l.lane(c.Client)
		for _, r := range l.rep.RealRuns {
			if r.Client != c.Client {
				continue
			}
			cls, title := "ok", r.Command+" at "+r.Site
			if !r.OK {
				cls, title = "fail", r.Command+": "+r.Problem+": "+r.Detail
			}
			l.attempt(r.Start, r.End, ly, cls, title)
		}
	}
}

// marks are the faults, the DNS commits and the first new client.
func (l *layout) marks() {
	for _, e := range l.rep.Events {
		switch e.Kind {
		case "fault-injected", "fault-restored", "dns-committed", "first-new-client":
			l.v.Marks = append(l.v.Marks, svgMark{X: l.x(e.At), Label: e.Kind + " " + e.Site, Class: e.Kind})
		}
	}
}

// ticks mark every 10 s along the time axis (every minute past 5 min).
func (l *layout) ticks() {
	step := 10.0
	if l.span > 300 {
		step = 60
	}
	for s := 0.0; s <= l.span; s += step {
		l.v.Ticks = append(l.v.Ticks, svgMark{X: svgLeft + svgWidth*s/l.span, Label: fmt.Sprintf("%.0fs", s)})
	}
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"secs": fmtSecs,
	"sub":  func(a, b float64) float64 { return a - b },
	"add":  func(a, b float64) float64 { return a + b },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cairn drill {{.Scenario}}: {{.Verdict}}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.4em} table{border-collapse:collapse;margin:.8em 0} td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
.PASSED{color:#176f2c}.FAILED{color:#b3261e}
svg text{font:12px system-ui,sans-serif;fill:#333}
rect.healthy{fill:#9fd5a8}rect.suspect{fill:#f3d27a}rect.down{fill:#e8877f}rect.recovering{fill:#9cc3ea}rect.unknown{fill:#ccc}
rect.active{fill:#d9e6f5;stroke:#7a9cc6} rect.ok{fill:#2e8b47} rect.fail{fill:#c62828}
line.fault-injected{stroke:#b3261e;stroke-width:2} line.fault-restored{stroke:#176f2c;stroke-dasharray:4 3}
line.dns-committed{stroke:#1f5fa8;stroke-width:2} line.first-new-client{stroke:#6a1b9a;stroke-dasharray:2 2}
line.tick{stroke:#eee}
</style></head><body>
<h1>Drill <b>{{.Scenario}}</b>: <span class="{{.Verdict}}" id="verdict">{{.Verdict}}</span></h1>
<p>{{.Description}}</p>
<p>Faulted site <b>{{.FaultedSite}}</b>. The ACME name pointed to <b>{{.ActiveBefore}}</b> before and <b id="after">{{.ActiveAfter}}</b> after (epoch {{.EpochBefore}} → {{.EpochAfter}}).</p>
{{if .Failures}}<ul>{{range .Failures}}<li class="FAILED">{{.}}</li>{{end}}</ul>{{end}}
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="timeline">
{{range .Ticks}}<line class="tick" x1="{{.X}}" x2="{{.X}}" y1="20" y2="{{sub $.Height 20}}"/><text x="{{.X}}" y="14" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Lanes}}<text x="4" y="{{add .Y 15}}">{{.Label}}</text>
{{end}}{{range .Rects}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Marks}}<line class="{{.Class}}" x1="{{.X}}" x2="{{.X}}" y1="20" y2="{{sub $.Height 20}}"><title>{{.Label}}</title></line>
{{end}}</svg>
<p><small>Red line: fault injected; dashed green: restored; blue: DNS update committed; dashed purple: first new client issued. Client bars: green issued, red failed (hover for the problem).</small></p>
<h2>Phases (seconds after the fault)</h2>
<table id="phases"><tr><th>first failed probe</th><th>site marked down</th><th>DNS committed</th><th>alert firing</th><th>every server serves it</th><th>first new client issues</th><th>running clients recover</th></tr>
<tr><td>{{secs .Timings.FirstFailedProbe}}</td><td>{{secs .Timings.Detect}}</td><td>{{secs .Timings.Commit}}</td><td>{{secs .Timings.Alert}}</td><td>{{secs .Timings.Visible}}</td><td>{{secs .Timings.FirstSuccess}}</td><td>{{secs .Timings.FirstWorkloadSuccess}}</td></tr></table>
<h2>Clients</h2>
<table id="clients"><tr><th>retry policy</th><th>issuances</th><th>lost</th><th>attempts</th><th>failed attempts</th></tr>
{{range .Clients}}<tr><td>{{.Policy}}</td><td>{{.Issuances}}</td><td>{{.Failed}}</td><td>{{.Attempts}}</td><td>{{.FailedTries}}</td></tr>
{{end}}</table>
{{if .Problems}}<h3>Failed attempts by problem</h3><ul>{{range $k, $v := .Problems}}<li><code>{{$k}}</code>: {{$v}}</li>{{end}}</ul>{{end}}
{{if .SkippedClients}}<h2>Real clients not run</h2><ul>{{range .SkippedClients}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .Real}}<h2>Real clients</h2><p>certbot and lego issue once before the fault, then renew with their stored account.</p>
<table id="real"><tr><th>client</th><th>challenge (client host)</th><th>runs</th><th>failed</th><th>kept its account</th><th>recovered after</th><th>renewed after the name settled</th></tr>
{{range .Real}}<tr><td>{{.Client}}</td><td>{{.Where}}</td><td>{{.Runs}}</td><td>{{.Failed}}</td><td>{{.AccountKept}}</td><td>{{secs .Recovered}}</td><td>{{secs .RenewedAfter}}</td></tr>
{{end}}</table>
<table>{{range .RealRuns}}<tr><td>{{.Start.Format "15:04:05.000"}}</td><td>{{.Client}} {{.Command}}</td><td>{{.Site}}</td><td>{{if .OK}}ok{{if .Profile}}, profile {{.Profile}}, certificate valid {{.Validity}} (profile: {{.WantValidity}}){{end}}{{else}}<span class="FAILED">{{.Problem}}</span>: {{.Detail}}{{end}}</td></tr>{{end}}</table>{{end}}
<h2>Events</h2>
<table>{{range .Events}}<tr><td>{{.At.Format "15:04:05.000"}}</td><td>{{.Kind}}</td><td>{{.Site}}</td><td>{{.Detail}}</td></tr>{{end}}</table>
</body></html>
`))
