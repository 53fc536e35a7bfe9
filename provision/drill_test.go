package provision

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	cairnansible "github.com/cairn-pki/cairn/ansible"
	"github.com/cairn-pki/cairn/cluster"
)

// fakeShell records what a drill runs on a host and answers from a table
// (first word of the command line after the program → output).
type fakeShell struct {
	runs    []string
	stdin   []string
	answers map[string]string
	fail    map[string]error
}

func (f *fakeShell) run(_ context.Context, stdin string, argv ...string) (string, error) {
	line := strings.Join(argv, " ")
	f.runs, f.stdin = append(f.runs, line), append(f.stdin, stdin)
	for k, err := range f.fail {
		if strings.Contains(line, k) {
			return "", err
		}
	}
	for k, out := range f.answers {
		if strings.Contains(line, k) {
			return out, nil
		}
	}
	return "", nil
}

func drillInfraWith(shells map[string]*fakeShell, nsenter bool) *DrillInfra {
	spec := &cluster.Spec{Name: "t", Sites: []cluster.Site{{Name: "a"}, {Name: "b"}}}
	d := &DrillInfra{p: &Provisioner{o: Options{Spec: spec, Infra: "nspawn"}}, hosts: map[string]hostShell{}, procs: map[string][]string{}, nsenter: nsenter}
	for name, s := range shells {
		d.hosts[name] = s
		d.procs[name] = []string{"wfe", "ca", "mariadb", "acme-front"}
	}
	d.procs["cluster"] = []string{"dns-primary", "controller"}
	return d
}

// A crash on a systemd host is the unit's main process killed, then the
// unit held down (systemd would restart it within RestartSec); a hang is
// SIGSTOP only; each acts on cairn-NAME.service of the site's own host.
func TestDrillInfraSignalsUnits(t *testing.T) {
	a, b := &fakeShell{answers: map[string]string{"MainPID": "4242\n"}}, &fakeShell{}
	d := drillInfraWith(map[string]*fakeShell{"a": a, "b": b}, true)
	pid, err := d.SignalComponent("a", "wfe", syscall.SIGKILL)
	if err != nil || pid != 4242 {
		t.Fatalf("SignalComponent: pid %d, %v", pid, err)
	}
	want := []string{
		"systemctl show --value -p MainPID cairn-wfe.service",
		"systemctl kill --kill-whom=main --signal=SIGKILL cairn-wfe.service",
		"systemctl stop cairn-wfe.service",
	}
	if strings.Join(a.runs, "\n") != strings.Join(want, "\n") {
		t.Errorf("crash ran\n%s\nwant\n%s", strings.Join(a.runs, "\n"), strings.Join(want, "\n"))
	}
	if len(b.runs) != 0 {
		t.Errorf("site b's host got commands for a fault at a: %v", b.runs)
	}
	a.runs = nil
	if _, err := d.SignalComponent("a", "ca", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if len(a.runs) != 2 || a.runs[1] != "systemctl kill --kill-whom=main --signal=SIGSTOP cairn-ca.service" {
		t.Errorf("hang ran %v, want a SIGSTOP and no stop", a.runs)
	}
	a.answers["MainPID"] = "0\n"
	if _, err := d.SignalComponent("a", "wfe", syscall.SIGKILL); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("a unit without a main process: %v, want not running", err)
	}
}

// Names that are no unit of the site's bundle never reach systemctl:
// the error lists the units there are.
func TestDrillInfraRefusesUnknownComponents(t *testing.T) {
	a := &fakeShell{}
	d := drillInfraWith(map[string]*fakeShell{"a": a}, true)
	for _, c := range []string{"nope", "wfe.service; reboot", "../wfe", ""} {
		err := d.StopComponent("a", c)
		if err == nil || !strings.Contains(err.Error(), "its units: wfe, ca, mariadb, acme-front") {
			t.Errorf("component %q: %v, want a refusal listing the units", c, err)
		}
	}
	if err := d.StopComponent("c", "wfe"); err == nil || !strings.Contains(err.Error(), "no provisioned host") {
		t.Errorf("site c: %v", err)
	}
	if len(a.runs) != 0 {
		t.Errorf("refused components ran %v", a.runs)
	}
}

func TestDrillInfraStartStopRunning(t *testing.T) {
	a := &fakeShell{answers: map[string]string{"is-active cairn-wfe": "active\n", "is-active cairn-ca": "activating\n"}, fail: map[string]error{"start cairn-mariadb": errors.New("Job for cairn-mariadb.service failed")}}
	d := drillInfraWith(map[string]*fakeShell{"a": a}, true)
	if !d.ComponentRunning("a", "wfe") || d.ComponentRunning("a", "ca") {
		t.Errorf("running: wfe %v (active), ca %v (activating: systemd restarting it)", d.ComponentRunning("a", "wfe"), d.ComponentRunning("a", "ca"))
	}
	if err := d.StartComponent(context.Background(), "a", "wfe"); err != nil {
		t.Fatal(err)
	}
	err := d.StartComponent(context.Background(), "a", "mariadb")
	if err == nil || !strings.Contains(err.Error(), "a: systemctl start cairn-mariadb.service: Job for") {
		t.Errorf("a failed start: %v", err)
	}
}

// SQL goes to `cairn site sql` on the site's host on its standard input
// (never on a command line); the controller's host has no database.
func TestDrillInfraDBExec(t *testing.T) {
	a := &fakeShell{}
	d := drillInfraWith(map[string]*fakeShell{"a": a, "cluster": {}}, true)
	if err := d.DBExec(context.Background(), "a", "STOP ALL SLAVES"); err != nil {
		t.Fatal(err)
	}
	if len(a.runs) != 1 || a.runs[0] != HostRoot+"/bin/cairn site sql --bundle "+hostSite+" --bin "+HostRoot+"/bin" || a.stdin[0] != "STOP ALL SLAVES" {
		t.Errorf("ran %v with stdin %q", a.runs, a.stdin)
	}
	if err := d.DBExec(context.Background(), "cluster", "SELECT 1"); err == nil {
		t.Error("DBExec on the cluster host: no error")
	}
}

// The token moves on the site's host, only when it is there (Inject and
// Restore are idempotent), and back on restore.
func TestDrillInfraHidesTheToken(t *testing.T) {
	a := &fakeShell{}
	d := drillInfraWith(map[string]*fakeShell{"a": a}, true)
	ctx := context.Background()
	if err := d.HideToken(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	if err := d.HideToken(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`sh -c if [ -e "$1" ]; then mv "$1" "$2"; fi sh ` + hostTokenDir + " " + hostTokenDir + hiddenSuffix,
		`sh -c if [ -e "$1" ]; then mv "$1" "$2"; fi sh ` + hostTokenDir + hiddenSuffix + " " + hostTokenDir,
	}
	if strings.Join(a.runs, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(a.runs, "\n"), strings.Join(want, "\n"))
	}
}

// A partition is one nftables table on the site's host, replaced
// atomically (nft -f: declare, delete, add) and removed on heal; hosts
// reached over the network are refused (the drill would cut its own way
// back).
func TestDrillInfraPartition(t *testing.T) {
	a := &fakeShell{}
	d := drillInfraWith(map[string]*fakeShell{"a": a}, true)
	ctx := context.Background()
	if err := d.Partition(ctx, "a", "10.78.81.0/24", "cairn_drill_3", true); err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(ctx, "a", "10.78.81.0/24", "cairn_drill_3", false); err != nil {
		t.Fatal(err)
	}
	if len(a.runs) != 2 || a.runs[0] != "nft -f -" {
		t.Fatalf("ran %v", a.runs)
	}
	on, off := a.stdin[0], a.stdin[1]
	for _, s := range []string{"table inet cairn_drill_3\ndelete table inet cairn_drill_3\n", `iif "lo" accept; ip saddr 10.78.81.0/24 accept; drop;`, `oif "lo" accept; ip daddr 10.78.81.0/24 accept; drop;`} {
		if !strings.Contains(on, s) {
			t.Errorf("partition script lacks %q:\n%s", s, on)
		}
	}
	if off != "table inet cairn_drill_3\ndelete table inet cairn_drill_3\n" {
		t.Errorf("heal script %q", off)
	}
	over := drillInfraWith(map[string]*fakeShell{"a": {}}, false)
	if err := over.Partition(ctx, "a", "10.78.81.0/24", "cairn_drill_3", true); err == nil || !strings.Contains(err.Error(), "your own firewall") {
		t.Errorf("partition over SSH: %v", err)
	}
}

// The controller's probe history is read on its host, read-only, from
// the time asked.
func TestDrillInfraProbeSamples(t *testing.T) {
	c := &fakeShell{answers: map[string]string{"report samples": `[{"site":"a","kind":"issuance","at":"2026-12-06T23:00:01Z","ok":false,"failedStep":"finalize"}]`}}
	d := drillInfraWith(map[string]*fakeShell{"cluster": c}, true)
	from := time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC)
	got, err := d.ProbeSamples(context.Background(), from)
	if err != nil || len(got) != 1 || got[0].Site != "a" || got[0].OK || got[0].FailedStep != "finalize" {
		t.Fatalf("samples %+v, %v", got, err)
	}
	if !strings.Contains(c.runs[0], "--history /var/lib/cairn-controller/spec/var/probe-history.db --from 2026-12-06T23:00:00Z") {
		t.Errorf("ran %s", c.runs[0])
	}
	// That is where the role puts the controller's state: its spec kit's
	// state directory, /var/lib/cairn-controller/spec.
	vars, err := cairnansible.Files.ReadFile("roles/cairn_common/vars/main.yml")
	if err != nil || !strings.Contains(string(vars), "\n  controller: [spec]\n") {
		t.Errorf("the role's vars no longer give the controller the state directory spec (%v): update hostControllerSpec", err)
	}
}

// A drill's client names become host names (they name interfaces: 13
// characters at most); addresses come from the top of the first client
// network down, each client keeping its own.
func TestDrillClientHostNamesAndAddresses(t *testing.T) {
	if got := clientHostID("web"); got != "web" {
		t.Errorf("web → %q", got)
	}
	long := clientHostID("drill-certbot-http")
	if !clientNameRE.MatchString(long) || long == clientHostID("drill-lego-http") {
		t.Errorf("drill-certbot-http → %q (drill-lego-http → %q): want distinct host names", long, clientHostID("drill-lego-http"))
	}
	spec := &cluster.Spec{Name: "t"}
	spec.Validation.AllowedNetworks = []string{"fd00::/64", "10.78.83.0/24"}
	p := &Provisioner{o: Options{Spec: spec, Infra: "nspawn"}, dir: t.TempDir()}
	a, err := p.clientAddress("one")
	if err != nil || a.String() != "10.78.83.254" {
		t.Fatalf("first client: %v %v, want 10.78.83.254", a, err)
	}
	if err := os.MkdirAll(p.path("clients", "one"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.path("clients", "one", "address"), []byte(a.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if again, _ := p.clientAddress("one"); again != a {
		t.Errorf("client one again: %v, want its own %v", again, a)
	}
	if b, err := p.clientAddress("two"); err != nil || b.String() != "10.78.83.253" {
		t.Errorf("second client: %v %v, want 10.78.83.253", b, err)
	}
	spec.Validation.AllowedNetworks = nil
	if _, err := p.clientAddress("three"); err == nil || !strings.Contains(err.Error(), "validation.allowedNetworks") {
		t.Errorf("no client network: %v", err)
	}
}

// Hosts cairn did not boot (an existing or aws host, reached over SSH)
// cannot be switched off and on by a drill: refused before it starts,
// naming the way to do it.
func TestDrillInfraPowerOnlyForNspawnHosts(t *testing.T) {
	d := drillInfraWith(map[string]*fakeShell{"a": {}, "b": {}}, false)
	d.p.o.Infra = "existing"
	for _, site := range []string{"a", "cluster", "zz"} {
		err := d.CanPowerOff(site)
		if err == nil {
			t.Fatalf("CanPowerOff(%s) on existing hosts: nil", site)
		}
		if site == "a" && !strings.Contains(err.Error(), "site a is on --infra existing: cut its host's power with your provider") {
			t.Errorf("CanPowerOff(a): %v", err)
		}
	}
	if err := d.PowerOff(context.Background(), "a"); err == nil {
		t.Error("PowerOff of an existing host went through")
	}
}
