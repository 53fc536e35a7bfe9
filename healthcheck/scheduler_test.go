package healthcheck

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSchedulerBoundsConcurrencyAndCoversEveryKind(t *testing.T) {
	var inFlight, peak atomic.Int64
	var mu sync.Mutex
	seen := map[string]int{}
	probe := func(kind string) (Func, bool) {
		return func(ctx context.Context, tg *Target) Result {
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			select { // hold the slot a little so overlaps can happen
			case <-time.After(3 * time.Millisecond):
			case <-ctx.Done():
			}
			inFlight.Add(-1)
			return Result{Site: tg.Site, Kind: kind, OK: true}
		}, true
	}
	s := &Scheduler{
		Targets: []*Target{{Site: "a"}, {Site: "b"}, {Site: "c"}},
		Schedule: Schedule{Intervals: map[string]time.Duration{KindNonce: 10 * time.Millisecond, KindAccount: 10 * time.Millisecond,
			KindIssuance: 30 * time.Millisecond}, Concurrency: 2, Jitter: 0.2},
		Sink: func(r Result) {
			mu.Lock()
			seen[r.Site+"/"+r.Kind]++
			mu.Unlock()
		},
		Probe: probe,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	s.Run(ctx)
	if p := peak.Load(); p > 2 {
		t.Errorf("%d probes in flight, limit 2", p)
	}
	for _, site := range []string{"a", "b", "c"} {
		for _, k := range []string{KindNonce, KindAccount, KindIssuance} {
			if seen[site+"/"+k] == 0 {
				t.Errorf("%s/%s never ran", site, k)
			}
		}
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	for range 1000 {
		d := jittered(10*time.Second, 0.2)
		if d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("jittered %s out of ±20%%", d)
		}
	}
}

func TestHistoryRoundTripAndRetention(t *testing.T) {
	h, err := OpenHistory(t.TempDir()+"/h.db", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	now := time.Now()
	old := Result{Site: "a", Kind: KindIssuance, OK: true, Started: now.Add(-2 * time.Hour)}
	failed := Result{Site: "a", Kind: KindIssuance, Started: now.Add(-time.Minute),
		Steps: []Step{{Name: "new-order", OK: true}, {Name: "finalize", ErrorClass: ClassACME, ACMEProblemType: "urn:ietf:params:acme:error:serverInternal"}}}
	dnsRes := Result{Site: "a", Kind: KindDNS, OK: true, Started: now.Add(-30 * time.Second), Steps: []Step{{Name: "soa", OK: true}}, Facts: map[string]string{"activeSite": "b"}}
	for _, r := range []Result{old, failed, dnsRes} {
		if err := h.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	n, err := h.Prune(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	s, err := h.Samples(ctx, now.Add(-time.Hour))
	if err != nil || len(s) != 2 {
		t.Fatalf("samples %+v %v", s, err)
	}
	if s[0].OK || s[0].FailedStep != "finalize" || s[1].ActiveSite != "b" {
		t.Errorf("samples %+v", s)
	}
	prev, err := h.Before(ctx, now)
	if err != nil || len(prev) != 2 {
		t.Errorf("before: %+v %v", prev, err)
	}
	// Whole results come back with their steps (a restarted controller
	// replays them).
	rs, err := h.Results(ctx, now.Add(-time.Hour))
	if err != nil || len(rs) != 2 {
		t.Fatalf("results %+v %v", rs, err)
	}
	if f := rs[0].FailedStep(); rs[0].OK || f == nil || f.Name != "finalize" || f.ErrorClass != ClassACME || !rs[0].Started.Equal(failed.Started.Truncate(time.Millisecond)) || rs[1].Kind != KindDNS {
		t.Errorf("results %+v", rs)
	}
}

func TestHistoryReopenKeepsData(t *testing.T) {
	path := t.TempDir() + "/h.db"
	h, err := OpenHistory(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Record(context.Background(), Result{Site: "a", Kind: KindNonce, OK: true, Started: time.Now(), Steps: []Step{{Name: "nonce", OK: true}}})
	h.Close()
	h, err = OpenHistory(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, _ := h.Samples(context.Background(), time.Now().Add(-time.Minute))
	if len(s) != 1 {
		t.Fatalf("after reopen: %d samples", len(s))
	}
}

// A long-running writer (the controller) prunes as it records: once an
// hour of its clock has passed, what is past the retention is gone.
func TestHistoryPrunesAsItRecords(t *testing.T) {
	h, err := OpenHistory(filepath.Join(t.TempDir(), "h.db"), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return clock }
	rec := func(at time.Time) {
		t.Helper()
		if err := h.Record(ctx, Result{Site: "a", Kind: KindNonce, OK: true, Started: at, Steps: []Step{{Name: "nonce", OK: true}}}); err != nil {
			t.Fatal(err)
		}
	}
	rec(clock.Add(-25 * time.Hour)) // past the retention already, recorded after the first prune
	rec(clock)
	count := func() int {
		s, err := h.Samples(ctx, clock.Add(-100*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return len(s)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d results before an hour passed, want 2 (no prune yet)", n)
	}
	clock = clock.Add(61 * time.Minute)
	rec(clock)
	if n := count(); n != 2 {
		t.Errorf("%d results after an hour, want 2 (the 25-hour-old one pruned)", n)
	}
}

// fakeClock is time that moves only when the test says; every wait the
// scheduler starts is announced on waits (its due time).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	waits   chan time.Time
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), waits: make(chan time.Time, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	w := fakeWaiter{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	c.waits <- w.at
	return w.ch
}

// set moves the clock to at and fires every wait due by then.
func (c *fakeClock) set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(at) {
			kept = append(kept, w)
			continue
		}
		w.ch <- at
	}
	c.waiters = kept
}

// nextWait is the due time of the next wait the scheduler starts.
func (c *fakeClock) nextWait(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-c.waits:
		return at
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduler started no wait")
		return time.Time{}
	}
}

// A failed run the Sink asks to confirm is run again after the recheck's
// delay, not the interval, and is marked as a confirmation; the run after
// it is back on the interval.
func TestRecheckConfirmsSoonerThanTheInterval(t *testing.T) {
	clk := newFakeClock()
	const every = time.Hour
	results := make(chan Result, 10)
	var s *Scheduler
	s = &Scheduler{
		Targets:  []*Target{{Site: "a"}},
		Schedule: Schedule{Intervals: map[string]time.Duration{KindIssuance: every}, Concurrency: 1},
		Clock:    clk,
		Probe: func(kind string) (Func, bool) {
			n := 0
			return func(ctx context.Context, tg *Target) Result {
				n++
				return Result{Site: tg.Site, Kind: kind, OK: n > 1, Started: clk.Now(), Steps: []Step{{Name: "finalize", OK: n > 1}}}
			}, true
		},
		Sink: func(r Result) {
			if !r.OK && !s.Recheck(r.Site, r.Kind, time.Second) {
				t.Error("recheck of a scheduled kind refused")
			}
			results <- r
		},
	}
	if s.Recheck("a", KindNonce, time.Second) || s.Recheck("b", KindIssuance, time.Second) {
		t.Error("recheck of a (site, kind) not probed accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	first := clk.nextWait(t)
	if d := first.Sub(clk.Now()); d < 0 || d >= every {
		t.Fatalf("first run after %s, want within the interval", d)
	}
	clk.set(first)
	failed := <-results
	if failed.OK || failed.Confirmation {
		t.Fatalf("first run %+v", failed)
	}
	confirm := clk.nextWait(t)
	if got := confirm.Sub(failed.Started); got != time.Second {
		t.Fatalf("confirmation due %s after the failure, want 1s", got)
	}
	clk.set(confirm)
	second := <-results
	if !second.Confirmation || !second.OK || !second.Started.Equal(confirm) {
		t.Fatalf("confirmation run %+v", second)
	}
	if next := clk.nextWait(t); next.Sub(second.Started) != every {
		t.Fatalf("run after the confirmation due %s later, want the interval %s", next.Sub(second.Started), every)
	}
}

// A recheck never delays a run that is due sooner.
func TestRecheckNeverDelays(t *testing.T) {
	clk := newFakeClock()
	s := &Scheduler{Clock: clk}
	recheck := make(chan time.Duration, 1)
	recheck <- 2 * time.Hour
	start := clk.Now()
	got := make(chan bool, 1)
	go func() {
		confirmation, _ := s.wait(context.Background(), clk, time.Hour, recheck)
		got <- confirmation
	}()
	if at := clk.nextWait(t); !at.Equal(start.Add(time.Hour)) {
		t.Fatalf("waiting until %s, want the interval's %s", at, start.Add(time.Hour))
	}
	clk.set(start.Add(time.Hour))
	if <-got {
		t.Error("the interval's run marked as a confirmation")
	}
}
