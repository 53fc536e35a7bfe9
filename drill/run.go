package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/lab"
)

// Event is one timestamped thing the drill saw.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"` // fault-injected, fault-restored, site-state, dns-committed, dns-visible, alert, first-new-client
	Site   string    `json:"site,omitempty"`
	Detail string    `json:"detail"`
}

// Runner runs one scenario against the lab.
type Runner struct {
	Lab      *lab.Lab
	Scenario *Scenario
	Site     string // --site: overrides "active" as the faulted site
	Log      io.Writer

	spec   *cluster.Spec
	mu     sync.Mutex
	events []Event
	faults []Fault
	jrnl   journal
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
	}
}

func (r *Runner) event(kind, siteName, detail string) {
	r.mu.Lock()
	r.events = append(r.events, Event{At: time.Now(), Kind: kind, Site: siteName, Detail: detail})
	r.mu.Unlock()
	r.logf("%s %s %s", kind, siteName, detail)
}

// ControllerStatus asks the cluster's controller for its status.
func ControllerStatus(ctx context.Context, spec *cluster.Spec) (failover.Status, error) {
	var st failover.Status
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+spec.Failover.Listen+"/api/status", nil)
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Run checks the steady state, runs the timeline and the workload, restores
// every fault (also when ctx is cancelled) and returns the report.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	r.spec = r.Lab.Spec
	sc := r.Scenario
	// Faults an earlier drill left (it was killed) are restored first.
	restored, err := RestoreLeftovers(ctx, r.Lab)
	for _, d := range restored {
		r.event("fault-restored", "", d+" (left by an earlier drill)")
	}
	if err != nil {
		return nil, fmt.Errorf("faults left by an earlier drill: %w", err)
	}
	applier, err := acmedns.FromSpec(r.spec, nil)
	if err != nil {
		return nil, err
	}
	// Steady state: the controller answers and every site is healthy (a
	// site recovering from an earlier drill gets SteadyWithin to be so).
	st, err := ControllerStatus(ctx, r.spec)
	if err != nil {
		return nil, fmt.Errorf("steady state: no controller at %s (is the lab up?): %w", r.spec.Failover.Listen, err)
	}
	if !allHealthy(st) {
		r.logf("waiting for every site to be healthy")
		if st, err = r.waitHealthy(ctx, sc.SteadyWithin()); err != nil {
			return nil, fmt.Errorf("steady state not met: %w; wait until `cairn failover status` shows every site healthy", err)
		}
	}
	before, err := applier.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("steady state: read the ACME name: %w", err)
	}
	active := st.Active
	target := active
	if r.Site != "" {
		if _, ok := r.spec.SiteByName(r.Site); !ok {
			return nil, fmt.Errorf("--site %s: no such site", r.Site)
		}
		target = r.Site
	}
	rep := &Report{Scenario: sc.Name, Description: sc.Description, ActiveBefore: active, FaultedSite: target, EpochBefore: before.Epoch.N}

	// The clients trust the cluster root and write DNS-01 records with the
	// clients' TSIG key, as the probes do.
	targets, err := healthcheck.SiteTargets(r.spec)
	if err != nil {
		return nil, err
	}
	w := &workload{spec: r.spec, roots: targets[0].Roots, dnsUp: *targets[0].DNS01, every: sc.Workload.Every.Duration}

	// Real clients issue once, in the steady state, before anything is
	// injected: that stores the account they will renew with.
	if err := os.MkdirAll(r.spec.Path("var"), 0o755); err != nil {
		return nil, err
	}
	state, err := os.MkdirTemp(r.spec.Path("var"), "drill-clients-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(state) // their keys and accounts
	reals, err := w.newRealClients(sc.Workload.Clients, state)
	if err != nil {
		return nil, err
	}
	var ready []*realClient
	var iwg sync.WaitGroup
	var imu sync.Mutex
	for _, rc := range reals {
		iwg.Add(1)
		go func() {
			defer iwg.Done()
			run := rc.run(ctx, "issue", 2*time.Minute)
			w.recordReal(run)
			imu.Lock()
			defer imu.Unlock()
			if run.OK {
				ready = append(ready, rc)
				return
			}
			rep.Errors = append(rep.Errors, fmt.Sprintf("steady state: %s could not issue before the fault: %s %s", rc.name, run.Problem, run.Detail))
		}()
	}
	iwg.Wait()

	// Whatever happens from here, every injected fault is restored (the
	// deferred call is the safety net; restore is idempotent); the journal
	// keeps those that could not be.
	r.jrnl = journal{PID: os.Getpid(), Started: time.Now()}
	defer r.restoreAll(rep)
	dctx, cancel := context.WithTimeout(ctx, sc.Duration.Duration)
	defer cancel()
	start := time.Now()
	rep.Start = start
	var wg sync.WaitGroup
	for _, p := range sc.Workload.Policies {
		wg.Add(1)
		go func() { defer wg.Done(); w.runPolicy(dctx, p) }()
	}
	for _, rc := range ready {
		wg.Add(1)
		go func() { defer wg.Done(); rc.loop(dctx, sc.Workload.RenewEvery.Duration, w.recordReal) }()
	}
	if at := sc.Accounts.ConflictAt.Duration; at > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sleepCtx(dctx, time.Until(start.Add(at)))
			if dctx.Err() == nil {
				r.conflict(dctx, w, rep, target)
			}
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); r.watchController(dctx, st) }()
	go func() { defer wg.Done(); r.watchDNS(dctx, before.Addrs) }()

	var firstFault time.Time
	newClient := make(chan time.Time, 1)
	timelineErr := make(chan error, 1)
	go func() {
		timelineErr <- r.timeline(dctx, start, active, func(at time.Time) {
			if firstFault.IsZero() {
				firstFault = at
				go func() {
					t, a := w.firstNewClient(dctx)
					if !t.IsZero() {
						// At its issuance, not when the others stopped.
						r.mu.Lock()
						r.events = append(r.events, Event{At: t, Kind: "first-new-client", Site: a.Site, Detail: "a new client issued"})
						r.mu.Unlock()
						r.logf("first-new-client %s", a.Site)
					}
					newClient <- t
				}()
			}
		})
	}()
	<-dctx.Done()
	if err := <-timelineErr; err != nil && ctx.Err() == nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	wg.Wait()
	if ctx.Err() != nil {
		rep.Interrupted = true
	}
	rep.End = time.Now()
	r.restoreAll(rep)
	if !rep.Interrupted {
		r.steadyAfter(ctx, rep, sc.SteadyWithin())
		if sc.Pass.AccountsFlow {
			r.checkAccounts(ctx, w, rep, target)
		}
	}
	after, err := applier.Read(context.WithoutCancel(ctx))
	if err == nil {
		rep.ActiveAfter, rep.EpochAfter = r.spec.SiteAt(after.Addrs...), after.Epoch.N
	}
	var newClientAt time.Time
	select {
	case newClientAt = <-newClient:
	default:
	}
	r.mu.Lock()
	rep.Events = append([]Event(nil), r.events...)
	r.mu.Unlock()
	rep.FaultAt = firstFault
	r.firstFailedProbe(rep, target)
	rep.compute(w, newClientAt, sc)
	return rep, nil
}

// restoreAll restores every injected fault, newest first, and rewrites the
// journal with those that could not be restored.
func (r *Runner) restoreAll(rep *Report) {
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r.mu.Lock()
	faults, entries := r.faults, r.jrnl.Faults
	r.faults, r.jrnl.Faults = nil, nil
	r.mu.Unlock()
	var left []journalEntry
	failed := restoreEach(rctx, faults)
	for i := len(faults) - 1; i >= 0; i-- {
		if err := failed[i]; err != nil {
			r.event("restore-failed", entries[i].Site, faults[i].Describe()+": "+err.Error())
			rep.RestoreErrors = append(rep.RestoreErrors, faults[i].Describe()+": "+err.Error())
			left = append(left, entries[i])
		} else {
			r.event("fault-restored", entries[i].Site, faults[i].Describe())
		}
	}
	r.mu.Lock()
	r.jrnl.Faults = append(r.jrnl.Faults, left...)
	err := writeJournal(r.Lab, &r.jrnl)
	r.mu.Unlock()
	if err != nil {
		rep.RestoreErrors = append(rep.RestoreErrors, "journal: "+err.Error())
	}
}

// steadyAfter: once every fault is restored, every site must be healthy
// again (and not drained) within the scenario's bound.
func (r *Runner) steadyAfter(ctx context.Context, rep *Report, within time.Duration) {
	from := time.Now()
	if _, err := r.waitHealthy(ctx, within); err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("steady state after the faults were restored: %v (steadyState.within)", err))
		return
	}
	rep.SteadyAfter = secs(from, time.Now())
}

// waitHealthy polls the controller until every site is healthy and none
// is drained; the error names a site that is not, after within.
func (r *Runner) waitHealthy(ctx context.Context, within time.Duration) (failover.Status, error) {
	var st failover.Status
	var err error
	for deadline := time.Now().Add(within); ; {
		if st, err = ControllerStatus(ctx, r.spec); err == nil && allHealthy(st) {
			return st, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	if err != nil {
		return st, fmt.Errorf("no answer from the controller after %s: %w", within, err)
	}
	for _, s := range st.Sites {
		if s.State != failover.Healthy || s.Drained {
			return st, fmt.Errorf("site %s is %s (drained %v) after %s", s.Name, s.State, s.Drained, within)
		}
	}
	return st, fmt.Errorf("the controller reports no sites")
}

func allHealthy(st failover.Status) bool {
	for _, s := range st.Sites {
		if s.State != failover.Healthy || s.Drained {
			return false
		}
	}
	return len(st.Sites) > 0
}

// timeline injects each step's fault at its time, for the sites it names,
// and restores those with a "for" when it has passed.
func (r *Runner) timeline(ctx context.Context, start time.Time, active string, injected func(time.Time)) error {
	var errs []error
	var restores sync.WaitGroup
	defer restores.Wait()
	for i, st := range r.Scenario.Timeline {
		sleepCtx(ctx, time.Until(start.Add(st.At.Duration)))
		if ctx.Err() != nil {
			return errors.Join(errs...)
		}
		for _, name := range r.sitesOf(st.Site, active) {
			r.mu.Lock()
			table := fmt.Sprintf("cairn_drill_%d_%d", os.Getpid(), len(r.faults))
			r.mu.Unlock()
			f, err := newFault(r.Lab, st, name, table)
			if err != nil {
				errs = append(errs, fmt.Errorf("timeline[%d]: %w", i, err))
				continue
			}
			if ff, ok := f.(*flapFault); ok {
				ff.onChange = func(on bool) {
					kind := "fault-restored"
					if on {
						kind = "fault-injected"
					}
					r.event(kind, name, ff.inner.Describe())
				}
			}
			// Journal first: a drill killed while injecting still
			// leaves the record its successor restores from.
			r.mu.Lock()
			r.faults = append(r.faults, f)
			r.jrnl.Faults = append(r.jrnl.Faults, journalEntry{Step: st, Site: name, Table: table})
			jerr := writeJournal(r.Lab, &r.jrnl)
			r.mu.Unlock()
			if jerr != nil {
				errs = append(errs, fmt.Errorf("timeline[%d]: not injected, the journal cannot be written: %w", i, jerr))
				continue
			}
			if err := f.Inject(ctx); err != nil {
				errs = append(errs, fmt.Errorf("timeline[%d] %s: %w", i, f.Describe(), err))
				continue
			}
			r.event("fault-injected", name, f.Describe())
			injected(time.Now())
			if st.For.Duration > 0 {
				restores.Add(1)
				go func() {
					defer restores.Done()
					sleepCtx(ctx, st.For.Duration)
					if ctx.Err() != nil {
						return // restored at the end
					}
					if err := f.Restore(context.WithoutCancel(ctx)); err != nil {
						r.event("restore-failed", name, f.Describe()+": "+err.Error())
					} else {
						r.event("fault-restored", name, f.Describe())
					}
				}()
			}
		}
	}
	<-ctx.Done()
	return errors.Join(errs...)
}

func (r *Runner) sitesOf(sel, active string) []string {
	switch sel {
	case "active":
		if r.Site != "" {
			return []string{r.Site}
		}
		return []string{active}
	case "standby":
		for _, s := range r.spec.Sites {
			if s.Name != active {
				return []string{s.Name}
			}
		}
	case "all":
		var all []string
		for _, s := range r.spec.Sites {
			all = append(all, s.Name)
		}
		return all
	}
	return []string{sel}
}

// watchController records site state changes, moves and the alert.
func (r *Runner) watchController(ctx context.Context, initial failover.Status) {
	states := map[string]failover.Health{}
	for _, s := range initial.Sites {
		states[s.Name] = s.State
	}
	lastEpoch := int64(0)
	if n := len(initial.Moves); n > 0 {
		lastEpoch = initial.Moves[n-1].Epoch
	}
	alert := initial.Alert
	for ctx.Err() == nil {
		sleepCtx(ctx, 200*time.Millisecond)
		st, err := ControllerStatus(ctx, r.spec)
		if err != nil {
			continue // the controller may be the fault
		}
		for _, s := range st.Sites {
			if states[s.Name] != s.State {
				states[s.Name] = s.State
				r.mu.Lock()
				r.events = append(r.events, Event{At: s.Since, Kind: "site-state", Site: s.Name, Detail: string(s.State) + ": " + s.Reason})
				r.mu.Unlock()
				r.logf("site-state %s %s", s.Name, s.State)
			}
		}
		for _, m := range st.Moves {
			if m.Epoch > lastEpoch {
				lastEpoch = m.Epoch
				at := m.At.Add(time.Duration(m.CommitMS * float64(time.Millisecond)))
				r.mu.Lock()
				r.events = append(r.events, Event{At: at, Kind: "dns-committed", Site: m.To, Detail: fmt.Sprintf("epoch %d %s→%s: %s", m.Epoch, m.From, m.To, m.Reason)})
				r.mu.Unlock()
				r.logf("dns-committed %s→%s", m.From, m.To)
			}
		}
		if st.Alert != alert {
			alert = st.Alert
			r.event("alert", st.Active, fmt.Sprintf("no healthy site: %v", alert))
		}
	}
}

// watchDNS polls every authoritative server for the ACME name and records
// when each starts serving a different answer.
func (r *Runner) watchDNS(ctx context.Context, initial []string) {
	serving := map[string]string{}
	for _, s := range r.spec.DNS.Servers {
		serving[s.Address] = r.spec.SiteAt(initial...)
	}
	cl := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(r.spec.ACME.Name), dns.TypeA)
	for ctx.Err() == nil {
		for _, s := range r.spec.DNS.Servers {
			in, _, err := cl.ExchangeContext(ctx, m, s.Address)
			if err != nil {
				continue
			}
			var addrs []string
			for _, rr := range in.Answer {
				if a, ok := rr.(*dns.A); ok {
					addrs = append(addrs, a.A.String())
				}
			}
			if got := r.spec.SiteAt(addrs...); got != "" && got != serving[s.Address] {
				serving[s.Address] = got
				r.event("dns-visible", got, s.Address+" serves "+got)
			}
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// firstFailedProbe reads the controller's probe history for the first
// failure at the faulted site after the fault.
func (r *Runner) firstFailedProbe(rep *Report, target string) {
	if rep.FaultAt.IsZero() {
		return
	}
	h, err := healthcheck.OpenHistory(r.spec.Path(healthcheck.HistoryFile), 30*24*time.Hour)
	if err != nil {
		return
	}
	defer h.Close()
	samples, err := h.Samples(context.Background(), rep.FaultAt.Add(-time.Second))
	if err != nil {
		return
	}
	for _, s := range samples {
		if s.Site == target && !s.OK && !s.At.Before(rep.FaultAt.Add(-500*time.Millisecond)) {
			rep.Events = append(rep.Events, Event{At: s.At, Kind: "probe-failed", Site: s.Site, Detail: s.Kind + " failed at " + s.FailedStep})
			return
		}
	}
}
