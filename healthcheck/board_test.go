package healthcheck

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The board of a history where site b's finalize fails for the last ten
// minutes while a issues and the ACME name moved from b to a.
// boardHistory is an empty history and the board's clock.
func boardHistory(t *testing.T) (*History, time.Time) {
	h, err := OpenHistory(filepath.Join(t.TempDir(), "h.db"), 31*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
}

func TestBoardShowsTheFailingStepLatencyAndAvailability(t *testing.T) {
	h, now := boardHistory(t)
	ctx := context.Background()
	ok := func(name string, ms int) Step {
		return Step{Name: name, OK: true, Duration: time.Duration(ms) * time.Millisecond}
	}
	for at := now.Add(-50 * time.Minute); at.Before(now); at = at.Add(15 * time.Second) {
		h.Record(ctx, Result{Site: "a", Kind: KindIssuance, OK: true, Started: at, Steps: []Step{ok("directory", 4), ok("newOrder", 12), ok("finalize", 90)}})
		r := Result{Site: "b", Kind: KindIssuance, OK: true, Started: at, Steps: []Step{ok("directory", 5), ok("newOrder", 14), ok("finalize", 110)}}
		active := "b"
		if at.After(now.Add(-10 * time.Minute)) {
			r.OK = false
			r.Steps[2] = Step{Name: "finalize", ErrorClass: ClassACME, ACMEProblemType: "urn:ietf:params:acme:error:serverInternal", HTTPStatus: 500, Detail: "HSM unavailable"}
			active = "a"
		}
		h.Record(ctx, r)
		h.Record(ctx, Result{Site: "cluster", Kind: KindDNS, OK: true, Started: at, Facts: map[string]string{"activeSite": active}})
	}
	reg := prometheus.NewRegistry()
	b := NewBoard(h, reg)
	b.Now = func() time.Time { return now }
	v, err := b.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Sites) != 2 || v.Sites[1].Name != "b" {
		t.Fatalf("sites %+v", v.Sites)
	}
	sb := v.Sites[1]
	if len(sb.Failing) != 1 || sb.Failing[0].Step != "finalize" || sb.Failing[0].Problem != "serverInternal" || sb.Failing[0].HTTPStatus != 500 {
		t.Errorf("b failing %+v", sb.Failing)
	}
	if len(v.Sites[0].Failing) != 0 {
		t.Errorf("a failing %+v", v.Sites[0].Failing)
	}
	if len(sb.Chart.Lines) != 3 || len(sb.Chart.Shades) != 1 || len(v.Sites[0].Chart.Shades) != 0 {
		t.Errorf("b chart: %d lines, %d shades; a: %d shades", len(sb.Chart.Lines), len(sb.Chart.Shades), len(v.Sites[0].Chart.Shades))
	}
	// Durations survive the history: a's finalize line sits at 90 ms.
	for _, l := range v.Sites[0].Chart.Lines {
		if l.Step == "finalize" && l.Last != "90 ms" {
			t.Errorf("a's finalize legend %q, want 90 ms (durations read back from the history)", l.Last)
		}
	}
	if len(v.Availability) != 3 || v.Availability[0].Label != "1h" {
		t.Fatalf("windows %+v", v.Availability)
	}
	hour := v.Availability[0].Report
	if hour.Service == nil || hour.Service.UptimePct < 99 {
		t.Errorf("service over the hour %+v: the name moved to a, which issued", hour.Service)
	}
	html, err := BoardHTML(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="site-b"`, `<b class="step">finalize</b>`, `<code class="problem">serverInternal</code>`, `<span class="status">500</span>`,
		`<polyline`, `<rect class="down"`, `id="availability"`, "lost, retry 2m", "HSM unavailable"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("board HTML lacks %s", want)
		}
	}
	if err := b.Export(ctx); err != nil {
		t.Fatal(err)
	}
	// b was down 10 of its 50 minutes: a client retrying 2 minutes lost 8.
	if got := testutil.ToFloat64(b.share.WithLabelValues("b", "2m", "24h")); got < 0.15 || got > 0.17 {
		t.Errorf("b's failed share, retry 2m over 24h = %v, want 8/50", got)
	}
	if got := testutil.ToFloat64(b.uptime.WithLabelValues("service", "1h")); got < 0.99 {
		t.Errorf("service uptime over 1h = %v", got)
	}
}

// A controller that starts with an empty history shows its first samples
// in every window at once, not after the 24 h and 30 d reports' reuse.
func TestBoardDoesNotKeepAnEmptyReport(t *testing.T) {
	h, now := boardHistory(t)
	ctx := context.Background()
	b := NewBoard(h, nil)
	b.Now = func() time.Time { return now }
	if _, err := b.View(ctx); err != nil {
		t.Fatal(err)
	}
	h.Record(ctx, Result{Site: "a", Kind: KindIssuance, OK: true, Started: now.Add(time.Second)})
	now = now.Add(10 * time.Second)
	v, err := b.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Availability {
		if len(w.Report.Sites) != 1 {
			t.Errorf("window %s: %d sites 10 s after the first sample", w.Label, len(w.Report.Sites))
		}
	}
}

// HideDetails hides one kind's details, in the failing list and in the
// latest results, without touching the others or the history they came from.
func TestBoardHidesOneKindsDetails(t *testing.T) {
	latest := []Result{{Kind: KindReplication, Steps: []Step{{Name: "from b", Detail: "row with mailto:x@example.net"}}},
		{Kind: KindIssuance, Steps: []Step{{Name: "finalize", Detail: "HSM unavailable"}}}}
	v := &BoardView{Sites: []SiteBoard{{Name: "a", Latest: slices.Clone(latest),
		Failing: []Failing{{Kind: KindReplication, Detail: "row with mailto:x@example.net"}, {Kind: KindIssuance, Detail: "HSM unavailable"}}}}}
	v.HideDetails(KindReplication, "hidden")
	s := v.Sites[0]
	if s.Failing[0].Detail != "hidden" || s.Latest[0].Steps[0].Detail != "hidden" {
		t.Errorf("replication details shown: %+v", s)
	}
	if s.Failing[1].Detail != "HSM unavailable" || s.Latest[1].Steps[0].Detail != "HSM unavailable" {
		t.Errorf("other kinds' details hidden: %+v", s)
	}
	if latest[0].Steps[0].Detail == "hidden" {
		t.Error("the results the board was made from were changed")
	}
}
