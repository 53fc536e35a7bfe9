package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/upgrade"
)

// Event is one timestamped thing the drill saw.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"` // fault-injected, fault-restored, site-state, dns-committed, dns-visible, alert, first-new-client
	Site   string    `json:"site,omitempty"`
	Detail string    `json:"detail"`
}

// Runner runs one scenario against an infrastructure (the lab).
type Runner struct {
	// Infra is what the drill acts through; its optional interfaces
	// (ClientHosts, SiteLoss, Releases) allow what needs them.
	Infra    Infra
	Scenario *Scenario
	Site     string // --site: overrides "active" as the faulted site
	Log      io.Writer

	spec   *cluster.Spec
	mu     sync.Mutex
	events []Event
	faults []Fault
	made   int // faults made so far
	jrnl   journal
	// upgrading: upgrade steps running (the drill lasts until they end).
	upgrading atomic.Int32
	// upgradeCtx is what an upgrade step runs under: the caller's
	// context, not the scenario's duration (an upgrade cut at the end of
	// the duration would stop mid-rollback).
	upgradeCtx context.Context
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
	}
}

func (r *Runner) event(kind, siteName, detail string) {
	r.eventAt(time.Now(), kind, siteName, detail)
}

// eventAt records an event that happened at a time already past (the
// report sorts events by time).
func (r *Runner) eventAt(at time.Time, kind, siteName, detail string) {
	r.mu.Lock()
	r.events = append(r.events, Event{At: at, Kind: kind, Site: siteName, Detail: detail})
	r.mu.Unlock()
	r.logf("%s %s %s", kind, siteName, detail)
}

// ControllerStatus asks the cluster's controller for its status.
func ControllerStatus(ctx context.Context, spec *cluster.Spec) (failover.Status, error) {
	return (&failover.Client{Spec: spec, HTTP: &http.Client{Timeout: 3 * time.Second}}).Status(ctx)
}

// Run checks the steady state, runs the timeline and the workload, restores
// every fault (also when ctx is cancelled) and returns the report.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	r.spec = r.Infra.ClusterSpec()
	if err := r.faultsBuild(); err != nil {
		return nil, err
	}
	if err := r.restoreLeftovers(ctx); err != nil {
		return nil, err
	}
	applier, err := acmedns.FromSpec(r.spec, nil)
	if err != nil {
		return nil, err
	}
	s, err := r.steadyState(ctx, applier)
	if err != nil {
		return nil, err
	}
	// Journaled from here: the faults, and the EAB key the clients
	// register with (eab.required), revoked at the end.
	r.jrnl = journal{PID: os.Getpid(), Started: time.Now()}
	key, err := r.makeKey(ctx, s.rep)
	if err != nil {
		return nil, err
	}
	defer r.revokeKey(ctx, key, s.rep)
	s.w.key = key
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
	if err := r.issueBeforeFault(ctx, s, state); err != nil {
		return nil, err
	}
	if err := r.prepareRevocation(ctx, s, state); err != nil {
		return nil, fmt.Errorf("steady state: certificates for the revocation checks: %w", err)
	}

	// Whatever happens from here, every injected fault is restored (the
	// deferred call is the safety net; restore is idempotent); the journal
	// keeps those that could not be.
	defer r.restoreAll(s.rep)
	r.drive(ctx, s)
	r.restoreAll(s.rep)
	r.finish(ctx, applier, s, key)
	return s.rep, nil
}

// runState is what one run of a scenario carries from phase to phase.
type runState struct {
	rep            *Report
	w              *workload
	status         failover.Status // the controller's, in the steady state
	addrs          []string        // the ACME name's, in the steady state
	active, target string          // the active site before the drill; the faulted site
	ready          []*realClient   // the real clients that issued in the steady state
	firstFault     time.Time       // when the timeline injected its first fault
	newClient      chan time.Time  // when a new client first issued after it
	revocation     *revocationCerts
}

// restoreLeftovers restores first the faults an earlier drill left (it was
// killed).
func (r *Runner) restoreLeftovers(ctx context.Context) error {
	restored, err := RestoreLeftovers(ctx, r.Infra)
	for _, d := range restored {
		r.event("fault-restored", "", d+" (left by an earlier drill)")
	}
	if err != nil {
		return fmt.Errorf("faults left by an earlier drill: %w", err)
	}
	return nil
}

// steadyState checks that the controller answers and every site is
// healthy (a site recovering from an earlier drill gets SteadyWithin to be
// so), reads the ACME name, and sets up the report and the workload.
func (r *Runner) steadyState(ctx context.Context, applier acmedns.Provider) (*runState, error) {
	sc := r.Scenario
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
	rep := &Report{Scenario: sc.Name, Description: sc.Description, ActiveBefore: active, FaultedSite: target, EpochBefore: before.Epoch.N, Infra: "lab"}
	if p, ok := r.Infra.(Provisioned); ok {
		rep.Infra = p.Infra()
	}

	// The clients trust the cluster root and write DNS-01 records with the
	// clients' TSIG key, as the probes do.
	targets, err := healthcheck.SiteTargets(r.spec)
	if err != nil {
		return nil, err
	}
	hosts, _ := r.Infra.(ClientHosts)
	w := &workload{spec: r.spec, hosts: hosts, roots: targets[0].Roots, dnsUp: *targets[0].DNS01, every: sc.Workload.Every.Duration}
	return &runState{rep: rep, w: w, status: st, addrs: before.Addrs, active: active, target: target}, nil
}

// issueBeforeFault has every real client issue once, concurrently, with
// its keys and account under state; those that could (s.ready) renew
// during the drill, the others are errors of the report.
func (r *Runner) issueBeforeFault(ctx context.Context, s *runState, state string) error {
	reals, skipped, err := s.w.newRealClients(ctx, r.Scenario.Workload.Clients, state)
	if err != nil {
		return err
	}
	for _, line := range skipped {
		r.logf("real clients: %s", line)
	}
	s.rep.SkippedClients = skipped
	var iwg sync.WaitGroup
	var imu sync.Mutex
	for _, rc := range reals {
		iwg.Add(1)
		go func() {
			defer iwg.Done()
			run := rc.run(ctx, "issue", 2*time.Minute)
			s.w.recordReal(run)
			imu.Lock()
			defer imu.Unlock()
			if run.OK {
				s.ready = append(s.ready, rc)
				return
			}
			s.rep.Errors = append(s.rep.Errors, fmt.Sprintf("steady state: %s could not issue before the fault: %s %s", rc.name, run.Problem, run.Detail))
		}()
	}
	iwg.Wait()
	return nil
}

// drive runs the drill for the scenario's duration (or until ctx is
// cancelled): the workload, the watchers of the controller and of DNS, and
// the timeline of faults. It returns once they have all ended.
func (r *Runner) drive(ctx context.Context, s *runState) {
	// The scenario's duration, or longer while an upgrade step runs: an
	// upgrade runs to its result (on provisioned hosts a site's restart
	// through Ansible takes a minute or two), the workload and the
	// watchers go on meanwhile, so its clients are judged throughout.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.upgradeCtx = ctx
	go func() {
		sleepCtx(ctx, r.Scenario.Duration.Duration)
		for r.upgrading.Load() > 0 && ctx.Err() == nil {
			sleepCtx(ctx, 200*time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	s.rep.Start = start
	var wg sync.WaitGroup
	r.startWorkload(dctx, &wg, s, start)
	wg.Add(2)
	go func() { defer wg.Done(); r.watchController(dctx, s.status) }()
	go func() { defer wg.Done(); r.watchDNS(dctx, s.addrs) }()

	s.newClient = make(chan time.Time, 1)
	timelineErr := make(chan error, 1)
	go func() {
		timelineErr <- r.timeline(dctx, start, s.active, func(at time.Time) { r.injected(dctx, s, at) })
	}()
	<-dctx.Done()
	if err := <-timelineErr; err != nil && ctx.Err() == nil {
		s.rep.Errors = append(s.rep.Errors, err.Error())
	}
	wg.Wait()
	if ctx.Err() != nil {
		s.rep.Interrupted = true
	}
	s.rep.End = time.Now()
}

// startWorkload starts, under wg, the scenario's client policies, the
// renewals of the ready real clients and, when the scenario asks for one,
// the accounts conflict at its time.
func (r *Runner) startWorkload(dctx context.Context, wg *sync.WaitGroup, s *runState, start time.Time) {
	sc := r.Scenario
	for _, p := range sc.Workload.Policies {
		wg.Add(1)
		go func() { defer wg.Done(); s.w.runPolicy(dctx, p) }()
	}
	for _, rc := range s.ready {
		wg.Add(1)
		go func() { defer wg.Done(); rc.loop(dctx, sc.Workload.RenewEvery.Duration, s.w.recordReal) }()
	}
	if s.revocation != nil {
		wg.Add(1)
		go func() { defer wg.Done(); r.checkCRLsDuringFault(dctx, s) }()
		if s.revocation.journaled != nil {
			wg.Add(1)
			go func() { defer wg.Done(); r.revokeDuringFault(dctx, s, start) }()
		}
	}
	if at := sc.Accounts.ConflictAt.Duration; at > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sleepCtx(dctx, time.Until(start.Add(at)))
			if dctx.Err() == nil {
				r.conflict(dctx, s.w, s.rep, s.target)
			}
		}()
	}
}

// injected is called by the timeline at each injection: the first one
// sets s.firstFault and starts waiting for the first new client to issue,
// which is recorded at its issuance and sent on s.newClient.
func (r *Runner) injected(dctx context.Context, s *runState, at time.Time) {
	if !s.firstFault.IsZero() {
		return
	}
	s.firstFault = at
	go func() {
		t, a := s.w.firstNewClient(dctx)
		if !t.IsZero() {
			// At its issuance, not when the others stopped.
			r.mu.Lock()
			r.events = append(r.events, Event{At: t, Kind: "first-new-client", Site: a.Site, Detail: "a new client issued"})
			r.mu.Unlock()
			r.logf("first-new-client %s", a.Site)
		}
		s.newClient <- t
	}()
}

// finish checks the state after the faults were restored (unless the
// drill was interrupted), reads where the ACME name points, and completes
// the report.
func (r *Runner) finish(ctx context.Context, applier acmedns.Provider, s *runState, key *drillKey) {
	sc, rep := r.Scenario, s.rep
	if !rep.Interrupted {
		r.steadyAfter(ctx, rep, sc.SteadyWithin())
		r.finishRevocation(ctx, s)
		if sc.Pass.AccountsFlow {
			r.checkAccounts(ctx, s.w, rep, s.target)
		}
	}
	after, err := applier.Read(context.WithoutCancel(ctx))
	if err == nil {
		rep.ActiveAfter, rep.EpochAfter = r.spec.SiteAt(after.Addrs...), after.Epoch.N
	}
	var newClientAt time.Time
	select {
	case newClientAt = <-s.newClient:
	default:
	}
	r.mu.Lock()
	rep.Events = append([]Event(nil), r.events...)
	r.mu.Unlock()
	rep.FaultAt = s.firstFault
	r.firstFailedProbe(rep, s.target)
	r.firedAlerts(ctx, rep)
	// The clients are done: the key goes before the report is judged.
	r.revokeKey(ctx, key, rep)
	rep.compute(s.w, newClientAt, sc)
}

// restoreAll restores every injected fault, newest first, and rewrites the
// journal with those that could not be restored.
func (r *Runner) restoreAll(rep *Report) {
	// Ten minutes: an upgrade's restore rolls every site back, gated.
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
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
			r.event("fault-restored", entries[i].Site, restoredDetail(faults[i]))
		}
	}
	r.mu.Lock()
	r.jrnl.Faults = append(r.jrnl.Faults, left...)
	err := writeJournal(r.spec, &r.jrnl)
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
			table := r.nextTable()
			f, err := newFault(r.Infra, st, name, table)
			if err != nil {
				errs = append(errs, fmt.Errorf("timeline[%d]: %w", i, err))
				continue
			}
			uf, isUpgrade := f.(*upgradeFault)
			if isUpgrade {
				uf.event = func(e upgrade.Event) { r.event("upgrade-"+e.Phase, e.Site, e.Detail) }
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
			jerr := writeJournal(r.spec, &r.jrnl)
			r.mu.Unlock()
			if jerr != nil {
				errs = append(errs, fmt.Errorf("timeline[%d]: not injected, the journal cannot be written: %w", i, jerr))
				continue
			}
			if isUpgrade {
				// An upgrade runs for minutes: it starts now.
				r.event("fault-injected", name, f.Describe())
				r.event("upgrade-start", name, f.Describe())
				injected(time.Now())
			}
			// A fault is in from the moment its injection starts: a
			// site's destruction takes seconds (every process stopped,
			// then its disk), and the controller may move the name before
			// it ends; every phase is timed from here.
			at := time.Now()
			ictx := ctx
			if isUpgrade && r.upgradeCtx != nil {
				ictx = r.upgradeCtx
				r.upgrading.Add(1)
			}
			err = f.Inject(ictx)
			if isUpgrade && r.upgradeCtx != nil {
				r.upgrading.Add(-1)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("timeline[%d] %s: %w", i, f.Describe(), err))
				continue
			}
			if isUpgrade {
				r.event("upgrade-result", name, uf.result)
				continue
			}
			r.eventAt(at, "fault-injected", name, f.Describe())
			injected(at)
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
						return // restoreAll tries again
					}
					r.event("fault-restored", name, restoredDetail(f))
					r.forget(f)
				}()
			}
		}
	}
	<-ctx.Done()
	return errors.Join(errs...)
}

// nextTable is the next fault's own name (its nftables table, its state
// file), never reused in a run: faults restored on time leave r.faults.
func (r *Runner) nextTable() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.made++
	return fmt.Sprintf("cairn_drill_%d_%d", os.Getpid(), r.made-1)
}

// forget drops a fault restored on time from what restoreAll restores
// and from the journal: restoring it again would repeat its event, and
// some restores (a rebuild) refuse to run twice.
func (r *Runner) forget(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.faults {
		if r.faults[i] == f {
			r.faults = slices.Delete(r.faults, i, i+1)
			r.jrnl.Faults = slices.Delete(r.jrnl.Faults, i, i+1)
			if err := writeJournal(r.spec, &r.jrnl); err != nil {
				r.logf("drill journal: %v", err)
			}
			return
		}
	}
}

// restoredDetail is a restored fault's description, with what its
// restore did when it says (a rebuilt site's figures).
func restoredDetail(f Fault) string {
	if d, ok := f.(interface{ RestoreDetail() string }); ok && d.RestoreDetail() != "" {
		return f.Describe() + ": " + d.RestoreDetail()
	}
	return f.Describe()
}

// faultsBuild: every step's fault can be made on this infrastructure
// (built for one of the sites it names, nothing injected), so a drill
// stops before anything runs, not in its middle, when one cannot.
func (r *Runner) faultsBuild() error {
	if len(r.spec.Sites) == 0 {
		return nil
	}
	for i, st := range r.Scenario.Timeline {
		sites := r.sitesOf(st.Site, r.spec.Sites[0].Name)
		if len(sites) == 0 {
			continue
		}
		if _, err := newFault(r.Infra, st, sites[0], "cairn_drill_check"); err != nil {
			return fmt.Errorf("timeline[%d]: %w", i, err)
		}
	}
	return nil
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
	samples, err := r.probeSamples(context.Background(), rep.FaultAt.Add(-time.Second))
	if err != nil {
		rep.NotChecked = append(rep.NotChecked, "first failed probe: "+err.Error())
		return
	}
	for _, s := range samples {
		if s.Site == target && !s.OK && !s.At.Before(rep.FaultAt.Add(-500*time.Millisecond)) {
			rep.Events = append(rep.Events, Event{At: s.At, Kind: "probe-failed", Site: s.Site, Detail: s.Kind + " failed at " + s.FailedStep})
			return
		}
	}
}

// probeSamples are the controller's probe results since from: through
// the infrastructure when it reads them (provisioned hosts), else from
// the history file next to the spec (the lab's controller runs here).
func (r *Runner) probeSamples(ctx context.Context, from time.Time) ([]healthcheck.Sample, error) {
	if ph, ok := r.Infra.(ProbeHistory); ok {
		return ph.ProbeSamples(ctx, from)
	}
	h, err := healthcheck.OpenHistoryReadOnly(r.spec.Path(healthcheck.HistoryFile))
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return h.Samples(ctx, from)
}
