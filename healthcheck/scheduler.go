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
	// Deadlines per kind; a kind not listed gets half its interval.
	Deadlines map[string]time.Duration
	// Concurrency bounds the probes in flight across all sites and kinds;
	// a probe that finds no slot waits, so load never exceeds it.
	Concurrency int
	// Jitter spreads runs by ±Jitter of the interval.
	Jitter float64
}

// DefaultSchedule takes the spec's probe intervals: nonce and account
// every 2 s, issuance every 5 s (lab; use 60 s in production), CRL every
// 60 s; the cheap front-end kinds (dns, tls, directory) and account
// replication (when the spec replicates) every 10 s. A probe's deadline
// is half its interval, or its kind's MinDeadline if that is longer.
func DefaultSchedule(spec *cluster.Spec) Schedule {
	s := Schedule{Intervals: map[string]time.Duration{}, Deadlines: map[string]time.Duration{}, Concurrency: 4, Jitter: 0.2}
	for _, k := range Kinds {
		if d := k.Every(spec); d > 0 {
			s.Intervals[k.Name] = d
			if k.MinDeadline > d/2 {
				s.Deadlines[k.Name] = k.MinDeadline
			}
		}
	}
	return s
}

// deadline is the time one run of kind may take.
func (s Schedule) deadline(kind string, every time.Duration) time.Duration {
	if d := s.Deadlines[kind]; d > 0 {
		return d
	}
	return every / 2
}

// Clock is the time the scheduler waits on; tests give a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Scheduler runs every kind of the schedule against every target.
type Scheduler struct {
	Targets  []*Target
	Schedule Schedule
	// Sink receives every result (metrics, history, the failover core).
	// It is called from several goroutines.
	Sink func(Result)
	// Probe overrides the probe functions (tests); nil: KindFunc.
	Probe func(kind string) (Func, bool)
	// Clock: nil is the real one.
	Clock Clock

	mu      sync.Mutex
	recheck map[[2]string]chan time.Duration // (site, kind) -> its loop
}

// Recheck asks for the next run of kind at site within d of now, sooner
// than its interval would bring it: a confirmation probe. The run is an
// ordinary one (same slot limit, deadline and Sink; Result.Confirmation
// set); when the kind is due sooner anyway, nothing changes. It returns
// false when no such (site, kind) is being probed.
func (s *Scheduler) Recheck(site, kind string, d time.Duration) bool {
	s.mu.Lock()
	ch := s.recheck[[2]string{site, kind}]
	s.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- d:
	default: // a recheck is pending already: the loop takes the sooner one
		select {
		case old := <-ch:
			d = min(d, old)
		default:
		}
		select {
		case ch <- d:
		default:
		}
	}
	return true
}

func (s *Scheduler) clock() Clock {
	if s.Clock != nil {
		return s.Clock
	}
	return realClock{}
}

// Run probes until ctx ends. Each (target, kind) starts after a random
// delay within its interval; issuance is staggered across targets so two
// sites are never issued against at once by this prober.
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
			recheck := make(chan time.Duration, 1)
			s.mu.Lock()
			if s.recheck == nil {
				s.recheck = map[[2]string]chan time.Duration{}
			}
			s.recheck[[2]string{t.Site, kind}] = recheck
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.loop(ctx, t, kind, fn, every, first, slots, recheck)
			}()
		}
	}
	wg.Wait()
	return nil
}

func (s *Scheduler) loop(ctx context.Context, t *Target, kind string, fn Func, every, first time.Duration, slots chan struct{}, recheck chan time.Duration) {
	clock := s.clock()
	wait := first
	for {
		confirmation, ok := s.wait(ctx, clock, wait, recheck)
		if !ok {
			return
		}
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		pctx, cancel := context.WithTimeout(ctx, s.Schedule.deadline(kind, every))
		res := fn(pctx, t)
		cancel()
		<-slots
		if ctx.Err() != nil {
			return // a probe cut short by shutdown says nothing about the site
		}
		res.Confirmation = confirmation
		if s.Sink != nil {
			s.Sink(res)
		}
		wait = jittered(every, s.Schedule.Jitter)
	}
}

// wait waits d, or less when a recheck asks for a sooner run; it says
// whether the run is a recheck's, and false as second value when ctx ended.
func (s *Scheduler) wait(ctx context.Context, clock Clock, d time.Duration, recheck chan time.Duration) (confirmation, ok bool) {
	due := clock.Now().Add(d)
	sooner := func(r time.Duration) {
		if at := clock.Now().Add(r); at.Before(due) {
			due, confirmation = at, true
		}
	}
	for {
		select { // a recheck already asked for (by the Sink of the last run) comes first
		case r := <-recheck:
			sooner(r)
		default:
		}
		left := due.Sub(clock.Now())
		if left <= 0 {
			return confirmation, true
		}
		select {
		case <-ctx.Done():
			return false, false
		case <-clock.After(left):
		case r := <-recheck:
			sooner(r)
		}
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
