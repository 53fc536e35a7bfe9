package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/revocation"
	"github.com/cairn-pki/cairn/site"
)

// Move is one completed move of the ACME name.
type Move struct {
	From        string                `json:"from"`
	To          string                `json:"to"`
	Reason      string                `json:"reason"`
	Cause       Cause                 `json:"cause,omitempty"`
	At          time.Time             `json:"at"`
	Epoch       int64                 `json:"epoch"`
	CommitMS    float64               `json:"commitMs"` // decision to UPDATE acknowledged
	Propagation []acmedns.Propagation `json:"propagation"`
}

// Controller probes every site, decides and applies.
type Controller struct {
	Spec *cluster.Spec
	ID   string // this controller's name in the epoch record
	// DNS writes the ACME name (acmedns.FromSpec; a fake in tests).
	DNS    acmedns.Provider
	Policy Policy
	Log    *slog.Logger
	// PrearmTTL is the TTL set while the active site is suspect.
	PrearmTTL uint32
	// Coord joins the controller to the others through etcd; nil means a
	// controller on its own that always decides (tests).
	Coord *Coordinator
	// Confirm checks a move's target right before DNS is written (a deep
	// probe; its result reaches Sink too). A target that fails is not
	// moved to: sites that fail together (a full outage) are not all seen
	// at once, and the first one seen down must not send the name to the
	// next dead one. nil: no check.
	Confirm func(ctx context.Context, site string) error
	// Now is the clock (tests give a fake one); nil: time.Now.
	Now func() time.Time
	// History is this controller's own probe history (nil: none): Init
	// replays what it recorded until ResumeWithin before the start, so a
	// restart does not cost the full UpAfter/StablePeriod proof of sites
	// that were healthy moments before (see Resumable).
	History      func(ctx context.Context, from time.Time) ([]healthcheck.Result, error)
	ResumeWithin time.Duration
	// Revocations is the revocation journal and its replayer (nil: none);
	// its Blocked sites never become active.
	Revocations *revocation.Replayer
	// Board is what the status page shows of the probes (nil: none).
	Board *healthcheck.Board
	// Recheck asks the prober to run kind at site again within the given
	// time (healthcheck.Pipeline.Recheck; nil: no confirmation probes).
	// The controller asks after the first failure of a voting deep probe,
	// so the failure is confirmed (or cleared) in about ConfirmAfter
	// instead of a whole interval (15 s of issuance before).
	Recheck func(site, kind string, within time.Duration) bool
	// ConfirmAfter is how soon a deep failure is probed again; 0:
	// DefaultConfirmAfter.
	ConfirmAfter time.Duration

	mu       sync.Mutex
	state    State
	moves    []Move
	alert    bool
	obs      []Observation
	cmds     []Command
	lastOK   map[string]time.Time // per site: last success seen by this vantage
	lastIntn []Intent
	metrics  *controllerMetrics
	wake     chan struct{}
	// prearmed: this controller lowered the TTL; step() puts the spec's
	// TTL back once the active site is healthy again (a move does too).
	prearmed bool
	// With a coordinator: own recent observations (published as the
	// view), the newest observation taken from each other controller, and
	// what the last snapshot showed.
	mine      []Observation
	seen      map[string]time.Time
	leading   bool
	leaderID  string
	views     []ViewStatus
	etcdDown  bool        // the last snapshot failed (logged once per outage)
	published time.Time   // when the view was last written
	sharedAt  time.Time   // when etcd was last read
	followed  time.Time   // when a follower last read DNS
	refresh   atomic.Bool // leadership or operator keys changed: read etcd now
	decisions atomic.Int64
	// replication: the last account-replication probe of each site.
	replication map[string]healthcheck.Result
	releases    map[string]Release // per site, from its directory's header
	// notReady: per site, why its directory's profiles are not the
	// spec's (the last directory probe that read them).
	notReady map[string]string
	// confirming: (site, kind) whose failure streak has had its
	// confirmation probe asked for; a success of the kind clears it.
	confirming map[[2]string]bool
	// fronts: the CRL fronts and the CRL names listing them.
	fronts *crlFronts
}

// DefaultConfirmAfter: a deep failure is probed again this soon. Not at
// once: a stall of a second (a paused process, a busy host) that failed
// one probe must not fail its confirmation too; it is less than the
// account probe's interval, so no deep kind waits longer than that.
const DefaultConfirmAfter = time.Second

// ViewStatus is one controller's view as the others see it.
type ViewStatus struct {
	Controller   string    `json:"controller"`
	API          string    `json:"api,omitempty"`
	Published    time.Time `json:"published"`
	Observations int       `json:"observations"`
	Fresh        bool      `json:"fresh"`
}

// PolicyFromSpec builds the decision policy from the spec.
func PolicyFromSpec(spec *cluster.Spec) Policy {
	f := spec.Failover
	p := Policy{DownAfter: f.DownAfter, UpAfter: f.UpAfter, StablePeriod: f.StablePeriod.Duration, HoldDown: f.HoldDown.Duration,
		Failback: f.Failback, Quorum: f.Quorum, ViewMaxAge: f.ViewMaxAge.Duration, ResumeConfirm: f.ResumeConfirm, Priority: map[string]int{}}
	for _, s := range spec.Sites {
		p.Sites = append(p.Sites, s.Name)
		p.Priority[s.Name] = s.Priority
	}
	return p
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Controller) addrOf(name string) string {
	s, _ := c.Spec.SiteByName(name)
	return s.Address
}

// observation turns a probe result into what the core needs; kinds that
// do not vote (healthcheck.Kinds) are shown only.
func (c *Controller) observation(r healthcheck.Result) (Observation, bool) {
	k, known := healthcheck.KindOf(r.Kind)
	if !known || !k.Votes {
		return Observation{}, false
	}
	// Publishing the DNS-01 record failed: the cluster DNS (its primary)
	// is at fault, for every site alike; the result says nothing about
	// this site (it is shown in the probe metrics and history).
	if f := r.FailedStep(); f != nil && f.Name == acmeclient.StepDNSUpdate {
		return Observation{}, false
	}
	o := Observation{Site: r.Site, Vantage: c.ID, At: r.Started, OK: r.OK, Deep: k.Deep, Kind: r.Kind}
	if f := r.FailedStep(); f != nil {
		o.Hard = f.ErrorClass == healthcheck.ClassRefused || f.ErrorClass == healthcheck.ClassTimeout
		// Profiles other than the spec's (the last step: the directory
		// itself answered) make the site not ready, not unhealthy.
		o.OK = f.Name == healthcheck.StepProfiles
	}
	// A vantage that reaches no other site does not vote: its view is its
	// own network's problem.
	for name, at := range c.lastOK {
		if name != r.Site && r.Started.Sub(at) < 30*time.Second {
			o.ReachesOthers = true
		}
	}
	if o.OK {
		c.lastOK[r.Site] = r.Started
	}
	return o, true
}

// Sink receives probe results from the scheduler.
func (c *Controller) Sink(r healthcheck.Result) {
	c.mu.Lock()
	if r.Kind == healthcheck.KindReplication {
		if c.replication == nil {
			c.replication = map[string]healthcheck.Result{}
		}
		c.replication[r.Site] = r
	}
	c.noteProfiles(r)
	frontRecheck := false
	if r.Kind == healthcheck.KindCRLFront && c.fronts != nil {
		c.fronts.observe(r, c.now())
		frontRecheck = c.needsConfirmation(Observation{Site: r.Site, Kind: r.Kind, OK: r.OK, Deep: true})
	}
	if v, b := r.Facts[healthcheck.FactBoulderVersion], r.Facts[healthcheck.FactBundle]; v != "" || b != "" {
		if c.releases == nil {
			c.releases = map[string]Release{}
		}
		c.releases[r.Site] = Release{Boulder: v, Bundle: b, At: r.Started}
	}
	o, ok := c.observation(r)
	recheck := false
	if ok {
		c.obs = append(c.obs, o)
		if c.Coord != nil {
			c.mine = append(c.mine, o)
		}
		recheck = c.needsConfirmation(o)
	}
	c.mu.Unlock()
	after := c.ConfirmAfter
	if after <= 0 {
		after = DefaultConfirmAfter
	}
	if recheck {
		c.Recheck(o.Site, o.Kind, after)
	}
	if frontRecheck {
		c.Recheck(r.Site, r.Kind, after) // a front's failure is confirmed as fast
	}
	if ok || frontRecheck {
		c.poke()
	}
}

// needsConfirmation says whether o is the first failure of a voting deep
// probe kind at a site since that kind last passed: then one more run
// right away confirms it (the site is down after two, see Decide) or
// clears it. Later failures of the same streak keep their interval, so a
// site that stays broken is not probed faster and faster (c.mu held).
func (c *Controller) needsConfirmation(o Observation) bool {
	if c.Recheck == nil || !o.Deep {
		return false
	}
	key := [2]string{o.Site, o.Kind}
	if o.OK {
		delete(c.confirming, key)
		return false
	}
	if c.confirming[key] {
		return false
	}
	if c.confirming == nil {
		c.confirming = map[[2]string]bool{}
	}
	c.confirming[key] = true
	return true
}

// noteProfiles keeps, from a directory probe that compared the site's
// profiles with the spec, whether they differ (c.mu held).
func (c *Controller) noteProfiles(r healthcheck.Result) {
	if r.Kind != healthcheck.KindDirectory {
		return
	}
	for _, st := range r.Steps {
		if st.Name != healthcheck.StepProfiles {
			continue
		}
		if c.notReady == nil {
			c.notReady = map[string]string{}
		}
		if st.OK {
			delete(c.notReady, r.Site)
		} else {
			c.notReady[r.Site] = st.Detail
		}
	}
}

func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Command queues an operator command; the next decision applies it. With
// a coordinator it goes through etcd, so whichever controller leads
// applies it and drains outlive restarts.
func (c *Controller) Command(ctx context.Context, cmd Command) error {
	if c.Coord != nil {
		if _, ok := c.Spec.SiteByName(cmd.Site); !ok {
			return fmt.Errorf("%s: no site %q", cmd.Type, cmd.Site)
		}
		return c.Coord.Submit(ctx, cmd)
	}
	c.mu.Lock()
	c.cmds = append(c.cmds, cmd)
	c.mu.Unlock()
	c.poke()
	return nil
}

// Init reads the ACME name from DNS: the active site and the time of the
// last move (the epoch) come from there, so a restarted controller keeps
// the hold-down and never repeats a move that already happened.
func (c *Controller) Init(ctx context.Context, reg prometheus.Registerer) error {
	c.wake = make(chan struct{}, 1)
	c.lastOK = map[string]time.Time{}
	c.seen = map[string]time.Time{}
	c.leading = c.Coord == nil
	if c.Coord != nil {
		c.Coord.OnChange = func() { c.refresh.Store(true); c.poke() }
	}
	if c.PrearmTTL == 0 {
		c.PrearmTTL = 5
	}
	cur, err := c.DNS.Read(ctx)
	if err != nil {
		return fmt.Errorf("read the ACME name %s (%s): %w", c.Spec.ACME.Name, c.DNS, err)
	}
	active := c.Spec.SiteAt(cur.Addrs...)
	if active == "" {
		return fmt.Errorf("the ACME name %s points to %v, which is no site of the spec: fix DNS or the spec", c.Spec.ACME.Name, cur.Addrs)
	}
	c.state = NewState(c.Policy, active, c.now())
	if !cur.Epoch.Time.IsZero() {
		c.state.LastMove = cur.Epoch.Time
	}
	if cur.Epoch.N > 0 {
		// The last move, as the epoch record tells it (maybe another controller's).
		c.moves = []Move{{To: cur.Epoch.Site, Reason: cur.Epoch.Reason + " (from the epoch record, by " + cur.Epoch.Controller + ")",
			At: cur.Epoch.Time, Epoch: cur.Epoch.N, Propagation: []acmedns.Propagation{}}}
	}
	c.resume(ctx)
	c.fronts = newCRLFronts(site.CRLNames(c.Spec))
	c.metrics = newControllerMetrics(reg, c.Policy.Sites)
	for site := range c.fronts.fronts {
		c.metrics.setFrontWithdrawn(site, false)
	}
	c.metrics.setState(c.state, false)
	c.metrics.setLeader(c.leading)
	c.Log.Info("controller starting", "id", c.ID, "active", active, "epoch", cur.Epoch.N)
	return nil
}

// resume marks the sites the history shows healthy until just before now.
func (c *Controller) resume(ctx context.Context) {
	if c.History == nil || c.ResumeWithin <= 0 {
		return
	}
	now := c.now()
	results, err := c.History(ctx, now.Add(-(c.Policy.StablePeriod + 2*c.ResumeWithin)))
	if err != nil {
		c.Log.Warn("probe history unreadable: every site needs the full proof", "err", err)
		return
	}
	var obs []Observation
	for _, r := range results {
		if o, ok := c.observation(r); ok {
			obs = append(obs, o)
		}
	}
	for site, at := range Resumable(c.Policy, obs, now, c.ResumeWithin) {
		c.state.Sites[site].ResumedAt = at
		c.Log.Info("resuming from the probe history", "site", site, "lastDeepOK", at, "confirmWith", c.Policy.ResumeConfirm)
	}
}

// Run decides whenever observations or commands arrive (and every second)
// until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if c.Coord != nil {
		done := make(chan struct{})
		go func() { c.Coord.Run(ctx); close(done) }()
		defer func() { <-done }() // resigned and lease revoked before returning
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-c.wake:
		}
		c.step(ctx)
	}
}

func (c *Controller) step(ctx context.Context) {
	var blocked map[string]string
	if c.Revocations != nil {
		blocked = c.Revocations.Blocked()
	}
	c.mu.Lock()
	obs, cmds := c.obs, c.cmds
	c.obs, c.cmds = nil, nil
	for name, ss := range c.state.Sites {
		ss.Blocked = blocked[name]
		ss.NotReady = c.notReady[name]
	}
	prev := c.state
	wasLeading := c.leading
	c.mu.Unlock()

	leading := true
	var taken []PendingMove
	if c.Coord != nil {
		// etcd is read at most every shareEvery (observations wake the
		// controller several times a second), and at once when leadership
		// or an operator key changes.
		leading = wasLeading && c.Coord.Leading()
		if c.refresh.Swap(false) || time.Since(c.sharedAt) >= shareEvery {
			var more []Observation
			more, cmds, taken, leading = c.share(ctx, prev)
			obs = append(obs, more...)
			c.sharedAt = time.Now()
		}
	}
	start := c.now()
	t0 := time.Now()
	next, intents := Decide(c.Policy, prev, obs, cmds, start)
	c.metrics.decision.Observe(time.Since(t0).Seconds())
	if !leading {
		c.follow(ctx, &next, prev)
		intents = nil
	}
	c.metrics.setLeader(leading)
	for _, in := range intents {
		switch in.Type {
		case IntentMove:
			if c.Confirm != nil {
				if err := c.Confirm(ctx, in.To); err != nil {
					c.Log.Warn("the move's target failed its check; not moving, re-deciding", "from", in.From, "to", in.To, "err", err)
					next.Active, next.LastMove = prev.Active, prev.LastMove
					c.poke()
					continue
				}
			}
			if err := c.applyMove(ctx, &next, prev, in, start); err != nil {
				c.Log.Error("move failed; will re-read and re-decide", "from", in.From, "to", in.To, "err", err)
				next.Active, next.LastMove = prev.Active, prev.LastMove
			}
		case IntentPrearm:
			c.prearm(ctx)
		case IntentAlert:
			c.Log.Warn("no healthy site: DNS left unchanged", "active", in.From, "reason", in.Reason)
		case IntentClearAlert:
			c.Log.Info("a healthy site exists again")
		case IntentRefused:
			c.Log.Warn("operator command refused", "reason", in.Reason)
		}
	}
	if leading && c.prearmed && !moved(intents) {
		if ss := next.Sites[next.Active]; ss != nil && ss.Health == Healthy {
			c.restoreTTL(ctx)
		}
	}
	if leading {
		c.reconcileCRLNames(ctx)
	}
	if err := c.ackMoves(ctx, taken); err != nil {
		c.Log.Warn("etcd: could not remove handled operator moves", "err", err)
	}
	c.mu.Lock()
	c.state = next
	c.leading = leading
	c.alert = next.NoHealthy
	// An operator's command is answered by its own decision, even one
	// with nothing to do, never by an earlier refusal.
	if len(intents) > 0 || len(cmds) > 0 {
		c.lastIntn = intents
	}
	c.mu.Unlock()
	c.metrics.setState(next, next.NoHealthy)
	c.decisions.Add(1)
}

// applyMove writes the move with compare-and-swap. If DNS no longer
// shows what this controller believes (another controller or an operator
// moved it), it adopts DNS and does not write.
func (c *Controller) applyMove(ctx context.Context, next *State, prev State, in Intent, decided time.Time) error {
	cur, err := c.DNS.Read(ctx)
	if err != nil {
		return err
	}
	dnsSite := c.Spec.SiteAt(cur.Addrs...)
	if dnsSite == "" {
		return fmt.Errorf("the ACME name points to %v, which is no site of the spec: not touching it", cur.Addrs)
	}
	if c.Coord != nil && !c.Coord.StillLeader(ctx) {
		return errors.New("no longer the leader (etcd): not writing DNS")
	}
	if dnsSite != prev.Active {
		c.Log.Warn("DNS changed under the controller; adopting it", "dns", dnsSite, "believed", prev.Active, "epoch", cur.Epoch.N)
		next.Active = dnsSite
		next.LastMove = cur.Epoch.Time
		return nil
	}
	ttl := uint32(c.Spec.ACME.TTL)
	e := acmedns.Epoch{N: cur.Epoch.N + 1, Site: in.To, Controller: c.ID, Reason: in.Reason, Time: decided}
	t0 := time.Now()
	err = c.DNS.Move(ctx, cur, []string{c.addrOf(in.To)}, ttl, e)
	c.metrics.updates.WithLabelValues(result(err)).Inc()
	if err != nil {
		if errors.Is(err, acmedns.ErrConflict) {
			return fmt.Errorf("%w (epoch %d)", err, cur.Epoch.N)
		}
		return err
	}
	commit := time.Since(t0)
	c.prearmed = false // the move wrote the spec's TTL
	c.metrics.updateLatency.Observe(commit.Seconds())
	c.metrics.moves.WithLabelValues(string(in.Cause)).Inc()
	m := Move{From: in.From, To: in.To, Reason: in.Reason, Cause: in.Cause, At: decided, Epoch: e.N, CommitMS: float64(commit.Microseconds()) / 1000}
	c.Log.Info("moved the ACME name", "from", in.From, "to", in.To, "epoch", e.N, "reason", in.Reason, "commitMs", m.CommitMS)
	idx := c.recordMove(m)
	go c.watchPropagation(ctx, idx, []string{c.addrOf(in.To)}, e.N, t0)
	return nil
}

func (c *Controller) recordMove(m Move) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.moves = append(c.moves, m)
	if len(c.moves) > 100 {
		c.moves = c.moves[len(c.moves)-100:]
	}
	return len(c.moves) - 1
}

func (c *Controller) watchPropagation(ctx context.Context, idx int, addrs []string, epoch int64, start time.Time) {
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	props := c.DNS.WaitPropagated(pctx, addrs, epoch, start)
	for _, p := range props {
		if p.Done {
			c.metrics.propagation.WithLabelValues(p.Server).Set(p.Lag.Seconds())
			c.metrics.propagated.WithLabelValues(p.Server).Set(1)
		} else {
			c.metrics.propagated.WithLabelValues(p.Server).Set(0)
		}
	}
	c.mu.Lock()
	if idx < len(c.moves) {
		c.moves[idx].Propagation = props
	}
	c.mu.Unlock()
}

func (c *Controller) prearm(ctx context.Context) {
	cur, err := c.DNS.Read(ctx)
	if err != nil {
		return
	}
	if cur.TTL <= c.PrearmTTL {
		c.prearmed = cur.TTL < uint32(c.Spec.ACME.TTL)
		return
	}
	if err := c.DNS.SetTTL(ctx, cur, c.PrearmTTL); err != nil {
		c.Log.Warn("pre-arming the TTL failed", "err", err)
		return
	}
	c.prearmed = true
	c.Log.Info("active site suspect: TTL lowered", "ttl", c.PrearmTTL)
}

// restoreTTL puts the spec's TTL back after a pre-arm.
func (c *Controller) restoreTTL(ctx context.Context) {
	cur, err := c.DNS.Read(ctx)
	if err != nil {
		return
	}
	if err := c.DNS.SetTTL(ctx, cur, uint32(c.Spec.ACME.TTL)); err != nil {
		c.Log.Warn("restoring the TTL failed", "err", err)
		return
	}
	c.prearmed = false
	c.Log.Info("active site healthy again: TTL restored", "ttl", c.Spec.ACME.TTL)
}

func moved(intents []Intent) bool {
	for _, in := range intents {
		if in.Type == IntentMove {
			return true
		}
	}
	return false
}

func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, acmedns.ErrConflict):
		return "conflict"
	default:
		return "error"
	}
}

// Status is what `cairn failover status` and the status page show.
type Status struct {
	Controller string       `json:"controller"`
	Active     string       `json:"active"`
	Alert      bool         `json:"noHealthySite"`
	Sites      []SiteStatus `json:"sites"`
	Moves      []Move       `json:"moves"`
	LastIntent []Intent     `json:"lastIntents"`
	HoldUntil  time.Time    `json:"holdDownUntil"`
	// Leader is the controller that decides; Leading is whether it is this one.
	Leader  string       `json:"leader"`
	Leading bool         `json:"leading"`
	Views   []ViewStatus `json:"views"`
	// Decisions counts the decisions made since the controller started
	// (tests wait on it instead of sleeping).
	Decisions int64 `json:"decisions"`
	// CRLFronts: each site's CRL front, withdrawn from the CRL names or not.
	CRLFronts []CRLFrontStatus `json:"crlFronts,omitempty"`
}

// SiteStatus is one site.
type SiteStatus struct {
	Name    string    `json:"name"`
	State   Health    `json:"state"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"`
	Drained bool      `json:"drained"`
	// Blocked: why it may not become active although healthy.
	Blocked string `json:"blocked,omitempty"`
	// NotReady: why it is chosen only as a last resort (its profiles
	// are not the spec's).
	NotReady string `json:"notReady,omitempty"`
	Priority int    `json:"priority"`
	Address  string `json:"address"`
	// Accounts: the last account-replication probe (shown, never voted
	// on); nil when the spec does not replicate.
	Accounts *AccountsHealth `json:"accounts,omitempty"`
	// Release: what the site said it runs when last probed (nil: not
	// yet, or a front that does not say).
	Release *Release `json:"release,omitempty"`
}

// Release is the Boulder version and bundle generation a site's ACME
// front reports on its directory.
type Release struct {
	Boulder string    `json:"boulderVersion"`
	Bundle  string    `json:"bundle"`
	At      time.Time `json:"at"`
}

// AccountsHealth is a site's account replication as last probed.
type AccountsHealth struct {
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
	Detail string    `json:"detail,omitempty"` // the first failing connection
}

// Status snapshots the controller.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Controller: c.ID, Active: c.state.Active, Alert: c.alert, Moves: append([]Move{}, c.moves...), LastIntent: c.lastIntn,
		Leading: c.leading && (c.Coord == nil || c.Coord.Leading()), Leader: c.leaderID, Views: c.views, Decisions: c.decisions.Load()}
	if c.Coord == nil {
		st.Leader = c.ID
	}
	if !c.state.LastMove.IsZero() {
		st.HoldUntil = c.state.LastMove.Add(c.Policy.HoldDown)
	}
	for _, name := range c.Policy.Sites {
		ss := c.state.Sites[name]
		st.Sites = append(st.Sites, SiteStatus{Name: name, State: ss.Health, Since: ss.Since, Reason: ss.Reason, Drained: ss.Drained, Blocked: ss.Blocked,
			NotReady: c.notReady[name], Priority: c.Policy.Priority[name], Address: c.addrOf(name)})
		if r, ok := c.replication[name]; ok {
			ah := &AccountsHealth{OK: r.OK, At: r.Started}
			if f := r.FailedStep(); f != nil {
				ah.Detail = f.Detail
			}
			st.Sites[len(st.Sites)-1].Accounts = ah
		}
		if rel, ok := c.releases[name]; ok {
			st.Sites[len(st.Sites)-1].Release = &rel
		}
	}
	if st.Moves == nil {
		st.Moves = []Move{}
	}
	if c.fronts != nil {
		st.CRLFronts = c.fronts.status()
	}
	return st
}

// Plan is what Decide would do now with no new observations.
func (c *Controller) Plan() []Intent {
	c.mu.Lock()
	s := c.state
	c.mu.Unlock()
	_, intents := Decide(c.Policy, s, nil, nil, c.now())
	return intents
}

// DefaultID is the controller's name when none is given: the host name.
func DefaultID() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "controller"
}
