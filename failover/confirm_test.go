package failover

import (
	"container/heap"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/acmeclient"
)

// rechecks records the confirmation probes a controller asks for.
type rechecks struct{ asked []string }

func (rc *rechecks) recheck(site, kind string, within time.Duration) bool {
	rc.asked = append(rc.asked, fmt.Sprintf("%s/%s/%s", site, kind, within))
	return true
}

func issuance(site string, ok bool, at time.Time) healthcheck.Result {
	r := healthcheck.Result{Site: site, Kind: healthcheck.KindIssuance, OK: ok, Started: at, Steps: []healthcheck.Step{{Name: "new-order", OK: true}, {Name: "finalize", OK: ok}}}
	if !ok {
		r.Steps[1].ErrorClass, r.Steps[1].ACMEProblemType, r.Steps[1].HTTPStatus = healthcheck.ClassACME, "urn:ietf:params:acme:error:serverInternal", 500
	}
	return r
}

// The first failure of a deep probe kind at a site asks the prober for a
// confirmation within ConfirmAfter; the confirmation failing too brings
// the site down and moves the name (a CA that cannot sign: hsm-failure).
// One confirmation per failure streak; a pass of the kind starts over.
func TestDeepFailureIsConfirmedAtOnce(t *testing.T) {
	r := newRig(t, nil)
	rc := &rechecks{}
	r.c.Recheck = rc.recheck
	r.healthy("a", "b", "c")
	r.c.Sink(issuance("a", true, r.now))
	if len(rc.asked) != 0 {
		t.Fatalf("successes asked for %v", rc.asked)
	}
	r.c.Sink(issuance("a", false, r.now))
	r.step()
	if want := "a/issuance/" + DefaultConfirmAfter.String(); len(rc.asked) != 1 || rc.asked[0] != want {
		t.Fatalf("after the first failure asked %v, want [%s]", rc.asked, want)
	}
	if st := r.site("a"); st.State != Suspect || r.served() != "a" {
		t.Fatalf("one failure: a %+v, served %s", st, r.served())
	}
	r.advance(DefaultConfirmAfter)
	r.c.Sink(issuance("a", false, r.now))
	r.step()
	if r.served() != "b" || r.site("a").State != Down {
		t.Fatalf("confirmed failure: served %s, a %+v", r.served(), r.site("a"))
	}
	r.c.Sink(issuance("a", false, r.now.Add(5*time.Second)))
	if len(rc.asked) != 1 {
		t.Fatalf("a failure streak asked again: %v", rc.asked)
	}
	r.c.Sink(issuance("a", true, r.now.Add(10*time.Second)))
	r.c.Sink(issuance("a", false, r.now.Add(15*time.Second)))
	if len(rc.asked) != 2 {
		t.Fatalf("a new streak after a pass asked %v", rc.asked)
	}
	// Shallow failures (refused: DownAfter counts those) and a DNS-01
	// publication failure (the cluster DNS's) ask for nothing.
	r.hard("b")
	r.c.Sink(healthcheck.Result{Site: "c", Kind: healthcheck.KindIssuance, Started: r.now,
		Steps: []healthcheck.Step{{Name: acmeclient.StepDNSUpdate, ErrorClass: healthcheck.ClassRefused}}})
	if len(rc.asked) != 2 {
		t.Fatalf("asked %v", rc.asked)
	}
}

// A confirmation that passes clears the failure: nothing moves.
func TestPassingConfirmationClearsTheFailure(t *testing.T) {
	r := newRig(t, nil)
	rc := &rechecks{}
	r.c.Recheck, r.c.ConfirmAfter = rc.recheck, 3*time.Second
	r.healthy("a", "b", "c")
	r.c.Sink(healthcheck.Result{Site: "a", Kind: healthcheck.KindAccount, Started: r.now,
		Steps: []healthcheck.Step{{Name: "account", ErrorClass: healthcheck.ClassTimeout}}})
	r.step()
	if len(rc.asked) != 1 || rc.asked[0] != "a/account/3s" {
		t.Fatalf("asked %v", rc.asked)
	}
	r.advance(3 * time.Second)
	r.c.Sink(healthcheck.Result{Site: "a", Kind: healthcheck.KindAccount, OK: true, Started: r.now, Confirmation: true,
		Steps: []healthcheck.Step{{Name: "account", OK: true}}})
	r.step()
	if st := r.site("a"); st.State != Healthy || r.served() != "a" || len(r.c.Status().Moves) != 0 {
		t.Fatalf("a %+v, served %s, moves %+v", st, r.served(), r.c.Status().Moves)
	}
}

// A day of a healthy cluster's noise, simulated with the controller's own
// code (Sink, step, its confirmation requests) and a model of the
// scheduler (the spec's default intervals, ±20 % jitter, deadlines, a
// recheck bringing the next run to ConfirmAfter after the result): one
// trouble every 3–7 s at a random site, a process stalled for 0.2–1.2 s
// (BenchmarkNoiseRun's pauses) or, one time in 30, a burst of server
// errors shorter than ConfirmAfter. Nothing may move. Then a's CA stops
// signing: the name must move within one issuance interval (its jitter
// included) plus the confirmation and the probes' time.
func TestNoMoveInADayOfNoise(t *testing.T) {
	lessGC(t)
	day := 24 * time.Hour
	if testing.Short() {
		day = time.Hour
	}
	spec := cluster.Default([]string{"a", "b", "c"})
	r := newRig(t, func(p *Policy) { *p = PolicyFromSpec(spec) })
	sim := newNoiseSim(r, spec, rand.New(rand.NewPCG(7, 11)))
	start := r.now
	sim.run(start.Add(2 * time.Minute)) // every site proves itself
	for _, s := range []string{"a", "b", "c"} {
		if st := r.site(s); st.State != Healthy {
			t.Fatalf("%s not healthy after the warm-up: %+v", s, st)
		}
	}
	sim.noise = true
	for end := start.Add(day); r.now.Before(end); {
		next := r.now.Add(time.Minute)
		if next.After(end) {
			next = end
		}
		sim.run(next)
		if n := len(r.c.Status().Moves); n != 0 {
			t.Fatalf("a move after %s of noise: %+v\nthe latest probes:\n%s", r.now.Sub(start), r.c.Status().Moves, strings.Join(sim.last, "\n"))
		}
	}
	if sim.confirmations == 0 || sim.failures == 0 {
		t.Fatalf("the noise failed %d probes and asked %d confirmations: it tested nothing", sim.failures, sim.confirmations)
	}
	t.Logf("%s of noise: %d probes, %d failed, %d confirmations, 0 moves", day, sim.runs, sim.failures, sim.confirmations)

	fault := r.now
	sim.noise, sim.caDown = false, "a"
	sim.run(fault.Add(time.Minute))
	mv := r.c.Status().Moves
	if len(mv) != 1 || mv[0].From != "a" {
		t.Fatalf("a's CA down: moves %+v", mv)
	}
	every := spec.Failover.Probes.Issuance.Duration
	bound := time.Duration(float64(every)*(1+sim.sched.Jitter)) + DefaultConfirmAfter + 2*sim.took + time.Second
	if took := mv[0].At.Sub(fault); took > bound {
		t.Fatalf("moved %s after the CA stopped signing, want ≤ %s", took, bound)
	}
}

// noiseSim is a discrete-event model of the scheduler feeding a rig.
type noiseSim struct {
	r      *rig
	rng    *rand.Rand
	queue  runQueue
	sched  healthcheck.Schedule
	asked  []run // rechecks asked for by the last Sink (at: the delay)
	noise  bool
	caDown string        // a site whose CA cannot sign
	took   time.Duration // a probe's time on a healthy site
	// stalls and error bursts per site: [from, to)
	stalls, bursts map[string][2]time.Time
	nextTrouble    time.Time
	// counts
	runs, failures, confirmations int
	last                          []string // the latest runs, for a failure's message
}

type run struct {
	at           time.Time
	site, kind   string
	confirmation bool
}

type runQueue []run

func (q runQueue) Len() int           { return len(q) }
func (q runQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q runQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *runQueue) Push(x any)        { *q = append(*q, x.(run)) }
func (q *runQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

func newNoiseSim(r *rig, spec *cluster.Spec, rng *rand.Rand) *noiseSim {
	s := &noiseSim{r: r, rng: rng, sched: healthcheck.DefaultSchedule(spec), took: 50 * time.Millisecond,
		stalls: map[string][2]time.Time{}, bursts: map[string][2]time.Time{}}
	kinds := slices.Sorted(maps.Keys(s.sched.Intervals))
	for _, site := range []string{"a", "b", "c"} {
		for _, kind := range kinds {
			if k, _ := healthcheck.KindOf(kind); k.Votes {
				every := s.sched.Intervals[kind]
				heap.Push(&s.queue, run{at: r.now.Add(time.Duration(rng.Int64N(int64(every)))), site: site, kind: kind})
			}
		}
	}
	r.c.Recheck = func(site, kind string, within time.Duration) bool {
		s.asked = append(s.asked, run{at: time.Time{}.Add(within), site: site, kind: kind})
		s.confirmations++
		return true
	}
	return s
}

// outcome of a probe of kind at site started at t: ok, its error class,
// and how long it took.
func (s *noiseSim) outcome(site, kind string, t time.Time) (bool, string, time.Duration) {
	deadline := s.sched.Deadlines[kind]
	if deadline == 0 {
		deadline = s.sched.Intervals[kind] / 2
	}
	took := s.took
	if st := s.stalls[site]; !t.Before(st[0]) && t.Before(st[1]) {
		took += st[1].Sub(t) // the process answers when it runs again
	}
	if took >= deadline {
		return false, healthcheck.ClassTimeout, deadline
	}
	k, _ := healthcheck.KindOf(kind)
	if b := s.bursts[site]; k.Deep && !t.Before(b[0]) && t.Before(b[1]) {
		return false, healthcheck.ClassACME, took // 500 serverInternal, at once
	}
	if kind == healthcheck.KindIssuance && site == s.caDown {
		return false, healthcheck.ClassACME, took
	}
	return true, "", took
}

func (s *noiseSim) injectNoise(now time.Time) {
	if now.Before(s.nextTrouble) {
		return
	}
	// One trouble at a time, at a random site, the next 3–7 s later: a
	// stall, or (one time in 30) a burst of server errors.
	site := []string{"a", "b", "c"}[s.rng.IntN(3)]
	if s.rng.IntN(30) == 0 {
		s.bursts[site] = [2]time.Time{now, now.Add(time.Duration(100+s.rng.IntN(800)) * time.Millisecond)}
	} else {
		s.stalls[site] = [2]time.Time{now, now.Add(time.Duration(200+s.rng.IntN(1000)) * time.Millisecond)}
	}
	s.nextTrouble = now.Add(time.Duration(3000+s.rng.IntN(4000)) * time.Millisecond)
}

// run plays probes and decisions until end.
func (s *noiseSim) run(end time.Time) {
	nextTick := s.r.now.Add(time.Second)
	for s.queue.Len() > 0 && s.queue[0].at.Before(end) {
		next := heap.Pop(&s.queue).(run)
		for nextTick.Before(next.at) { // the controller's 1 s tick
			s.r.now = nextTick
			s.r.step()
			nextTick = nextTick.Add(time.Second)
		}
		s.r.now = next.at
		if s.noise {
			s.injectNoise(next.at)
		}
		ok, class, took := s.outcome(next.site, next.kind, next.at)
		s.runs++
		res := healthcheck.Result{Site: next.site, Kind: next.kind, OK: ok, Started: next.at, Elapsed: took, Confirmation: next.confirmation,
			Steps: []healthcheck.Step{{Name: "step", OK: ok, ErrorClass: class}}}
		if !ok {
			s.failures++
		}
		s.last = append(s.last, fmt.Sprintf("%s %s/%s ok=%v %s confirmation=%v took=%s", next.at.Format("15:04:05.000"), next.site, next.kind, ok, class, next.confirmation, took))
		if len(s.last) > 30 {
			s.last = s.last[1:]
		}
		s.r.now = next.at.Add(took)
		s.asked = nil
		s.r.c.Sink(res)
		s.r.step()
		if s.noise && len(s.r.c.Status().Moves) > 0 {
			return // the test reports it with the latest runs
		}
		every := s.sched.Intervals[next.kind]
		jitter := 1 + s.sched.Jitter*(2*s.rng.Float64()-1)
		heap.Push(&s.queue, run{at: s.r.now.Add(time.Duration(float64(every) * jitter)), site: next.site, kind: next.kind})
		for _, a := range s.asked { // a recheck brings that loop's next run sooner, never later
			for i, q := range s.queue {
				if q.site == a.site && q.kind == a.kind && s.r.now.Add(a.at.Sub(time.Time{})).Before(q.at) {
					s.queue[i].at, s.queue[i].confirmation = s.r.now.Add(a.at.Sub(time.Time{})), true
					heap.Fix(&s.queue, i)
				}
			}
		}
	}
	s.r.now = end
	s.r.step()
}
