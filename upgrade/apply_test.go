package upgrade

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/healthcheck"
)

// fakeController answers Status from a site table and counts calls.
type fakeController struct {
	active  string
	health  failover.Health
	bundle  string
	drained map[string]bool
	moves   []string
	ready   func() bool // nil: always; false: the site is still recovering
}

func (f *fakeController) Status(context.Context) (failover.Status, error) {
	st := failover.Status{Active: f.active}
	h := f.health
	if f.ready != nil && !f.ready() {
		h = failover.Recovering
	}
	for _, n := range []string{"a", "b"} {
		st.Sites = append(st.Sites, failover.SiteStatus{Name: n, State: h, Drained: f.drained[n], Release: &failover.Release{Bundle: f.bundle}})
	}
	return st, nil
}
func (f *fakeController) Drain(_ context.Context, s string) error   { f.drained[s] = true; return nil }
func (f *fakeController) Undrain(_ context.Context, s string) error { f.drained[s] = false; return nil }
func (f *fakeController) Move(_ context.Context, s string) error {
	f.moves = append(f.moves, s)
	return nil
}

// fakeHost records the sites whose fronts were told to close connections.
type fakeHost struct {
	Host
	closed []string
}

func (h *fakeHost) CloseConnections(_ context.Context, site string) error {
	h.closed = append(h.closed, site)
	return nil
}

// prober answers round i with script[i] (the last one after the end):
// "" passes, anything else fails the issuance probe at that step.
func prober(bundle string, script ...string) (Prober, *int) {
	n := new(int)
	return func(ctx context.Context, site string) []healthcheck.Result {
		step := script[min(*n, len(script)-1)]
		*n++
		dir := healthcheck.Result{Site: site, Kind: healthcheck.KindDirectory, OK: true, Facts: map[string]string{healthcheck.FactBundle: bundle}}
		if step == "" {
			return []healthcheck.Result{dir, {Site: site, Kind: healthcheck.KindIssuance, OK: true}}
		}
		return []healthcheck.Result{dir, {Site: site, Kind: healthcheck.KindIssuance, Steps: []healthcheck.Step{
			{Name: "new-order", OK: true}, {Name: step, ErrorClass: healthcheck.ClassACME, ACMEProblemType: "urn:ietf:params:acme:error:serverInternal", HTTPStatus: 500, Detail: "Error finalizing order\nmore"}}}}
	}, n
}

func testApplier(t *testing.T, p Prober, c Controller) *applier {
	spec := cluster.Default([]string{"a", "b"})
	o := ApplyOptions{Options: Options{Spec: spec}, Host: nil, Probe: p, Controller: c, StateFile: filepath.Join(t.TempDir(), "s.json"), Gate: 3, Fail: 2, GateTimeout: time.Minute, Interval: time.Millisecond, Watch: time.Millisecond}
	o.Host = &fakeHost{}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	return &applier{o: o, st: &State{Sites: map[string]*SiteState{"a": {}, "b": {}}}}
}

// The gate needs Gate consecutive passing rounds on the new bundle and the
// controller's word; a failure resets the count.
func TestGateNeedsConsecutiveSuccessesAndTheController(t *testing.T) {
	c := &fakeController{health: failover.Healthy, bundle: "new", drained: map[string]bool{}}
	p, n := prober("new", "", "finalize", "", "", "", "", "")
	// The controller calls the site healthy from the 7th round on.
	c.ready = func() bool { return *n >= 7 }
	a := testApplier(t, p, c)
	rounds, err := a.gate(context.Background(), "b", "new", 3)
	if err != nil {
		t.Fatal(err)
	}
	if rounds != 7 { // pass, fail (reset), pass, pass, pass (3 in a row), pass, pass (controller)
		t.Errorf("gate passed after %d rounds, want 7", rounds)
	}
}

// Once its rounds have passed, the gate waits for the controller's word
// with a round every Watch only: here none more, the controller asked
// every Interval until it calls the site healthy.
func TestGateWatchesWhileItWaitsForTheController(t *testing.T) {
	c := &fakeController{health: failover.Healthy, bundle: "new", drained: map[string]bool{}}
	p, n := prober("new", "")
	asked := 0
	c.ready = func() bool { asked++; return asked >= 20 }
	a := testApplier(t, p, c)
	a.o.Watch = time.Hour
	rounds, err := a.gate(context.Background(), "b", "new", 3)
	if err != nil {
		t.Fatal(err)
	}
	if rounds != 3 || *n != 3 || asked != 20 {
		t.Errorf("gate: %d rounds (%d probed), the controller asked %d times; want 3 rounds, then the controller alone until its 20th answer", rounds, *n, asked)
	}
}

// Fail consecutive failures fail the gate with the step and ACME problem.
func TestGateFailsWithTheStepAndProblem(t *testing.T) {
	c := &fakeController{health: failover.Healthy, bundle: "new", drained: map[string]bool{}}
	p, _ := prober("new", "finalize")
	a := testApplier(t, p, c)
	_, err := a.gate(context.Background(), "b", "new", 3)
	var g *GateError
	if !errors.As(err, &g) {
		t.Fatalf("gate: %v", err)
	}
	if g.Step != "finalize" || g.Problem != "urn:ietf:params:acme:error:serverInternal" || g.Rounds != 2 || strings.Contains(g.Error(), "more") {
		t.Errorf("gate error %+v: %v", g, err)
	}
}

// A site that still serves the old bundle (its front not restarted) fails
// the round, however well it issues.
func TestGateWantsTheNewRelease(t *testing.T) {
	c := &fakeController{health: failover.Healthy, bundle: "new", drained: map[string]bool{}}
	p, _ := prober("old", "")
	a := testApplier(t, p, c)
	_, err := a.gate(context.Background(), "b", "new", 3)
	var g *GateError
	if !errors.As(err, &g) || g.Step != "release" {
		t.Fatalf("gate on the old bundle: %v", err)
	}
}

// The active site is drained and the name must move away before its
// restart; a standby is drained without waiting; both are undrained.
func TestDrainAndUndrain(t *testing.T) {
	c := &fakeController{active: "a", health: failover.Healthy, drained: map[string]bool{}}
	p, _ := prober("", "")
	a := testApplier(t, p, c)
	a.o.Spec.ACME.TTL = 0
	if err := a.drain(context.Background(), "b"); err != nil || !c.drained["b"] || !a.st.Sites["b"].WeDrained {
		t.Fatalf("drain standby: %v %v", err, c.drained)
	}
	go func() { time.Sleep(20 * time.Millisecond); c.active = "b" }()
	if err := a.drain(context.Background(), "a"); err != nil || !c.drained["a"] {
		t.Fatalf("drain active: %v", err)
	}
	for _, s := range []string{"a", "b"} {
		if err := a.undrain(context.Background(), s); err != nil || c.drained[s] {
			t.Fatalf("undrain %s: %v", s, err)
		}
	}
	// Both fronts closed the connections clients kept (the active one
	// once the name had moved away).
	if got := a.o.Host.(*fakeHost).closed; strings.Join(got, ",") != "b,a" {
		t.Errorf("fronts told to close connections: %v", got)
	}
}

// An operator's drain is theirs: the upgrade does not undrain it.
func TestOperatorsDrainStays(t *testing.T) {
	c := &fakeController{active: "a", health: failover.Healthy, drained: map[string]bool{"b": true}}
	p, _ := prober("", "")
	a := testApplier(t, p, c)
	if err := a.drain(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if err := a.undrain(context.Background(), "b"); err != nil || !c.drained["b"] {
		t.Fatalf("the operator's drain was lifted: %v", err)
	}
}

// A resumed upgrade continues from where the state says; a different
// target is refused with the way out.
func TestStateResumesOrRefuses(t *testing.T) {
	dir := t.TempDir()
	o := ApplyOptions{Options: Options{Spec: cluster.Default([]string{"a", "b", "c"}), Active: "a", Log: os.Stderr, To: "v0.20260908.0"}, StateFile: filepath.Join(dir, "state.json")}
	st, err := o.loadState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.Order, ",") != "c,b,a" || st.ActiveBefore != "a" {
		t.Fatalf("order %v, active before %q", st.Order, st.ActiveBefore)
	}
	st.Sites["c"].Phase = PhaseRestarted
	if err := st.write(o.StateFile); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(o.StateFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", fi.Mode())
	}
	again, err := o.loadState(context.Background())
	if err != nil || again.Sites["c"].Phase != PhaseRestarted {
		t.Fatalf("resume: %v %+v", err, again)
	}
	o.To = "v0.20260921.0"
	if _, err := o.loadState(context.Background()); err == nil || !strings.Contains(err.Error(), "--to v0.20260908.0") || !strings.Contains(err.Error(), "abandon") {
		t.Errorf("another target: %v", err)
	}
	if !again.Sites["c"].reached(PhaseMigrated) || again.Sites["c"].reached(PhaseHealthy) {
		t.Errorf("reached() wrong for %s", again.Sites["c"].Phase)
	}
}

// restore puts every backed-up file back and removes rendered files the
// backup does not have.
func TestRestoreIsTheBackup(t *testing.T) {
	bundle, dir := t.TempDir(), t.TempDir()
	write := func(root, rel, s string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(rel)), 0o755)
		if err := os.WriteFile(filepath.Join(root, rel), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(bundle, "etc/ra.json", "old")
	write(bundle, "bundle.json", `{"generation":"g1"}`)
	write(bundle, "var/data", "data")
	bk := filepath.Join(dir, "bk")
	if err := backup(bundle, bk); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bk, "var")); err == nil {
		t.Error("the backup holds var/")
	}
	write(bundle, "etc/ra.json", "broken")
	write(bundle, "etc/new.json", "new")
	write(bundle, "bundle.json", `{"generation":"g2"}`)
	if err := restore(bk, bundle); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{"etc/ra.json": "old", "bundle.json": `{"generation":"g1"}`, "var/data": "data"} {
		if b, _ := os.ReadFile(filepath.Join(bundle, rel)); string(b) != want {
			t.Errorf("%s = %q, want %q", rel, b, want)
		}
	}
	if _, err := os.Stat(filepath.Join(bundle, "etc/new.json")); err == nil {
		t.Error("a file the release added survived the rollback")
	}
}

// With traffic, the canary is put back in rotation and the ACME name moved
// to it; Fail failed rounds in a row end the canary with the step.
func TestCanaryWithTraffic(t *testing.T) {
	c := &fakeController{active: "a", health: failover.Healthy, drained: map[string]bool{"b": true}}
	p, n := prober("new", "")
	a := testApplier(t, p, c)
	a.o.Canary, a.o.CanaryTraffic = 50*time.Millisecond, true
	a.st.Sites["b"] = &SiteState{ToGeneration: "new", WeDrained: true}
	if err := a.canary(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if c.drained["b"] || strings.Join(c.moves, ",") != "b" || *n < 2 {
		t.Errorf("canary with traffic: drained %v, moves %v, %d rounds", c.drained["b"], c.moves, *n)
	}
	// A canary that fails.
	p, _ = prober("new", "", "finalize")
	a = testApplier(t, p, c)
	a.o.Canary = time.Minute
	a.st.Sites["b"] = &SiteState{ToGeneration: "new"}
	var g *GateError
	if err := a.canary(context.Background(), "b"); !errors.As(err, &g) || g.Step != "finalize" {
		t.Errorf("failing canary: %v", err)
	}
}
