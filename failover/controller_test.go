package failover

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/revocation"
)

// rig is one controller on a fake DNS with a fake clock. Tests call
// step() themselves: one decision each, nothing runs in the background.
type rig struct {
	t    *testing.T
	c    *Controller
	dns  *acmedns.Fake
	now  time.Time
	fail map[string]bool // sites whose pre-move check fails
	reg  *prometheus.Registry
}

const (
	addrA = "127.0.69.10"
	addrB = "127.0.69.11"
	addrC = "127.0.69.12"
)

func newRig(t *testing.T, mod func(*Policy)) *rig {
	t.Helper()
	spec := cluster.Default([]string{"a", "b", "c"})
	spec.Sites[0].Address, spec.Sites[1].Address, spec.Sites[2].Address = addrA, addrB, addrC
	spec.ACME.TTL = 30
	r := &rig{t: t, now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), fail: map[string]bool{}, reg: prometheus.NewRegistry()}
	r.dns = acmedns.NewFake([]string{addrA}, 30, acmedns.Epoch{N: 0, Site: "a", Controller: "seed", Reason: "initial"})
	p := Policy{DownAfter: 3, UpAfter: 2, StablePeriod: 10 * time.Second, HoldDown: time.Minute, Failback: cluster.FailbackManual, Quorum: 1,
		Priority: map[string]int{"a": 1, "b": 2, "c": 3}, Sites: []string{"a", "b", "c"}}
	if mod != nil {
		mod(&p)
	}
	r.c = &Controller{Spec: spec, ID: "test", DNS: r.dns, Policy: p, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return r.now },
		Confirm: func(_ context.Context, site string) error {
			if r.fail[site] {
				// As the daemon's check does: its result is a probe result too.
				r.hard(site)
				return errors.New("refused")
			}
			return nil
		}}
	if err := r.c.Init(context.Background(), r.reg); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) advance(d time.Duration) { r.now = r.now.Add(d) }

// ok feeds deep successes for sites, one second apart, until each is
// healthy (UpAfter results over StablePeriod).
func (r *rig) healthy(sites ...string) {
	r.t.Helper()
	for range r.c.Policy.UpAfter {
		for _, s := range sites {
			r.c.Sink(healthcheck.Result{Site: s, Kind: healthcheck.KindAccount, OK: true, Started: r.now, Steps: []healthcheck.Step{{Name: "account", OK: true}}})
		}
		r.advance(r.c.Policy.StablePeriod/time.Duration(r.c.Policy.UpAfter) + time.Second)
		r.step()
	}
	for _, s := range sites {
		if st := r.site(s); st.State != Healthy {
			r.t.Fatalf("%s not healthy: %+v", s, st)
		}
	}
}

// down feeds DownAfter hard failures of site.
func (r *rig) down(site string) {
	for range r.c.Policy.DownAfter {
		r.hard(site)
	}
}

func (r *rig) hard(site string) {
	r.c.Sink(healthcheck.Result{Site: site, Kind: healthcheck.KindNonce, Started: r.now,
		Steps: []healthcheck.Step{{Name: "directory", ErrorClass: healthcheck.ClassRefused}}})
}

func (r *rig) step() {
	r.c.step(context.Background())
}

func (r *rig) site(name string) SiteStatus {
	for _, s := range r.c.Status().Sites {
		if s.Name == name {
			return s
		}
	}
	r.t.Fatalf("no site %s", name)
	return SiteStatus{}
}

// served is the site DNS points to now.
func (r *rig) served() string {
	cur, err := r.dns.Read(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return r.c.Spec.SiteAt(cur.Addrs...)
}

func (r *rig) ttl() uint32 {
	cur, _ := r.dns.Read(context.Background())
	return cur.TTL
}

func (r *rig) moves(cause Cause) float64 {
	return testutil.ToFloat64(r.c.metrics.moves.WithLabelValues(string(cause)))
}

// The controller's paths, each against the fake DNS and a fake clock.
func TestControllerDecidesAndMoves(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, r *rig)
	}{
		{"active down moves to the best healthy site", func(t *testing.T, r *rig) {
			r.healthy("a", "b", "c")
			r.down("a")
			r.step()
			if r.served() != "b" || r.c.Status().Active != "b" {
				t.Fatalf("served %s, active %s", r.served(), r.c.Status().Active)
			}
			cur, _ := r.dns.Read(context.Background())
			if cur.Epoch.N != 1 || cur.Epoch.Site != "b" || cur.Epoch.Controller != "test" || !strings.Contains(cur.Epoch.Reason, "active site a is down") || !cur.Epoch.Time.Equal(r.now) {
				t.Fatalf("epoch: %+v", cur.Epoch)
			}
			mv := r.c.Status().Moves
			if len(mv) != 1 || mv[0].Cause != CauseDown || mv[0].From != "a" || mv[0].To != "b" {
				t.Fatalf("moves: %+v", mv)
			}
			if r.moves(CauseDown) != 1 {
				t.Fatalf("moves metric %v", r.moves(CauseDown))
			}
		}},
		{"hold-down: no second move before it ends", func(t *testing.T, r *rig) {
			r.healthy("a", "b", "c")
			r.down("a")
			r.step()
			r.advance(10 * time.Second)
			r.down("b")
			for range 5 {
				r.step()
			}
			if r.served() != "b" || len(r.dns.Writes()) != 1 {
				t.Fatalf("moved during the hold-down: served %s, writes %d", r.served(), len(r.dns.Writes()))
			}
			r.advance(time.Minute)
			r.step()
			if r.served() != "c" {
				t.Fatalf("after the hold-down: served %s", r.served())
			}
		}},
		{"DNS moved by someone else is adopted, not overwritten", func(t *testing.T, r *rig) {
			r.healthy("a", "b", "c")
			r.dns.Set([]string{addrC}, 30, acmedns.Epoch{N: 7, Site: "c", Controller: "operator", Time: r.now})
			r.down("a")
			r.step()
			if r.served() != "c" || r.c.Status().Active != "c" || len(r.dns.Writes()) != 0 {
				t.Fatalf("served %s, active %s, writes %d", r.served(), r.c.Status().Active, len(r.dns.Writes()))
			}
		}},
		{"a target that fails its check is not moved to", func(t *testing.T, r *rig) {
			r.healthy("a", "b", "c")
			r.fail["b"], r.fail["c"] = true, true
			r.down("a")
			r.step()
			if r.served() != "a" || len(r.dns.Writes()) != 0 {
				t.Fatalf("moved to a failing target: served %s", r.served())
			}
			r.fail["c"] = false
			for range 3 {
				r.step()
			}
			if r.served() != "c" {
				t.Fatalf("c passes its check: served %s", r.served())
			}
		}},
		{"a conflicting write is retried from a fresh read", func(t *testing.T, r *rig) {
			r.healthy("a", "b", "c")
			r.dns.FailNext(acmedns.ErrConflict)
			r.down("a")
			r.step()
			if r.served() != "a" || r.c.Status().Active != "a" {
				t.Fatalf("after the conflict: served %s, active %s", r.served(), r.c.Status().Active)
			}
			r.step()
			if r.served() != "b" {
				t.Fatalf("after the retry: served %s", r.served())
			}
			if got := testutil.ToFloat64(r.c.metrics.updates.WithLabelValues("ok")); got != 1 {
				t.Fatalf("ok updates %v", got)
			}
		}},
		{"no healthy site: alert, DNS left alone", func(t *testing.T, r *rig) {
			r.healthy("a", "b", "c")
			r.down("b")
			r.down("c")
			r.step()
			r.down("a")
			r.step()
			if st := r.c.Status(); !st.Alert || r.served() != "a" || len(r.dns.Writes()) != 0 {
				t.Fatalf("alert %v, served %s, writes %+v", st.Alert, r.served(), r.dns.Writes())
			}
			r.healthy("b")
			r.step()
			if st := r.c.Status(); st.Alert || r.served() != "b" {
				t.Fatalf("b healthy: alert %v, served %s", st.Alert, r.served())
			}
		}},
		{"suspect active pre-arms the TTL, recovery restores it", func(t *testing.T, r *rig) {
			r.healthy("a", "b")
			r.hard("a")
			r.step()
			if r.ttl() != 5 || r.served() != "a" {
				t.Fatalf("suspect: TTL %d, served %s", r.ttl(), r.served())
			}
			r.healthy("a")
			if r.ttl() != 30 {
				t.Fatalf("healthy again: TTL %d", r.ttl())
			}
		}},
		{"operator move ignores the hold-down; cause operator", func(t *testing.T, r *rig) {
			r.healthy("a", "b", "c")
			r.down("a")
			r.step()
			if err := r.c.Command(context.Background(), Command{Type: "move", Site: "c"}); err != nil {
				t.Fatal(err)
			}
			r.step()
			if r.served() != "c" || r.moves(CauseOperator) != 1 {
				t.Fatalf("served %s, operator moves %v", r.served(), r.moves(CauseOperator))
			}
		}},
		{"drained active moves with cause drain", func(t *testing.T, r *rig) {
			r.healthy("a", "b")
			r.c.Command(context.Background(), Command{Type: "drain", Site: "a"})
			r.step()
			if r.served() != "b" || r.moves(CauseDrain) != 1 {
				t.Fatalf("served %s, drain moves %v", r.served(), r.moves(CauseDrain))
			}
		}},
		{"automatic failback after the stable period", func(t *testing.T, r *rig) {
			r.c.Policy.Failback = cluster.FailbackAutomatic
			r.healthy("a", "b")
			r.down("a")
			r.step()
			r.advance(2 * time.Minute)
			r.healthy("a")
			r.advance(r.c.Policy.StablePeriod)
			r.step()
			if r.served() != "a" || r.moves(CauseFailback) != 1 {
				t.Fatalf("served %s, failbacks %v", r.served(), r.moves(CauseFailback))
			}
		}},
		{"DNS unreadable: no move, no state change", func(t *testing.T, r *rig) {
			r.healthy("a", "b")
			r.down("a")
			r.dns.FailNext(errors.New("connection refused"))
			r.step()
			if r.c.Status().Active != "a" || len(r.dns.Writes()) != 0 {
				t.Fatalf("active %s, writes %d", r.c.Status().Active, len(r.dns.Writes()))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			tc.run(t, r)
			if d := r.c.Status().Decisions; d == 0 {
				t.Fatal("no decisions counted")
			}
		})
	}
}

// Account replication is shown per site and never votes.
func TestReplicationIsShownNeverVoted(t *testing.T) {
	r := newRig(t, nil)
	r.healthy("a", "b")
	for range 10 {
		r.c.Sink(healthcheck.Result{Site: "a", Kind: healthcheck.KindReplication, Started: r.now,
			Steps: []healthcheck.Step{{Name: "from b", ErrorClass: healthcheck.ClassReplication, Detail: "replication from b not running"}}})
	}
	r.step()
	st := r.c.Status()
	if st.Sites[0].State != Healthy || st.Active != "a" || st.Sites[0].Accounts == nil || st.Sites[0].Accounts.OK ||
		st.Sites[0].Accounts.Detail != "replication from b not running" || st.Sites[1].Accounts != nil {
		t.Fatalf("broken replication at a: %+v", st.Sites)
	}
}

// A controller restarted with a history showing b healthy moments before
// moves the name off a dead a after ResumeConfirm fresh probes of b; the
// same controller without its history waits for the full proof.
func TestRestartedControllerResumesFromHistory(t *testing.T) {
	for _, withHistory := range []bool{true, false} {
		r := newRig(t, func(p *Policy) { p.UpAfter, p.StablePeriod, p.ResumeConfirm = 10, time.Minute, 2 })
		var hist []healthcheck.Result
		for sec := 90; sec > 0; sec -= 2 {
			for _, s := range []string{"a", "b", "c"} {
				hist = append(hist, healthcheck.Result{Site: s, Kind: healthcheck.KindAccount, OK: true, Started: r.now.Add(-time.Duration(sec) * time.Second),
					Steps: []healthcheck.Step{{Name: "account", OK: true}}})
			}
		}
		c := &Controller{Spec: r.c.Spec, ID: "restarted", DNS: r.dns, Policy: r.c.Policy, Log: r.c.Log, Now: r.c.Now, Confirm: r.c.Confirm}
		if withHistory {
			c.History = func(context.Context, time.Time) ([]healthcheck.Result, error) { return hist, nil }
			c.ResumeWithin = 30 * time.Second
		}
		if err := c.Init(context.Background(), prometheus.NewRegistry()); err != nil {
			t.Fatal(err)
		}
		r.c = c
		r.advance(10 * time.Second)
		r.down("a")
		for range 2 {
			r.c.Sink(healthcheck.Result{Site: "b", Kind: healthcheck.KindAccount, OK: true, Started: r.now, Steps: []healthcheck.Step{{Name: "account", OK: true}}})
			r.advance(2 * time.Second)
			r.step()
		}
		if withHistory && r.served() != "b" {
			t.Fatalf("with its history: served %s, b %+v", r.served(), r.site("b"))
		}
		if !withHistory && (r.served() != "a" || r.site("b").State == Healthy) {
			t.Fatalf("without history: served %s, b %+v", r.served(), r.site("b"))
		}
	}
}

// The cluster DNS primary down: every site's issuance probe fails to
// publish its DNS-01 record. That is the cluster DNS's fault, not the
// sites': no site goes down and nothing moves (dns-primary-down drill).
func TestDNS01PublicationFailuresDoNotVote(t *testing.T) {
	r := newRig(t, nil)
	r.healthy("a", "b", "c")
	for range 5 {
		for _, s := range []string{"a", "b", "c"} {
			r.c.Sink(healthcheck.Result{Site: s, Kind: healthcheck.KindIssuance, Started: r.now, Steps: []healthcheck.Step{
				{Name: "new-order", OK: true}, {Name: acmeclient.StepDNSUpdate, ErrorClass: healthcheck.ClassRefused}}})
		}
		r.advance(15 * time.Second)
		r.step()
	}
	for _, s := range []string{"a", "b", "c"} {
		if st := r.site(s); st.State != Healthy {
			t.Fatalf("%s: %+v", s, st)
		}
	}
	if r.served() != "a" || len(r.dns.Writes()) != 0 {
		t.Fatalf("served %s, writes %d", r.served(), len(r.dns.Writes()))
	}
}

// A site with a revocation made while it was down is never moved to (nor
// by an operator) until the serial is in its CRL.
func TestBlockedSiteIsNoTarget(t *testing.T) {
	r := newRig(t, nil)
	inCRL := false
	rep := &revocation.Replayer{Journal: &revocation.MemJournal{},
		Revoke: func(context.Context, string, string, string) error { return errors.New("site b: connection refused") },
		InCRL:  func(context.Context, string, string) (bool, error) { return inCRL, nil }}
	r.c.Revocations = rep
	ctx := context.Background()
	rep.Submit(ctx, revocation.Entry{Serial: "02aa", Site: "b", Reason: "keyCompromise"})
	rep.Step(ctx)
	r.healthy("a", "b", "c")
	if st := r.site("b"); st.Blocked == "" {
		t.Fatalf("b not blocked: %+v", st)
	}
	r.c.Command(ctx, Command{Type: "move", Site: "b"})
	r.step()
	if r.served() != "a" {
		t.Fatalf("operator move to a blocked site: served %s", r.served())
	}
	r.down("a")
	r.step()
	if r.served() != "c" {
		t.Fatalf("a down: served %s, want c (b is blocked though it has the better priority)", r.served())
	}
	rep.Revoke = func(context.Context, string, string, string) error { return nil }
	inCRL = true
	rep.Step(ctx)
	r.step()
	if st := r.site("b"); st.Blocked != "" {
		t.Fatalf("b still blocked: %+v", st)
	}
}

// directory feeds a directory probe of site whose profiles step passed
// (differ: failed with detail).
func (r *rig) directory(site, differ string) {
	prof := healthcheck.Step{Name: healthcheck.StepProfiles, OK: differ == ""}
	if differ != "" {
		prof.ErrorClass, prof.Detail = healthcheck.ClassMismatch, differ
	}
	r.c.Sink(healthcheck.Result{Site: site, Kind: healthcheck.KindDirectory, Started: r.now,
		Steps: []healthcheck.Step{{Name: "directory", OK: true}, prof}})
}

// A site whose directory's profiles are not the spec's is not ready: it
// stays healthy (a changed spec must not move the name before any site
// is re-rendered), the active one keeps the name, it is no failover or
// operator target while a ready site is healthy, and it is the last
// resort when none is. Profiles as the spec's make it ready again.
func TestSiteWithOtherProfilesIsNotReady(t *testing.T) {
	r := newRig(t, nil)
	r.healthy("a", "b", "c")
	const differ = "profiles differ from the spec: site has [classic], spec has [classic,shortlived]"
	for range 5 {
		for _, s := range []string{"a", "b"} {
			r.directory(s, differ)
		}
		r.directory("c", "")
		r.advance(2 * time.Second)
		r.step()
	}
	for _, s := range []string{"a", "b"} {
		if st := r.site(s); st.State != Healthy || st.NotReady != differ {
			t.Fatalf("%s: %+v", s, st)
		}
	}
	if st := r.site("c"); st.NotReady != "" {
		t.Fatalf("c: %+v", st)
	}
	if r.served() != "a" || len(r.dns.Writes()) != 0 {
		t.Fatalf("the active site lost the name for its profiles: served %s", r.served())
	}
	ctx := context.Background()
	r.c.Command(ctx, Command{Type: "move", Site: "b"})
	r.step()
	if r.served() != "a" {
		t.Fatalf("operator move to a site that is not ready: served %s", r.served())
	}
	// a down: c (ready) before b (better priority, not ready).
	r.down("a")
	r.step()
	if r.served() != "c" {
		t.Fatalf("a down: served %s, want c", r.served())
	}
	// c down too, after the hold-down: b, not ready, beats no site.
	r.advance(r.c.Policy.HoldDown + time.Second)
	r.directory("b", differ) // this vantage still reaches b: its view of c counts
	r.down("c")
	r.step()
	if r.served() != "b" {
		t.Fatalf("a and c down: served %s, want b as the last resort: %+v", r.served(), r.c.Status().Sites)
	}
	if m := r.c.Status().Moves; len(m) == 0 || !strings.Contains(m[len(m)-1].Reason, "b is not ready ("+differ+")") {
		t.Fatalf("last-resort move does not say so: %+v", m)
	}
	r.directory("b", "")
	r.step()
	if st := r.site("b"); st.NotReady != "" || st.State != Healthy {
		t.Fatalf("b with the spec's profiles: %+v", st)
	}
}
