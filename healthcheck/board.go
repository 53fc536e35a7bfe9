package healthcheck

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Board is what a status page shows of the probes, from the history: each
// site's latest results (failing step, ACME problem, HTTP status), its
// per-step latency over the last hour with its outages, and availability
// (uptime, outages with their failing step, failed share per retry
// window) over 1 h, 24 h and 30 d, the last two cached. It also exports
// the availability as metrics for dashboards. The failover controller's
// page and `cairn probe --watch` use the same Board.
type Board struct {
	History *History
	Now     func() time.Time

	mu     sync.Mutex
	cache  map[time.Duration]cachedReport
	share  *prometheus.GaugeVec
	uptime *prometheus.GaugeVec
}

type cachedReport struct {
	rep Report
	at  time.Time
}

// BoardWindows are the availability windows, each with how long its
// report may be reused.
var BoardWindows = []struct {
	Span, Reuse time.Duration
	Label       string
}{{time.Hour, 0, "1h"}, {24 * time.Hour, time.Minute, "24h"}, {30 * 24 * time.Hour, 10 * time.Minute, "30d"}}

// chartSpan is the span of the latency charts.
const chartSpan = time.Hour

// NewBoard reads h; with reg, it registers the availability metrics.
func NewBoard(h *History, reg prometheus.Registerer) *Board {
	b := &Board{History: h, Now: time.Now, cache: map[time.Duration]cachedReport{}}
	if reg != nil {
		b.share = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_availability_failed_share",
			Help: "Share of certificate requests a client retrying for `window` would have lost over `range` (issuance probes; scope: service = through the ACME name, or a site)."},
			[]string{"scope", "window", "range"})
		b.uptime = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_availability_uptime_ratio",
			Help: "Share of `range` during which issuance worked (scope: service = through the ACME name, or a site)."}, []string{"scope", "range"})
		reg.MustRegister(b.share, b.uptime)
	}
	return b
}

// SiteBoard is one site on the board.
type SiteBoard struct {
	Name    string
	Latest  []Result // one per kind, by kind
	Failing []Failing
	Chart   Chart
}

// Failing is a kind whose latest run failed, and where.
type Failing struct {
	Kind, Step, Class, Problem, Detail string
	HTTPStatus                         int
	At                                 time.Time
}

// BoardView is the board at one moment.
type BoardView struct {
	At           time.Time
	Sites        []SiteBoard
	Availability []WindowReport
}

// HideDetails replaces the details of kind's failing steps with note
// (the controller's status page shows replication errors, which quote
// rows, only to holders of the operator token).
func (v *BoardView) HideDetails(kind, note string) {
	for i := range v.Sites {
		s := &v.Sites[i]
		for j := range s.Failing {
			if s.Failing[j].Kind == kind && s.Failing[j].Detail != "" {
				s.Failing[j].Detail = note
			}
		}
		for j := range s.Latest {
			if s.Latest[j].Kind != kind {
				continue
			}
			steps := slices.Clone(s.Latest[j].Steps)
			for k := range steps {
				if steps[k].Detail != "" {
					steps[k].Detail = note
				}
			}
			s.Latest[j].Steps = steps
		}
	}
}

// WindowReport is the availability over one window.
type WindowReport struct {
	Label  string
	Report Report
}

// View reads the history and builds the board.
func (b *Board) View(ctx context.Context) (*BoardView, error) {
	now := b.Now()
	v := &BoardView{At: now}
	latest, err := b.History.Latest(ctx)
	if err != nil {
		return nil, err
	}
	recent, err := b.History.ResultsOf(ctx, now.Add(-chartSpan), KindIssuance)
	if err != nil {
		return nil, err
	}
	for _, w := range BoardWindows {
		rep, err := b.report(ctx, w.Span, w.Reuse, now)
		if err != nil {
			return nil, err
		}
		v.Availability = append(v.Availability, WindowReport{Label: w.Label, Report: rep})
	}
	bySite := map[string]*SiteBoard{}
	site := func(name string) *SiteBoard {
		if bySite[name] == nil {
			bySite[name] = &SiteBoard{Name: name}
		}
		return bySite[name]
	}
	for _, r := range latest {
		if r.Kind == KindDNS {
			continue // the cluster's, not the site's
		}
		s := site(r.Site)
		s.Latest = append(s.Latest, r)
		if f := r.FailedStep(); !r.OK && f != nil {
			s.Failing = append(s.Failing, Failing{Kind: r.Kind, Step: f.Name, Class: f.ErrorClass, Problem: ProblemType(f.ACMEProblemType),
				HTTPStatus: f.HTTPStatus, Detail: f.Detail, At: r.Started})
		}
	}
	var hour *Report
	if len(v.Availability) > 0 {
		hour = &v.Availability[0].Report
	}
	perSite := map[string][]Result{}
	for _, r := range recent {
		perSite[r.Site] = append(perSite[r.Site], r)
	}
	for name, rs := range perSite {
		site(name).Chart = latencyChart(rs, outagesOf(hour, name), now.Add(-chartSpan), now)
	}
	for _, s := range bySite {
		if s.Chart.Width == 0 {
			s.Chart = latencyChart(nil, outagesOf(hour, s.Name), now.Add(-chartSpan), now)
		}
		v.Sites = append(v.Sites, *s)
	}
	sort.Slice(v.Sites, func(i, j int) bool { return v.Sites[i].Name < v.Sites[j].Name })
	return v, nil
}

func outagesOf(rep *Report, site string) []Outage {
	if rep == nil {
		return nil
	}
	for _, a := range rep.Sites {
		if a.Name == site {
			return a.Outages
		}
	}
	return nil
}

// report is the availability over [now-span, now], reused for reuse.
func (b *Board) report(ctx context.Context, span, reuse time.Duration, now time.Time) (Report, error) {
	b.mu.Lock()
	c, ok := b.cache[span]
	b.mu.Unlock()
	// A report without sites (a history that had nothing yet) is not
	// reused: it would hide the first samples for the whole reuse span.
	if ok && reuse > 0 && now.Sub(c.at) < reuse && len(c.rep.Sites) > 0 {
		return c.rep, nil
	}
	from := now.Add(-span)
	before, err := b.History.Before(ctx, from)
	if err != nil {
		return Report{}, err
	}
	samples, err := b.History.SamplesOf(ctx, from, KindIssuance, KindDNS)
	if err != nil {
		return Report{}, err
	}
	rep := Compute(append(before, samples...), KindIssuance, from, now)
	b.mu.Lock()
	b.cache[span] = cachedReport{rep, now}
	b.mu.Unlock()
	return rep, nil
}

// Export computes every window and sets the availability metrics.
func (b *Board) Export(ctx context.Context) error {
	if b.share == nil {
		return nil
	}
	now := b.Now()
	for _, w := range BoardWindows {
		rep, err := b.report(ctx, w.Span, w.Reuse, now)
		if err != nil {
			return err
		}
		all := rep.Sites
		if rep.Service != nil {
			all = append([]Availability{*rep.Service}, all...)
		}
		for _, a := range all {
			if a.Samples == 0 && len(a.Outages) == 0 {
				continue
			}
			b.uptime.WithLabelValues(a.Name, w.Label).Set(a.UptimePct / 100)
			for _, rw := range RetryWindows {
				b.share.WithLabelValues(a.Name, retryLabel(rw), w.Label).Set(a.FailedShare[rw.String()])
			}
		}
	}
	return nil
}

// retryLabel names a retry window for people: 0s, 30s, 2m, 10m.
func retryLabel(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return d.String()
}

// Run exports the availability metrics every interval until ctx ends.
func (b *Board) Run(ctx context.Context, every time.Duration) {
	for {
		b.Export(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
