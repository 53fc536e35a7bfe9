package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/site"
	"github.com/cairn-pki/cairn/upgrade"
)

// fakeInfra is a cluster of components that start, stop and take signals
// as the lab's processes do, and databases that record their statements.
// A CA starts only while its SoftHSM token directory exists.
type fakeInfra struct {
	spec    *cluster.Spec
	mu      sync.Mutex
	running map[string]bool // site/component
	hung    map[string]bool
	calls   []string
	tokens  map[string]string // site -> its token directory
	// signalled, if set, is called after a signal took effect.
	signalled func(site, component string, sig syscall.Signal)
}

func newFakeInfra(t *testing.T, sites ...string) *fakeInfra {
	spec := cluster.Default(sites)
	spec.Dir = t.TempDir()
	in := &fakeInfra{spec: spec, running: map[string]bool{}, hung: map[string]bool{}, tokens: map[string]string{}}
	for _, s := range sites {
		for _, c := range []string{"wfe", "ca", "sa"} {
			in.running[s+"/"+c] = true
		}
	}
	return in
}

func (in *fakeInfra) ClusterSpec() *cluster.Spec { return in.spec }

func (in *fakeInfra) record(format string, args ...any) {
	in.calls = append(in.calls, fmt.Sprintf(format, args...))
}

func (in *fakeInfra) SignalComponent(s, c string, sig syscall.Signal) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.signalled != nil {
		defer in.signalled(s, c, sig)
	}
	in.record("signal %s/%s %v", s, c, sig)
	if !in.running[s+"/"+c] {
		return 0, fmt.Errorf("%s/%s is not running", s, c)
	}
	switch sig {
	case syscall.SIGKILL:
		in.running[s+"/"+c], in.hung[s+"/"+c] = false, false
	case syscall.SIGSTOP:
		in.hung[s+"/"+c] = true
	case syscall.SIGCONT:
		in.hung[s+"/"+c] = false
	}
	return 4242, nil
}

func (in *fakeInfra) StartComponent(_ context.Context, s, c string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.record("start %s/%s", s, c)
	if dir, ok := in.tokens[s]; ok && c == "ca" {
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("ca: no token: %w", err)
		}
	}
	in.running[s+"/"+c] = true
	return nil
}

func (in *fakeInfra) StopComponent(s, c string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.record("stop %s/%s", s, c)
	in.running[s+"/"+c] = false
	return nil
}

func (in *fakeInfra) ComponentRunning(s, c string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.running[s+"/"+c]
}

func (in *fakeInfra) DBExec(_ context.Context, s, statements string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.record("sql %s: %s", s, statements)
	return nil
}

// take returns the calls so far and forgets them.
func (in *fakeInfra) take() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.calls
	in.calls = nil
	return c
}

func (in *fakeInfra) state(key string) (running, hung bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.running[key], in.hung[key]
}

func build(t *testing.T, in Infra, st Step, siteName string) Fault {
	t.Helper()
	f, err := newFault(in, st, siteName, "cairn_test")
	if err != nil {
		t.Fatalf("%s: %v", st.Fault, err)
	}
	return f
}

func wantCalls(t *testing.T, in *fakeInfra, what string, want ...string) {
	t.Helper()
	if got := in.take(); !slices.Equal(got, want) {
		t.Errorf("%s: calls %q, want %q", what, got, want)
	}
}

// crash, hang and stop act on the component; Restore brings it back from
// whatever state it is in, and does nothing when it already runs.
func TestProcessFaults(t *testing.T) {
	ctx := context.Background()
	in := newFakeInfra(t, "a", "b")

	crash := build(t, in, Step{Fault: "crash", Component: "wfe"}, "a")
	if d := crash.Describe(); d != "crash a/wfe (SIGKILL)" {
		t.Errorf("describe %q", d)
	}
	if err := crash.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := in.state("a/wfe"); r {
		t.Fatal("a/wfe runs after the crash")
	}
	wantCalls(t, in, "crash", "signal a/wfe killed")
	if err := crash.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if err := crash.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, in, "restore twice", "start a/wfe")

	hang := build(t, in, Step{Fault: "hang", Component: "sa"}, "b")
	if d := hang.Describe(); d != "hang b/sa (SIGSTOP)" {
		t.Errorf("describe %q", d)
	}
	if err := hang.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if r, h := in.state("b/sa"); !r || !h {
		t.Fatalf("b/sa after hang: running %v hung %v", r, h)
	}
	if err := hang.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if _, h := in.state("b/sa"); h {
		t.Fatal("b/sa still stopped after the restore")
	}
	wantCalls(t, in, "hang", "signal b/sa stopped (signal)", "signal b/sa continued")
	// A hung process that died meanwhile is not signalled.
	in.running["b/sa"] = false
	if err := hang.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, in, "restore of a dead hung process")
	in.running["b/sa"] = true

	stop := build(t, in, Step{Fault: "stop", Component: "ca"}, "b")
	if d := stop.Describe(); d != "stop b/ca" {
		t.Errorf("describe %q", d)
	}
	if err := stop.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stop.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, in, "stop", "stop b/ca", "start b/ca")

	// Signalling a process that is not running is the fault's error.
	in.running["a/wfe"] = false
	if err := crash.Inject(ctx); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("crashing a dead process: %v", err)
	}
}

// hsm hides the CA's token directory and restarts the CA, which then
// cannot start; Restore puts the directory back and starts it.
func TestHSMFault(t *testing.T) {
	ctx := context.Background()
	in := newFakeInfra(t, "a")
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	in.tokens["a"] = tokens
	f := build(t, in, Step{Fault: "hsm"}, "a")
	if err := f.Inject(ctx); err == nil || !strings.Contains(err.Error(), "softhsm") {
		t.Fatalf("hsm without a SoftHSM configuration: %v", err)
	}
	conf := filepath.Join(in.spec.Path("sites/a"), "etc", "softhsm2.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("log.level = INFO\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Inject(ctx); err == nil || !strings.Contains(err.Error(), "directories.tokendir") {
		t.Fatalf("hsm with no tokendir: %v", err)
	}
	if err := os.WriteFile(conf, []byte("# SoftHSM\ndirectories.tokendir = "+tokens+"\nobjectstore.backend = file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in.take()
	if err := f.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tokens); err == nil {
		t.Error("the token directory is still there")
	}
	if r, _ := in.state("a/ca"); r {
		t.Error("the CA runs without its token")
	}
	wantCalls(t, in, "inject", "signal a/ca killed", "start a/ca")
	for range 2 {
		if err := f.Restore(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(tokens); err != nil {
			t.Fatalf("the token directory is not back: %v", err)
		}
		if r, _ := in.state("a/ca"); !r {
			t.Fatal("the CA does not run after the restore")
		}
	}
	if !strings.Contains(f.Describe(), "HSM unavailable at a") {
		t.Errorf("describe %q", f.Describe())
	}
}

// replication stops the faulted site's connections and the peers'
// connections from it, and starts them again.
func TestReplicationFault(t *testing.T) {
	ctx := context.Background()
	in := newFakeInfra(t, "east-1", "west-1", "north-1")
	f := build(t, in, Step{Fault: "replication"}, "east-1")
	conn := site.ConnectionName("east-1")
	if err := f.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, in, "inject", "sql east-1: STOP ALL SLAVES", "sql west-1: STOP SLAVE '"+conn+"'", "sql north-1: STOP SLAVE '"+conn+"'")
	if err := f.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, in, "restore", "sql east-1: START ALL SLAVES", "sql west-1: START SLAVE '"+conn+"'", "sql north-1: START SLAVE '"+conn+"'")
	if f.Describe() != "replication cut east-1 ⟷ peers" {
		t.Errorf("describe %q", f.Describe())
	}
}

// The fault table builds each fault for a concrete site, refusing what
// it cannot build with a reason; network faults are marked so.
func TestNewFault(t *testing.T) {
	in := newFakeInfra(t, "a", "b")
	in.spec.Sites[0].ServiceNetwork, in.spec.Sites[1].ServiceNetwork = "127.0.32.0/24", ""
	for _, c := range []struct {
		st      Step
		site    string
		network bool
		want    string // Describe, or the error
	}{
		{Step{Fault: "partition"}, "a", true, "partition a (127.0.32.0/24 unreachable from outside, nftables)"},
		{Step{Fault: "partition"}, "b", false, "site b has no serviceNetwork to partition"},
		{Step{Fault: "partition"}, "z", false, `no site "z"`},
		{Step{Fault: "toxic", Toxic: "latency", Latency: Duration{Duration: time.Second}}, "a", true, "a"},
		{Step{Fault: "toxic", Toxic: "reset"}, "z", false, `no site "z"`},
		{Step{Fault: "replication"}, "z", false, `no site "z"`},
		{Step{Fault: "upgrade", Site: "cluster"}, "cluster", false, "upgrade: this infrastructure cannot roll releases"},
		{Step{Fault: "flap", Component: "wfe", Down: Duration{Duration: time.Second}, Up: Duration{Duration: 2 * time.Second}}, "a", false, "flap: crash a/wfe (SIGKILL) for 1s, then up 2s, repeatedly"},
		{Step{Fault: "flap", Component: "wfe", Signal: "stop"}, "b", false, "flap: hang b/wfe (SIGSTOP)"},
		{Step{Fault: "meteor"}, "a", false, `unknown fault "meteor"`},
	} {
		f, err := newFault(in, c.st, c.site, "cairn_test")
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = f.Describe()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s at %s: %q, want %q", c.st.Fault, c.site, got, c.want)
		}
		if _, isNet := f.(networkFault); err == nil && isNet != c.network {
			t.Errorf("%s: network %v, want %v", c.st.Fault, isNet, c.network)
		}
	}
	if tf, err := newFault(in, Step{Fault: "toxic", Toxic: "latency", Latency: Duration{Duration: 3 * time.Second}}, "a", "t"); err == nil {
		x := tf.(networkFault).Fault.(*toxicFault)
		if want := fmt.Sprintf("%s:%d", in.spec.Sites[0].Address, in.spec.ACME.HTTPSPort); x.wfe != want || x.latency != 3000 {
			t.Errorf("toxic: wfe %s latency %d, want %s 3000", x.wfe, x.latency, want)
		}
	}
}

// flap takes the component down and up in turn until restored, reporting
// each change; Restore stops the cycle and leaves it running.
func TestFlapFault(t *testing.T) {
	ctx := context.Background()
	in := newFakeInfra(t, "a")
	f := build(t, in, Step{Fault: "flap", Component: "wfe", Down: Duration{Duration: 20 * time.Millisecond}, Up: Duration{Duration: 20 * time.Millisecond}}, "a").(*flapFault)
	var mu sync.Mutex
	var changes []bool
	f.onChange = func(injected bool) { mu.Lock(); changes = append(changes, injected); mu.Unlock() }
	if err := f.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Inject(ctx); err != nil { // already flapping: nothing more
		t.Fatal(err)
	}
	testenv.WaitFor(t, "two down/up cycles", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(changes) >= 4 })
	if err := f.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _ := in.state("a/wfe"); !r {
		t.Fatal("a/wfe not running after the restore")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range changes {
		if c != (i%2 == 1) {
			t.Fatalf("changes %v: want restored, injected, restored, …", changes)
		}
	}
}

// recFault records its Restore calls and fails the first fails of them.
type recFault struct {
	name  string
	fails int
	log   *[]string
}

func (f *recFault) Describe() string             { return f.name }
func (f *recFault) Inject(context.Context) error { return nil }
func (f *recFault) Restore(context.Context) error {
	*f.log = append(*f.log, f.name)
	if f.fails > 0 {
		f.fails--
		return errors.New(f.name + " failed")
	}
	return nil
}

// Network faults are restored first, each group newest first; a failed
// restore is tried once more; what still fails is returned by index.
func TestRestoreEachOrder(t *testing.T) {
	var log []string
	faults := []Fault{
		&recFault{name: "crash1", log: &log},
		networkFault{&recFault{name: "part1", log: &log}},
		&recFault{name: "crash2", fails: 1, log: &log},
		networkFault{&recFault{name: "part2", log: &log}},
		&recFault{name: "stuck", fails: 5, log: &log},
	}
	failed := restoreEach(context.Background(), faults)
	if want := []string{"part2", "part1", "stuck", "crash2", "crash1", "stuck", "crash2"}; !slices.Equal(log, want) {
		t.Errorf("order %v, want %v", log, want)
	}
	if len(failed) != 1 || failed[4] == nil {
		t.Errorf("failed %v, want only stuck (4)", failed)
	}
}

// A journal left by a killed drill is restored through the infrastructure
// and its EAB key revoked; what cannot be restored stays in the journal;
// a drill that still runs is left alone.
func TestRestoreLeftovers(t *testing.T) {
	ctx := context.Background()
	in := newFakeInfra(t, "a", "b")
	revoked := ""
	revoke := func(_ context.Context, _ *cluster.Spec, kid string) (string, error) {
		revoked = kid
		return "EAB key " + kid + " revoked", nil
	}
	if done, err := restoreLeftovers(ctx, in, revoke); err != nil || done != nil {
		t.Fatalf("no journal: %v %v", done, err)
	}
	in.running["a/wfe"] = false // the killed drill crashed it
	j := &journal{PID: os.Getpid(), Started: time.Now(), EABKey: "kid-7", Faults: []journalEntry{
		{Step: Step{Fault: "crash", Component: "wfe"}, Site: "a"},
		{Step: Step{Fault: "meteor"}, Site: "b"},
		{Step: Step{Fault: "replication"}, Site: "b"},
	}}
	if err := writeJournal(in.spec, j); err != nil {
		t.Fatal(err)
	}
	done, err := restoreLeftovers(ctx, in, revoke)
	if err == nil || !strings.Contains(err.Error(), `unknown fault "meteor"`) {
		t.Errorf("error %v, want the fault it could not rebuild", err)
	}
	if want := []string{"crash a/wfe (SIGKILL)", "replication cut b ⟷ peers", "EAB key kid-7 revoked"}; !slices.Equal(done, want) {
		t.Errorf("restored %q, want %q", done, want)
	}
	if r, _ := in.state("a/wfe"); !r || revoked != "kid-7" {
		t.Errorf("a/wfe running %v, revoked %q", r, revoked)
	}
	b, err := os.ReadFile(journalPath(in.spec))
	if err != nil || !strings.Contains(string(b), "meteor") || strings.Contains(string(b), "replication") || strings.Contains(string(b), "kid-7") {
		t.Errorf("the journal after the restore: %v\n%s", err, b)
	}

	// A drill process that still runs (its command line says drill).
	cmd := exec.Command("sh", "-c", "sleep 60", "cairn-drill")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Start returns once exec began; the kernel writes the new command
	// line a moment later (an empty one was read 1 run in 300).
	testenv.WaitFor(t, "the drill process's command line", 5*time.Second, func() bool { return drillRunning(cmd.Process.Pid) })
	j.PID = cmd.Process.Pid
	if err := writeJournal(in.spec, j); err != nil {
		t.Fatal(err)
	}
	in.take()
	if _, err := restoreLeftovers(ctx, in, revoke); err == nil || !strings.Contains(err.Error(), "still runs") {
		t.Errorf("a running drill's journal: %v", err)
	}
	wantCalls(t, in, "a running drill's faults")

	if err := os.WriteFile(journalPath(in.spec), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := restoreLeftovers(ctx, in, revoke); err == nil || !strings.Contains(err.Error(), "docs/drill.md") {
		t.Errorf("a broken journal: %v, want the runbook", err)
	}
}

// hostInfra is a fakeInfra whose sites are hosts of their own
// (HostFaults): the token and the firewall are the host's.
type hostInfra struct {
	*fakeInfra
	hidden map[string]bool   // site → token moved away
	tables map[string]string // site → table → network
}

func (h *hostInfra) HideToken(_ context.Context, site string, hidden bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record("token %s hidden=%v", site, hidden)
	h.hidden[site] = hidden
	return nil
}

// StartComponent: the CA starts only while the host has its token.
func (h *hostInfra) StartComponent(ctx context.Context, s, c string) error {
	h.mu.Lock()
	hidden := h.hidden[s]
	h.mu.Unlock()
	if c == "ca" && hidden {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.record("start %s/%s", s, c)
		return fmt.Errorf("ca: no token")
	}
	return h.fakeInfra.StartComponent(ctx, s, c)
}

func (h *hostInfra) Partition(_ context.Context, site, network, table string, on bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record("partition %s %s %s %v", site, network, table, on)
	if on {
		h.tables[site] = table + " " + network
	} else {
		delete(h.tables, site)
	}
	return nil
}

// On an infrastructure of hosts (provisioned systemd hosts) the hsm and
// partition faults act on the site's host, not on this machine: the
// token moves there and the CA restarts without it; the partition is a
// table on the host, lifted on restore.
func TestHostFaultsActOnTheSiteHost(t *testing.T) {
	ctx := context.Background()
	in := &hostInfra{fakeInfra: newFakeInfra(t, "a"), hidden: map[string]bool{}, tables: map[string]string{}}
	in.spec.Sites[0].ServiceNetwork = "10.78.81.0/24"
	hsm := build(t, in, Step{Fault: "hsm"}, "a")
	if err := hsm.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, in.fakeInfra, "hsm inject", "token a hidden=true", "signal a/ca killed", "start a/ca")
	if err := hsm.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if in.hidden["a"] {
		t.Error("the token is still hidden after the restore")
	}
	wantCalls(t, in.fakeInfra, "hsm restore", "token a hidden=false", "signal a/ca killed", "start a/ca")
	part := build(t, in, Step{Fault: "partition"}, "a")
	if err := part.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if in.tables["a"] != "cairn_test 10.78.81.0/24" {
		t.Errorf("the host's tables: %v", in.tables)
	}
	if err := part.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if len(in.tables) != 0 {
		t.Errorf("tables left after the restore: %v", in.tables)
	}
}

// releaseInfra says how `cairn upgrade apply` acts on it (provisioned
// hosts do); here its options are refused, so the fault's use shows.
type releaseInfra struct{ *fakeInfra }

func (releaseInfra) UpgradeOptions(context.Context) (upgrade.ApplyOptions, error) {
	return upgrade.ApplyOptions{}, errors.New("the hosts' upgrade options")
}

// On an infrastructure with its own upgrade options (provisioned hosts)
// the upgrade fault rolls releases with those, not the lab's.
func TestUpgradeFaultUsesTheInfrastructuresOptions(t *testing.T) {
	in := releaseInfra{newFakeInfra(t, "a")}
	f := build(t, in, Step{Fault: "upgrade", Site: "cluster"}, "cluster")
	if err := f.Inject(context.Background()); err == nil || !strings.Contains(err.Error(), "the hosts' upgrade options") {
		t.Fatalf("inject: %v, want the infrastructure's options asked for", err)
	}
}

// powerInfra is a provisioned hostInfra whose hosts cairn can switch
// off and on (HostPower).
type powerInfra struct {
	*hostInfra
	off map[string]bool
	// refuse: CanPowerOff's answer (an aws or existing host's).
	refuse error
}

func (p *powerInfra) CanPowerOff(string) error { return p.refuse }

func (p *powerInfra) Infra() string { return "nspawn" }

func (p *powerInfra) PowerOff(_ context.Context, site string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("power %s off", site)
	p.off[site] = true
	return nil
}

func (p *powerInfra) PowerOn(_ context.Context, site string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("power %s on", site)
	delete(p.off, site)
	return nil
}

// poweroff switches the site's host off and, restored, on again; the
// lab (no HostPower) refuses it, and a provisioned infrastructure
// refuses toxic (its proxy would slow only this machine's connections).
func TestPowerOffActsOnTheSiteHost(t *testing.T) {
	ctx := context.Background()
	in := &powerInfra{hostInfra: &hostInfra{fakeInfra: newFakeInfra(t, "a", "b"), hidden: map[string]bool{}, tables: map[string]string{}}, off: map[string]bool{}}
	f := build(t, in, Step{Fault: "poweroff"}, "a")
	if err := f.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if !in.off["a"] || in.off["b"] {
		t.Errorf("hosts off: %v, want a only", in.off)
	}
	if err := f.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, in.fakeInfra, "poweroff", "power a off", "power a on")
	if _, err := newFault(in, Step{Fault: "poweroff"}, "z", "t"); err == nil || !strings.Contains(err.Error(), `no site "z"`) {
		t.Errorf("poweroff of an unknown site: %v", err)
	}
	if _, err := newFault(newFakeInfra(t, "a"), Step{Fault: "poweroff"}, "a", "t"); err == nil || !strings.Contains(err.Error(), "--infra nspawn") {
		t.Errorf("poweroff in the lab: %v, want a refusal naming --infra nspawn", err)
	}
	if _, err := newFault(in, Step{Fault: "toxic", Toxic: "reset"}, "a", "t"); err == nil || !strings.Contains(err.Error(), "use partition") {
		t.Errorf("toxic on provisioned hosts: %v, want a refusal", err)
	}
	// Hosts cairn cannot switch on again (aws, existing) are refused when
	// the fault is built, before the drill starts.
	in.refuse = errors.New("poweroff: cut an aws host's power with your provider's console or API")
	in.take()
	if _, err := newFault(in, Step{Fault: "poweroff"}, "a", "t"); err == nil || !strings.Contains(err.Error(), "your provider") {
		t.Errorf("poweroff of a host cairn cannot switch on: %v", err)
	}
	if calls := in.take(); len(calls) > 0 {
		t.Errorf("building a refused poweroff acted: %q", calls)
	}
}

// A scenario whose fault this infrastructure cannot make stops before
// anything runs (no steady state asked for, no client, no journal).
func TestFaultsCheckedBeforeTheDrill(t *testing.T) {
	in := newFakeInfra(t, "a", "b")
	sc := &Scenario{Name: "power", Timeline: []Step{{At: Duration{Duration: time.Second}, Fault: "crash", Site: "standby", Component: "wfe"}, {At: Duration{Duration: 2 * time.Second}, Fault: "poweroff", Site: "active"}}}
	_, err := (&Runner{Infra: in, Scenario: sc}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timeline[1]: poweroff:") {
		t.Fatalf("run: %v, want timeline[1]'s poweroff refused", err)
	}
	if calls := in.take(); len(calls) > 0 {
		t.Errorf("the drill acted before refusing: %q", calls)
	}
	if fsutil.Exists(in.spec.Path("var")) {
		t.Errorf("the drill wrote %s before refusing", in.spec.Path("var"))
	}
}

// A broken release's RA calls its CA at the CA's own host, port 1, with
// a short timeout, whether that host is the lab's loopback address or a
// provisioned host's service address; a config without one is refused.
func TestBreakRA(t *testing.T) {
	for _, addr := range []string{"127.0.31.3:9093", "10.79.81.3:9093"} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
		cfg := `{"RA": {"CAService": {"ServerAddress": "` + addr + `", "Timeout": "15s"}, "other": 1}}`
		if err := os.WriteFile(filepath.Join(dir, "etc", "ra.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := breakRA("", dir); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "etc", "ra.json"))
		host, _, _ := strings.Cut(addr, ":")
		if !strings.Contains(string(b), `"ServerAddress": "`+host+`:1"`) || !strings.Contains(string(b), `"Timeout": "2s"`) || !strings.Contains(string(b), `"other": 1`) {
			t.Errorf("%s broken: %s", addr, b)
		}
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "ra.json"), []byte(`{"RA": {}}`), 0o644)
	if err := breakRA("", dir); err == nil || !strings.Contains(err.Error(), "unexpected CA address") {
		t.Errorf("an RA config without a CA address: %v", err)
	}
}
