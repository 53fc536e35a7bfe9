package healthcheck

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cairn-pki/cairn/cluster"
)

// Schedule says how often each kind runs.
type Schedule struct {
	Intervals map[string]time.Duration
	// Concurrency bounds the probes in flight across all sites and kinds;
	// a probe that finds no slot waits, so load never exceeds it.
	Concurrency int
	// Jitter spreads runs by ±Jitter of the interval.
	Jitter float64
}

// DefaultSchedule takes the spec's probe intervals: nonce and account
// every 2 s, issuance every 15 s (lab; use 60 s in production), CRL every
// 60 s; the cheap front-end kinds (dns, tls, directory) and account
// replication (when the spec replicates) every 10 s.
func DefaultSchedule(spec *cluster.Spec) Schedule {
	s := Schedule{Intervals: map[string]time.Duration{}, Concurrency: 4, Jitter: 0.2}
	for _, k := range Kinds {
		if d := k.Every(spec); d > 0 {
			s.Intervals[k.Name] = d
		}
	}
	return s
}

// Scheduler runs every kind of the schedule against every target.
type Scheduler struct {
	Targets  []*Target
	Schedule Schedule
	// Sink receives every result (metrics, history, the failover core).
	// It is called from several goroutines.
	Sink func(Result)
	// Probe overrides the probe functions (tests); nil: KindFunc.
	Probe func(kind string) (Func, bool)
}

// Run probes until ctx ends. Each (target, kind) starts after a random
// delay within its interval; issuance is staggered across targets so two
// sites are never issued against at once by this prober. Each probe's
// deadline is half its interval.
func (s *Scheduler) Run(ctx context.Context) error {
	probe := s.Probe
	if probe == nil {
		probe = KindFunc
	}
	slots := make(chan struct{}, max(1, s.Schedule.Concurrency))
	var wg sync.WaitGroup
	for i, t := range s.Targets {
		for kind, every := range s.Schedule.Intervals {
			fn, ok := probe(kind)
			if !ok || every <= 0 {
				continue
			}
			first := time.Duration(rand.Int64N(int64(every)))
			if kind == KindIssuance && len(s.Targets) > 1 {
				first = every * time.Duration(i) / time.Duration(len(s.Targets))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.loop(ctx, t, kind, fn, every, first, slots)
			}()
		}
	}
	wg.Wait()
	return nil
}

func (s *Scheduler) loop(ctx context.Context, t *Target, kind string, fn Func, every, first time.Duration, slots chan struct{}) {
	wait := first
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		pctx, cancel := context.WithTimeout(ctx, every/2)
		res := fn(pctx, t)
		cancel()
		<-slots
		if ctx.Err() != nil {
			return // a probe cut short by shutdown says nothing about the site
		}
		if s.Sink != nil {
			s.Sink(res)
		}
		wait = jittered(every, s.Schedule.Jitter)
	}
}

// jittered is d ± j·d, uniformly.
func jittered(d time.Duration, j float64) time.Duration {
	if j <= 0 {
		return d
	}
	f := 1 + j*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
