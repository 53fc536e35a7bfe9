package healthcheck

import (
	"sort"
	"time"
)

// Sample is one stored probe result, as the availability report needs it.
type Sample struct {
	Site       string    `json:"site"`
	Kind       string    `json:"kind"`
	At         time.Time `json:"at"`
	OK         bool      `json:"ok"`
	FailedStep string    `json:"failedStep,omitempty"`
	ActiveSite string    `json:"activeSite,omitempty"` // dns samples: the site the ACME name pointed to
}

// Outage is one interval during which a site (or the service) was down.
type Outage struct {
	Start       time.Time     `json:"start"`
	End         time.Time     `json:"end"`
	Duration    time.Duration `json:"-"`
	Seconds     float64       `json:"seconds"`
	FailingStep string        `json:"failingStep"`
	Ongoing     bool          `json:"ongoing,omitempty"`
}

// Availability of one site, or of the service through the ACME name.
type Availability struct {
	Name      string   `json:"name"`
	Samples   int      `json:"samples"`
	UptimePct float64  `json:"uptimePct"`
	Outages   []Outage `json:"outages"`
	// FailedShare answers "for a client that retries for W, what share of
	// certificate requests would have failed": by retry window ("0s",
	// "30s", "2m0s", "10m0s"), as a fraction of time.
	FailedShare map[string]float64 `json:"failedShare"`
}

// Report is the availability report.
type Report struct {
	From    time.Time      `json:"from"`
	To      time.Time      `json:"to"`
	Kind    string         `json:"kind"`
	Sites   []Availability `json:"sites"`
	Service *Availability  `json:"service,omitempty"`
}

// RetryWindows are the client retry behaviours the report evaluates.
var RetryWindows = []time.Duration{0, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}

// state is a step function: each sample's outcome holds until the next.
type state struct {
	at   time.Time
	ok   bool
	step string
}

// Compute builds the report over [from, to] from samples of the given kind
// (issuance: can a client get a certificate). A site's state changes at
// each of its samples and holds until the next; before its first sample it
// is unknown and not counted. The service is the site the ACME name
// pointed to (dns samples) at each moment.
func Compute(samples []Sample, kind string, from, to time.Time) Report {
	sort.SliceStable(samples, func(i, j int) bool { return samples[i].At.Before(samples[j].At) })
	rep := Report{From: from, To: to, Kind: kind}
	bySite := map[string][]state{}
	var sites []string
	var active []struct {
		at   time.Time
		site string
	}
	for _, s := range samples {
		if s.At.After(to) {
			continue
		}
		if s.Kind == KindDNS && s.ActiveSite != "" {
			active = append(active, struct {
				at   time.Time
				site string
			}{s.At, s.ActiveSite})
		}
		if s.Kind != kind {
			continue
		}
		if _, seen := bySite[s.Site]; !seen {
			sites = append(sites, s.Site)
		}
		bySite[s.Site] = append(bySite[s.Site], state{s.At, s.OK, s.FailedStep})
	}
	sort.Strings(sites)
	for _, site := range sites {
		rep.Sites = append(rep.Sites, availability(site, bySite[site], from, to))
	}
	if len(active) > 0 {
		// The service's state: the active site's state at each change of either.
		var svc []state
		times := []time.Time{}
		for _, a := range active {
			times = append(times, a.at)
		}
		for _, st := range bySite {
			for _, x := range st {
				times = append(times, x.at)
			}
		}
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
		// One pass: times only grow, so the active site's index and each
		// site's state index only move forward (30 days of samples stay
		// linear).
		ai, next := -1, map[string]int{} // next[site]: index of its first state after t
		for _, t := range times {
			for ai+1 < len(active) && !active[ai+1].at.After(t) {
				ai++
			}
			if ai < 0 {
				continue
			}
			site := active[ai].site
			st, i := bySite[site], next[site]
			for i < len(st) && !st[i].at.After(t) {
				i++
			}
			next[site] = i
			if i == 0 {
				continue
			}
			svc = append(svc, state{t, st[i-1].ok, st[i-1].step})
		}
		a := availability("service", svc, from, to)
		rep.Service = &a
	}
	return rep
}

// availability turns a step function into uptime, outages and the failed
// share per retry window: a client starting at t that retries for W fails
// only if the service is down for all of [t, t+W], so an outage of length
// D fails the starts in a span of max(0, D-W).
func availability(name string, st []state, from, to time.Time) Availability {
	a := Availability{Name: name, Outages: []Outage{}, FailedShare: map[string]float64{}}
	var known time.Duration
	var cur *Outage
	for i, s := range st {
		if s.at.After(to) {
			break
		}
		if !s.at.Before(from) {
			a.Samples++
		}
		end := to
		if i+1 < len(st) && st[i+1].at.Before(to) {
			end = st[i+1].at
		}
		start := s.at
		if start.Before(from) {
			start = from
		}
		if s.ok && cur != nil {
			a.Outages = append(a.Outages, *cur)
			cur = nil
		}
		if !end.After(start) {
			continue // no time in the report's span
		}
		known += end.Sub(start)
		if !s.ok {
			if cur == nil {
				cur = &Outage{Start: start, FailingStep: s.step}
			}
			cur.End = end
		}
	}
	if cur != nil {
		cur.Ongoing = true
		a.Outages = append(a.Outages, *cur)
	}
	var down time.Duration
	for i := range a.Outages {
		o := &a.Outages[i]
		o.Duration = o.End.Sub(o.Start)
		o.Seconds = o.Duration.Seconds()
		down += o.Duration
	}
	if known > 0 {
		a.UptimePct = 100 * (1 - down.Seconds()/known.Seconds())
		for _, w := range RetryWindows {
			var failed time.Duration
			for _, o := range a.Outages {
				if o.Duration > w {
					failed += o.Duration - w
				}
			}
			a.FailedShare[w.String()] = failed.Seconds() / known.Seconds()
		}
	}
	return a
}

// StepStats are percentiles of one step's duration.
type StepStats struct {
	Site  string  `json:"site"`
	Kind  string  `json:"kind"`
	Step  string  `json:"step"`
	Count int     `json:"count"`
	P50ms float64 `json:"p50ms"`
	P95ms float64 `json:"p95ms"`
}

// Percentiles summarises step timings (nearest-rank percentiles).
func Percentiles(timings map[[3]string][]float64) []StepStats {
	var out []StepStats
	for k, v := range timings {
		sort.Float64s(v)
		rank := func(p float64) float64 {
			i := int(float64(len(v))*p+0.999999) - 1
			return v[max(0, min(i, len(v)-1))]
		}
		out = append(out, StepStats{Site: k[0], Kind: k[1], Step: k[2], Count: len(v), P50ms: rank(0.5), P95ms: rank(0.95)})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Site != b.Site {
			return a.Site < b.Site
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Step < b.Step
	})
	return out
}
