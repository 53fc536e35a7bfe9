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
