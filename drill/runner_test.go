package drill

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/testenv"
)

func (r *Runner) eventsOf(kind string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e.Site+" "+e.Detail)
		}
	}
	return out
}

// The runner's timeline injects each step's fault at its time for the
// sites it names, journals each before injecting it, restores those with
// a "for" when it has passed, and reports the steps it could not build;
// restoreAll restores the rest and clears the journal.
func TestRunnerTimelineAndRestore(t *testing.T) {
	in := newFakeInfra(t, "a", "b")
	in.spec.Sites[1].ServiceNetwork = ""
	sc, err := Parse([]byte(`name: t
duration: 60s
timeline:
  - {at: 0s, fault: crash, site: active, component: wfe, for: 100ms}
  - {at: 50ms, fault: hang, site: all, component: sa}
  - {at: 60ms, fault: partition, site: standby}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Scenario: sc, spec: in.spec, Infra: in}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var injections []time.Time
	// The crash takes effect, then its injection goes on (as a site's
	// destruction does after its first process stopped): the fault is
	// in, and timed, from before the effect, not from the injection's end.
	var crashed time.Time
	in.signalled = func(s, c string, sig syscall.Signal) {
		if sig == syscall.SIGKILL && crashed.IsZero() {
			crashed = time.Now()
			for !time.Now().After(crashed) {
			}
		}
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		done <- r.timeline(ctx, start, "a", func(at time.Time) { mu.Lock(); injections = append(injections, at); mu.Unlock() })
	}()
	// Both observable: on a busy machine the crash's injection can take
	// longer than its 100ms, and then its restore comes before the
	// hangs' injections (50ms) instead of after.
	testenv.WaitFor(t, "the crash restored after its 100ms, and three faults injected", 10*time.Second, func() bool {
		return len(r.eventsOf("fault-restored")) == 1 && len(r.eventsOf("fault-injected")) >= 3
	})
	if got, want := r.eventsOf("fault-injected"), []string{"a crash a/wfe (SIGKILL)", "a hang a/sa (SIGSTOP)", "b hang b/sa (SIGSTOP)"}; !slices.Equal(got, want) {
		t.Fatalf("injected %q, want %q", got, want)
	}
	if running, _ := in.state("a/wfe"); !running {
		t.Error("a/wfe not started again after its for")
	}
	for _, s := range []string{"a/sa", "b/sa"} {
		if _, hung := in.state(s); !hung {
			t.Errorf("%s not hung", s)
		}
	}
	b, err := os.ReadFile(journalPath(in.spec))
	if err != nil || strings.Count(string(b), `"fault":`) != 2 {
		t.Errorf("the journal while two faults are in (the crash restored): %v\n%s", err, b)
	}
	cancel()
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "timeline[2]") || !strings.Contains(err.Error(), "serviceNetwork") {
		t.Errorf("timeline error %v, want the partition it could not build", err)
	}
	mu.Lock()
	if len(injections) != 3 || injections[0].Before(start) || injections[1].Sub(start) < 50*time.Millisecond {
		t.Errorf("injections at %v (start %v)", injections, start)
	}
	if len(injections) == 0 || injections[0].After(crashed) {
		t.Errorf("the crash injected at %v, after it took effect at %v", injections, crashed)
	}
	mu.Unlock()
	for _, e := range r.events {
		if e.Kind == "fault-injected" && e.Site == "a" && strings.Contains(e.Detail, "crash") && e.At.After(crashed) {
			t.Errorf("fault-injected event at %v, after the crash took effect at %v", e.At, crashed)
		}
	}

	rep := &Report{}
	r.restoreAll(rep)
	if len(rep.RestoreErrors) != 0 {
		t.Fatalf("restore errors %v", rep.RestoreErrors)
	}
	for _, s := range []string{"a/sa", "b/sa"} {
		if _, hung := in.state(s); hung {
			t.Errorf("%s still hung after restoreAll", s)
		}
	}
	if got := r.eventsOf("fault-restored"); len(got) != 3 || got[0] != "a crash a/wfe (SIGKILL)" {
		t.Errorf("restored events %q, want the timed one once and the two hangs at the end", got)
	}
	if _, err := os.Stat(journalPath(in.spec)); !os.IsNotExist(err) {
		t.Errorf("the journal outlived the restore: %v", err)
	}
}

// A fault that cannot be restored stays in the journal and in the
// report's restore errors.
func TestRestoreAllKeepsWhatFailed(t *testing.T) {
	in := newFakeInfra(t, "a")
	r := &Runner{spec: in.spec, Infra: in}
	var log []string
	r.faults = []Fault{&recFault{name: "ok", log: &log}, &recFault{name: "stuck", fails: 9, log: &log}}
	r.jrnl.Faults = []journalEntry{{Step: Step{Fault: "crash"}, Site: "a"}, {Step: Step{Fault: "hang"}, Site: "a"}}
	rep := &Report{}
	r.restoreAll(rep)
	if len(rep.RestoreErrors) != 1 || !strings.Contains(rep.RestoreErrors[0], "stuck failed") {
		t.Fatalf("restore errors %v", rep.RestoreErrors)
	}
	b, err := os.ReadFile(journalPath(in.spec))
	if err != nil || !strings.Contains(string(b), `"hang"`) || strings.Contains(string(b), `"crash"`) {
		t.Errorf("journal: %v\n%s", err, b)
	}
	if got := r.eventsOf("restore-failed"); len(got) != 1 {
		t.Errorf("restore-failed events %q", got)
	}
}

// "active" is the site the name points to (or --site), "standby" the
// first other one, "all" every site, a name itself.
func TestSitesOf(t *testing.T) {
	in := newFakeInfra(t, "a", "b", "c")
	r := &Runner{spec: in.spec}
	for _, c := range []struct {
		sel, override string
		want          []string
	}{
		{"active", "", []string{"b"}}, {"active", "c", []string{"c"}}, {"standby", "", []string{"a"}},
		{"all", "", []string{"a", "b", "c"}}, {"c", "", []string{"c"}}, {"cluster", "", []string{"cluster"}},
	} {
		r.Site = c.override
		if got := r.sitesOf(c.sel, "b"); !slices.Equal(got, c.want) {
			t.Errorf("sitesOf(%s, --site %q) = %v, want %v", c.sel, c.override, got, c.want)
		}
	}
}

// A fault restored on time leaves the runner's faults and the journal;
// the next fault's name (an nftables table) is still one no other fault
// of the run had.
func TestForgottenFaultsKeepNamesUnique(t *testing.T) {
	in := newFakeInfra(t, "a")
	r := &Runner{spec: in.spec, Infra: in}
	var log []string
	names := map[string]bool{}
	add := func(name string) Fault {
		table := r.nextTable()
		if names[table] {
			t.Fatalf("table %s given twice", table)
		}
		names[table] = true
		f := &recFault{name: name, log: &log}
		r.faults = append(r.faults, f)
		r.jrnl.Faults = append(r.jrnl.Faults, journalEntry{Step: Step{Fault: "crash"}, Site: "a", Table: table})
		return f
	}
	first := add("first")
	add("second")
	r.forget(first)
	b, err := os.ReadFile(journalPath(in.spec))
	if err != nil || strings.Count(string(b), `"fault":`) != 1 || !strings.Contains(string(b), r.jrnl.Faults[0].Table) {
		t.Errorf("the journal after the first fault was forgotten: %v\n%s", err, b)
	}
	add("third")
	if len(r.faults) != 2 || len(r.jrnl.Faults) != 2 {
		t.Fatalf("faults %d, journal %d after forgetting one of three", len(r.faults), len(r.jrnl.Faults))
	}
}
