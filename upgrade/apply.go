package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/site"
)

// Host is what an upgrade acts on where the sites run: the lab, or the
// provisioned hosts (provision: Ansible and `cairn site` on each host).
type Host interface {
	// RestartComponents restarts the named processes of a site with what
	// its bundle on disk says now, in dependency order, each ready before
	// the next.
	RestartComponents(ctx context.Context, site string, names []string) error
	// SiteSQL runs statements as the site's local database administrator,
	// kept out of the binary log, and returns the rows tab-separated,
	// without headers.
	SiteSQL(ctx context.Context, site, statements string) ([]byte, error)
	// CloseConnections has the site's ACME front end every keep-alive
	// connection after its next answer (the name moved away: clients that
	// hold a connection reconnect elsewhere before the restart).
	CloseConnections(ctx context.Context, site string) error
}

// Controller is the failover controller as an upgrade uses it.
type Controller interface {
	Status(ctx context.Context) (failover.Status, error)
	Drain(ctx context.Context, site string) error
	Undrain(ctx context.Context, site string) error
	Move(ctx context.Context, to string) error
}

// Prober runs one round of deep probes against one site, addressed
// directly (not through the ACME name).
type Prober func(ctx context.Context, site string) []healthcheck.Result

// Phases of one site's upgrade, in order; a site's state names the last
// one it finished.
const (
	PhasePending    = "pending"
	PhaseDraining   = "draining"
	PhaseDrained    = "drained"
	PhaseBackedUp   = "backed-up"
	PhaseRendered   = "rendered"
	PhaseMigrated   = "migrated"
	PhaseRestarted  = "restarted"
	PhaseHealthy    = "healthy"
	PhaseCanary     = "canary"
	PhaseDone       = "done"
	PhaseUnchanged  = "unchanged"
	PhaseRollback   = "rollback"
	PhaseRolledBack = "rolled-back"
)

// ApplyOptions are Plan's options plus how to roll.
type ApplyOptions struct {
	// Options.To is the Boulder release every site moves to; "" keeps
	// each site's (the upgrade is then a cairn.yaml or cairn change).
	Options
	// Sites limits the upgrade to these sites (default: all).
	Sites []string
	// Canary is how long an upgraded site is watched (deep probes) before
	// the next site starts; CanaryTraffic also moves the ACME name to it
	// for that time.
	Canary        time.Duration
	CanaryTraffic bool
	// Gate is the number of consecutive successful deep-probe rounds on
	// the new release a site needs (default failover.upAfter); Fail the
	// consecutive failed rounds that fail the gate (default
	// failover.downAfter); GateTimeout bounds the wait (default 5 min).
	Gate, Fail  int
	GateTimeout time.Duration
	// Interval between the gate's probe rounds (default 1 s); Watch
	// between rounds while a site is only watched: the canary, and the
	// gate once it has its passing rounds and waits for the controller's
	// word, which it still asks every Interval (default the issuance probe
	// interval, the controller's own cadence).
	Interval, Watch time.Duration
	// StateFile records progress; re-running Apply resumes from it.
	StateFile string
	// Backups is where each site's previous bundle is kept.
	Backups    string
	Host       Host
	Controller Controller
	Probe      Prober
	// Break changes a site's re-rendered bundle before its restart: the
	// bad-release drill's broken release. Nil in normal use.
	Break func(site, dir string) error
	// Event is told every phase of every site as it happens.
	Event func(Event)
}

// Event is one phase of one site's upgrade.
type Event struct {
	Site   string    `json:"site"`
	Phase  string    `json:"phase"`
	At     time.Time `json:"at"`
	Detail string    `json:"detail,omitempty"`
}

// GateError is a failed gate: the step and ACME problem that failed it.
type GateError struct {
	Site, Kind, Step, Problem, Detail string
	Rounds                            int
}

func (e *GateError) Error() string {
	s := fmt.Sprintf("site %s failed its gate", e.Site)
	if e.Step != "" {
		s += fmt.Sprintf(": %s probe, step %s", e.Kind, e.Step)
	}
	if e.Problem != "" {
		s += " (" + e.Problem + ")"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Apply upgrades the sites one at a time, in the order Plan gives, each
// drained, re-rendered, migrated, restarted, gated by deep probes and
// watched as a canary before the next; a site that fails is rolled back
// and Apply stops. Progress is recorded in StateFile: a run that was
// interrupted resumes where it stopped when run again with the same
// target.
func Apply(ctx context.Context, o ApplyOptions) (*State, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	// The target's binaries first: a release that cannot be built
	// leaves no upgrade half done behind.
	a := &applier{o: o}
	if err := a.prepare(ctx); err != nil {
		return nil, err
	}
	defer a.close()
	st, err := o.loadState(ctx)
	if err != nil {
		return nil, err
	}
	a.st = st
	a.r.o.RotateInternal = st.RotateInternal
	for _, name := range st.Order {
		ss := st.Sites[name]
		if ss.Phase == PhaseDone || ss.Phase == PhaseUnchanged {
			continue
		}
		if err := a.site(ctx, name); err != nil {
			if ctx.Err() != nil {
				a.save()
				return st, fmt.Errorf("interrupted during site %s (after phase %s): run the same command again to resume", name, st.Sites[name].Phase)
			}
			return st, err
		}
	}
	a.returnName(ctx)
	st.Finished = time.Now()
	a.save()
	return st, nil
}

// returnName leaves the ACME name where the upgrade found it: the site
// that was active was drained (the name moved away); once every site is
// done, the name goes back to it if it is healthy (with failback: auto
// the controller would do so itself, after its stable period).
func (a *applier) returnName(ctx context.Context) {
	was := a.st.ActiveBefore
	if a.o.Controller == nil || was == "" {
		return
	}
	st, err := a.o.Controller.Status(ctx)
	if err != nil || st.Active == was {
		return
	}
	for _, s := range st.Sites {
		if s.Name == was && s.State == failover.Healthy && !s.Drained {
			if err := a.o.Controller.Move(ctx, was); err != nil {
				a.logf("the ACME name stays on %s: moving it back to %s: %v", st.Active, was, err)
				return
			}
			a.logf("the ACME name is back on %s, where the upgrade found it", was)
			return
		}
	}
	a.logf("the ACME name stays on %s: %s, active before the upgrade, is not healthy", st.Active, was)
}

func (o *ApplyOptions) defaults() error {
	if o.Host == nil || o.Probe == nil || o.StateFile == "" {
		return errors.New("upgrade: Host, Probe and StateFile are required")
	}
	if o.To != "" {
		if err := boulderbin.CheckVersion(o.To); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	for _, s := range o.Sites {
		if _, ok := o.Spec.SiteByName(s); !ok {
			return fmt.Errorf("--sites: %q is not a site of the spec (%s)", s, strings.Join(o.Spec.SiteNames(), ", "))
		}
	}
	if o.Gate <= 0 {
		o.Gate = max(1, o.Spec.Failover.UpAfter)
	}
	if o.Fail <= 0 {
		o.Fail = max(1, o.Spec.Failover.DownAfter)
	}
	if o.GateTimeout <= 0 {
		o.GateTimeout = 5 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Watch <= 0 {
		o.Watch = max(o.Interval, o.Spec.Failover.Probes.Issuance.Duration)
	}
	if o.Backups == "" {
		o.Backups = filepath.Join(filepath.Dir(o.StateFile), "upgrade-backups")
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	return nil
}

type applier struct {
	o  ApplyOptions
	st *State
	r  *render
}

func (a *applier) logf(format string, args ...any) {
	fmt.Fprintf(a.o.Log, format+"\n", args...)
}

func (a *applier) save() {
	if err := a.st.write(a.o.StateFile); err != nil {
		a.logf("upgrade: cannot record progress in %s: %v", a.o.StateFile, err)
	}
}

// phase records that a site finished a phase, in the state and as an event.
func (a *applier) phase(site, phase, detail string) {
	ss := a.st.Sites[site]
	now := time.Now()
	ss.Phase = phase
	ss.Phases = append(ss.Phases, Event{Site: site, Phase: phase, At: now, Detail: detail})
	a.save()
	if detail != "" {
		a.logf("site %s: %s: %s", site, phase, detail)
	} else {
		a.logf("site %s: %s", site, phase)
	}
	if a.o.Event != nil {
		a.o.Event(Event{Site: site, Phase: phase, At: now, Detail: detail})
	}
}

// prepare makes sure the target release's binaries exist before any site
// is touched, and opens the PKI.
func (a *applier) prepare(ctx context.Context) error {
	if a.o.To != "" {
		if _, err := boulderbin.EnsureVersion(ctx, a.o.Log, a.o.To, "boulder"); err != nil {
			return fmt.Errorf("--to %s: %w", a.o.To, err)
		}
	}
	r, err := openRender(ctx, a.o.Options)
	a.r = r
	return err
}

func (a *applier) close() {
	if a.r != nil {
		a.r.close()
	}
}

// site upgrades one site; on a failed gate it rolls the site back.
func (a *applier) site(ctx context.Context, name string) error {
	ss := a.st.Sites[name]
	if ss.Phase == PhaseRolledBack {
		ss.Phase, ss.Error = PhasePending, ""
	}
	if ss.Phase == PhasePending && a.o.Break == nil {
		// Nothing to change: the site is not even drained.
		p, err := a.r.plan(ctx, name)
		if err != nil {
			return fmt.Errorf("site %s: %w", name, err)
		}
		if p.Unchanged() {
			ss.FromBoulder, ss.ToBoulder, ss.FromGeneration, ss.ToGeneration = p.FromBoulder, p.ToBoulder, p.FromGeneration, p.ToGeneration
			a.phase(name, PhaseUnchanged, "nothing to change: not drained, not restarted")
			return nil
		}
	}
	if err := a.drain(ctx, name); err != nil {
		return err
	}
	if !ss.reached(PhaseBackedUp) {
		dir := filepath.Join(a.o.Backups, name+"-"+time.Now().UTC().Format("20060102T150405Z"))
		if err := backup(a.o.Bundle(name), dir); err != nil {
			return fmt.Errorf("site %s: back up its bundle: %w", name, err)
		}
		old, err := site.ReadBundle(dir)
		if err != nil {
			return err
		}
		ss.Backup, ss.FromBoulder, ss.FromGeneration = dir, old.BoulderVersion, old.Generation
		a.phase(name, PhaseBackedUp, dir)
	}
	// From here on a failure rolls back to the backup. Rendering is
	// idempotent, so a resumed site renders again; one that restarted on
	// this very bundle is not restarted again: it goes on to its gate.
	restarted := ss.reached(PhaseRestarted) && ss.Phase != PhaseRollback
	wasGen := ss.ToGeneration
	restart, err := a.render(ctx, name)
	if err != nil {
		return a.rollback(ctx, name, err)
	}
	if len(restart) == 0 && ss.FromGeneration == ss.ToGeneration {
		a.phase(name, PhaseUnchanged, "nothing to change")
		return a.undrain(ctx, name)
	}
	if !restarted || wasGen != ss.ToGeneration {
		if err := Migrate(ctx, a.o.Host, a.o.Spec, name, a.o.Bundle(name), a.o.Log); err != nil {
			return a.rollback(ctx, name, err)
		}
		a.phase(name, PhaseMigrated, "")
		if err := a.o.Host.RestartComponents(ctx, name, restart); err != nil {
			return a.rollback(ctx, name, err)
		}
		a.phase(name, PhaseRestarted, strings.Join(restart, ", "))
	}
	if gateSkipped {
		a.phase(name, PhaseDone, "gate skipped (a cairn_nogate build)")
		return a.undrain(ctx, name)
	}
	rounds, err := a.gate(ctx, name, ss.ToGeneration, a.o.Gate)
	if err != nil {
		return a.rollback(ctx, name, err)
	}
	a.phase(name, PhaseHealthy, fmt.Sprintf("%d deep-probe rounds on bundle %s", rounds, ss.ToGeneration))
	if err := a.canary(ctx, name); err != nil {
		return a.rollback(ctx, name, err)
	}
	if err := a.undrain(ctx, name); err != nil {
		return err
	}
	a.phase(name, PhaseDone, "")
	return nil
}

// render re-renders the site in place (the new release or spec) and
// returns the processes to restart, compared with the backup.
func (a *applier) render(ctx context.Context, name string) ([]string, error) {
	ss := a.st.Sites[name]
	nb, err := a.r.site(ctx, name, a.o.Bundle(name))
	if err != nil {
		return nil, err
	}
	if a.o.Break != nil {
		if err := a.o.Break(name, a.o.Bundle(name)); err != nil {
			return nil, err
		}
	}
	old, err := site.ReadBundle(ss.Backup)
	if err != nil {
		return nil, err
	}
	changed, err := changedFiles(ss.Backup, a.o.Bundle(name))
	if err != nil {
		return nil, err
	}
	ss.ToBoulder, ss.ToGeneration = nb.BoulderVersion, nb.Generation
	restart := restarts(old, nb, changed)
	a.phase(name, PhaseRendered, fmt.Sprintf("Boulder %s → %s, bundle %s → %s, %d files changed", ss.FromBoulder, ss.ToBoulder, ss.FromGeneration, ss.ToGeneration, len(changed)))
	return restart, nil
}

// drain takes the site out of rotation for its upgrade: the controller
// moves the ACME name away first if it is active, and a drained site is
// no failover target while it restarts. Clients that cached the old
// answer keep reaching it for the name's TTL: the restart waits that out.
func (a *applier) drain(ctx context.Context, name string) error {
	ss := a.st.Sites[name]
	if a.o.Controller == nil || ss.reached(PhaseDrained) {
		return nil
	}
	if ss.Phase == PhasePending {
		a.phase(name, PhaseDraining, "")
	}
	st, err := a.o.Controller.Status(ctx)
	if err != nil {
		return fmt.Errorf("site %s: the controller: %w", name, err)
	}
	wasActive := st.Active == name
	for _, s := range st.Sites {
		if s.Name == name && s.Drained && !ss.WeDrained {
			// Drained by an operator: leave it drained afterwards.
			a.phase(name, PhaseDrained, "already drained by an operator")
			return nil
		}
	}
	if err := a.o.Controller.Drain(ctx, name); err != nil {
		return fmt.Errorf("site %s: drain: %w", name, err)
	}
	ss.WeDrained = true
	detail := "standby: out of rotation while it restarts"
	if wasActive {
		if err := a.moveAway(ctx, name); err != nil {
			return err
		}
		detail = "was active: the name moved away"
	} else if err := a.o.Host.CloseConnections(ctx, name); err != nil {
		return fmt.Errorf("site %s: %w", name, err)
	}
	a.phase(name, PhaseDrained, detail)
	return nil
}

// moveAway waits until the drained site no longer has the ACME name, has
// its front close the connections clients keep to it, and waits the
// name's TTL for the answers clients cached.
func (a *applier) moveAway(ctx context.Context, name string) error {
	if err := a.waitActiveNot(ctx, name); err != nil {
		return err
	}
	if err := a.o.Host.CloseConnections(ctx, name); err != nil {
		return fmt.Errorf("site %s: %w", name, err)
	}
	ttl := time.Duration(a.o.Spec.ACME.TTL) * time.Second
	a.logf("site %s: the name moved away and its front closes kept connections; waiting the name's TTL (%s) for clients' cached answers", name, ttl)
	return sleep(ctx, ttl)
}

func (a *applier) waitActiveNot(ctx context.Context, name string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := a.o.Controller.Status(ctx)
		if err == nil && st.Active != name && st.Active != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("site %s: drained, but the controller did not move the ACME name away in 2 minutes (is another site healthy? see `cairn failover status`)", name)
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

func (a *applier) undrain(ctx context.Context, name string) error {
	ss := a.st.Sites[name]
	if a.o.Controller == nil || !ss.WeDrained {
		return nil
	}
	if err := a.o.Controller.Undrain(ctx, name); err != nil {
		return fmt.Errorf("site %s: undrain: %w", name, err)
	}
	ss.WeDrained = false
	a.save()
	a.logf("site %s: undrained", name)
	return nil
}

// gate runs deep-probe rounds against the site until want consecutive
// rounds pass on the expected bundle and the controller calls the site
// healthy on it; Fail consecutive failed rounds, or the timeout, fail it.
// While it waits for the controller alone, a round runs every Watch, not
// every Interval: the just-restarted site is watched, not loaded with an
// issuance a second (26 rounds in a 35-s wait before).
func (a *applier) gate(ctx context.Context, name, bundle string, want int) (int, error) {
	deadline := time.Now().Add(a.o.GateTimeout)
	ok, failed, rounds := 0, 0, 0
	var last *GateError
	var lastRound time.Time
	for {
		if ok < want || time.Since(lastRound) >= a.o.Watch {
			rounds++
			lastRound = time.Now()
			g := a.round(ctx, name, bundle)
			switch {
			case ctx.Err() != nil:
				return rounds, ctx.Err()
			case g == nil:
				ok, failed = ok+1, 0
			default:
				ok, failed, last = 0, failed+1, g
				a.logf("site %s: gate round %d failed: %v", name, rounds, g)
			}
		}
		if failed >= a.o.Fail {
			last.Rounds = rounds
			return rounds, last
		}
		if ok >= want && a.controllerHealthy(ctx, name, bundle) {
			return rounds, nil
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = &GateError{Site: name, Detail: fmt.Sprintf("%d deep-probe rounds passed but the controller did not call it healthy on bundle %s within %s", ok, bundle, a.o.GateTimeout)}
			}
			last.Rounds = rounds
			return rounds, last
		}
		if err := sleep(ctx, a.o.Interval); err != nil {
			return rounds, err
		}
	}
}

// round is one round of deep probes; nil when every probe passed and the
// site names the expected bundle.
func (a *applier) round(ctx context.Context, name, bundle string) *GateError {
	for _, r := range a.o.Probe(ctx, name) {
		if !r.OK {
			g := &GateError{Site: name, Kind: r.Kind}
			if s := r.FailedStep(); s != nil {
				g.Step, g.Problem, g.Detail = s.Name, s.ACMEProblemType, cluster.FirstLine(s.Detail)
				if g.Problem == "" && s.HTTPStatus != 0 {
					g.Problem = fmt.Sprintf("HTTP %d", s.HTTPStatus)
				}
			}
			return g
		}
		if got := r.Facts[healthcheck.FactBundle]; r.Kind == healthcheck.KindDirectory && bundle != "" && got != bundle {
			return &GateError{Site: name, Kind: r.Kind, Step: "release", Detail: fmt.Sprintf("the site runs bundle %q, not %s (its ACME front was not restarted?)", got, bundle)}
		}
	}
	return nil
}

// controllerHealthy: with no controller there is nothing more to wait for.
func (a *applier) controllerHealthy(ctx context.Context, name, bundle string) bool {
	if a.o.Controller == nil {
		return true
	}
	st, err := a.o.Controller.Status(ctx)
	if err != nil {
		return false
	}
	for _, s := range st.Sites {
		if s.Name == name {
			return s.State == failover.Healthy && (s.Release == nil || bundle == "" || s.Release.Bundle == bundle)
		}
	}
	return false
}

// canary watches the upgraded site for o.Canary: deep probes (every
// failed round counts; Fail in a row fail it) and, with CanaryTraffic,
// the ACME name moved to it.
func (a *applier) canary(ctx context.Context, name string) error {
	if a.o.Canary <= 0 {
		return nil
	}
	ss := a.st.Sites[name]
	detail := fmt.Sprintf("%s, deep probes only", a.o.Canary)
	if a.o.CanaryTraffic && a.o.Controller != nil {
		if err := a.undrain(ctx, name); err != nil {
			return err
		}
		if err := a.o.Controller.Move(ctx, name); err != nil {
			return fmt.Errorf("site %s: move the name to the canary: %w", name, err)
		}
		detail = fmt.Sprintf("%s, taking the ACME name's traffic", a.o.Canary)
	}
	a.phase(name, PhaseCanary, detail)
	end := time.Now().Add(a.o.Canary)
	failed := 0
	for time.Now().Before(end) {
		if g := a.round(ctx, name, ss.ToGeneration); g != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed++
			a.logf("site %s: canary round failed (%d in a row): %v", name, failed, g)
			if failed >= a.o.Fail {
				return g
			}
		} else {
			failed = 0
		}
		if err := sleep(ctx, min(a.o.Watch, time.Until(end))); err != nil {
			return err
		}
	}
	return nil
}

// rollback puts the site's previous bundle back, restarts what the
// upgrade restarted, checks that it is healthy again and stops the
// upgrade with the cause.
func (a *applier) rollback(ctx context.Context, name string, cause error) error {
	if ctx.Err() != nil {
		return cause // interrupted: resume, not roll back
	}
	ss := a.st.Sites[name]
	ss.Error = cause.Error()
	a.phase(name, PhaseRollback, cause.Error())
	if a.o.Controller != nil {
		if st, err := a.o.Controller.Status(ctx); err == nil && st.Active == name {
			// A canary with traffic: the name moves away before the restart.
			if err := a.o.Controller.Drain(ctx, name); err == nil {
				ss.WeDrained = true
				if err := a.moveAway(ctx, name); err != nil {
					a.logf("site %s: rolling back although: %v", name, err)
				}
			}
		}
	}
	failed, err := site.ReadBundle(a.o.Bundle(name))
	if err != nil {
		return fmt.Errorf("%w; rollback: %v", cause, err)
	}
	changed, err := changedFiles(ss.Backup, a.o.Bundle(name))
	if err != nil {
		return fmt.Errorf("%w; rollback: %v", cause, err)
	}
	if err := restore(ss.Backup, a.o.Bundle(name)); err != nil {
		return fmt.Errorf("%w; rollback: restore %s: %v", cause, ss.Backup, err)
	}
	old, err := site.ReadBundle(a.o.Bundle(name))
	if err != nil {
		return fmt.Errorf("%w; rollback: %v", cause, err)
	}
	restart := restarts(failed, old, changed)
	restart = slices.DeleteFunc(restart, func(s string) bool { return strings.HasSuffix(s, " (removed)") })
	if err := a.o.Host.RestartComponents(ctx, name, restart); err != nil {
		return fmt.Errorf("%w; rollback: restart: %v (the site is left drained)", cause, err)
	}
	if _, err := a.gate(ctx, name, old.Generation, a.o.Gate); err != nil {
		return fmt.Errorf("%w; rolled back to bundle %s but it is not healthy: %v (the site is left drained)", cause, old.Generation, err)
	}
	if err := a.undrain(ctx, name); err != nil {
		return err
	}
	a.phase(name, PhaseRolledBack, fmt.Sprintf("bundle %s, Boulder %s, healthy again", old.Generation, old.BoulderVersion))
	var untouched []string
	for _, s := range a.st.Order {
		if p := a.st.Sites[s].Phase; p == PhasePending {
			untouched = append(untouched, s)
		}
	}
	msg := fmt.Sprintf("%v; site %s rolled back to bundle %s (Boulder %s)", cause, name, old.Generation, old.BoulderVersion)
	if len(untouched) > 0 {
		msg += "; not started: " + strings.Join(untouched, ", ")
	}
	return &Failed{Msg: msg, Cause: cause}
}

// Failed is an upgrade stopped at a failed site, rolled back.
type Failed struct {
	Msg   string
	Cause error
}

func (f *Failed) Error() string { return f.Msg }
func (f *Failed) Unwrap() error { return f.Cause }

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Abandon ends a half-done upgrade: the site in progress is rolled back
// to its backup (and undrained); sites that finished keep the new
// release (they passed their gate); sites not started are left alone.
func Abandon(ctx context.Context, o ApplyOptions) (*State, error) {
	st, err := ReadState(o.StateFile)
	if err != nil {
		return nil, err
	}
	if st == nil || !st.Finished.IsZero() {
		return st, fmt.Errorf("no upgrade in progress (%s)", o.StateFile)
	}
	o.To = st.To
	if err := o.defaults(); err != nil {
		return st, err
	}
	a := &applier{o: o, st: st}
	var errs []error
	for _, name := range st.Order {
		ss := st.Sites[name]
		switch ss.Phase {
		case PhasePending, PhaseDone, PhaseUnchanged, PhaseRolledBack:
			continue
		}
		if ss.Backup == "" {
			errs = append(errs, a.undrain(ctx, name))
			ss.Phase = PhasePending
			continue
		}
		var f *Failed
		if err := a.rollback(ctx, name, errors.New("upgrade abandoned")); !errors.As(err, &f) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.save()
		return st, err
	}
	st.Finished, st.Abandoned = time.Now(), true
	a.save()
	return st, nil
}
