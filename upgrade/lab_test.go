package upgrade_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/drill"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
	"github.com/cairn-pki/cairn/revocation"
	"github.com/cairn-pki/cairn/site"
	"github.com/cairn-pki/cairn/upgrade"
)

// A short TTL for the ACME name: an upgrade waits it out on the active
// site (clients' cached answers), a wait the test need not spend.
// Issuance probed every 30 s, not 5: the upgrade's gate probes itself,
// and every issuance costs CPU the other tests share.
const fastPolicy = "failover:\n  upAfter: 3\n  stablePeriod: 3s\n  holdDown: 15s\n  probes:\n    issuance: 30s\nacme:\n  ttl: 5\n"

// otherRelease is a real Boulder release that builds with this Go and
// accepts the configs cairn renders (docs/upgrades.md).
const otherRelease = "v0.20260908.0"

// A 2-site lab with replicated accounts: an additive schema change to
// registrations applied at both sites with replication paused, the
// bad-release drill (the gate stops a broken release at the first site
// and rolls it back), and `cairn upgrade apply` to another Boulder
// release interrupted with SIGINT after its first site restarted and
// finished by running it again.
func TestUpgradeInTheLab(t *testing.T) {
	spec := labtest.SpecWith(t, labtest.BlockUpgrade, fastPolicy, "a", "b")
	testenv.Integration(t, "certbot", "lego")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, l)
	t.Run("plan", func(t *testing.T) { testPlan(t, l) })
	t.Run("schema", func(t *testing.T) { testSchemaChange(t, l) })
	t.Run("bad-release drill", func(t *testing.T) { testBadRelease(t, l) })
	t.Run("interrupted and resumed", func(t *testing.T) { testInterruptedUpgrade(t, l) })
	t.Run("rotate internal certificates", func(t *testing.T) { testRotateInternal(t, l) })
}

// `cairn upgrade apply --rotate-internal`: every internal certificate of
// every site is made again under the site's internal CA (whose key is
// not in the bundle), every component but the database restarts on them,
// each site passes its deep-probe gate, and the controller's rotated
// credential works with the rotated agents.
func testRotateInternal(t *testing.T, l *lab.Lab) {
	waitHealthy(t, l)
	ctx := context.Background()
	leaf := func(siteName, id string) []byte {
		b, err := os.ReadFile(filepath.Join(l.SiteDir(siteName), "ipki", id, "cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ids := []string{"wfe.boulder", "ra.boulder", "sa.boulder", "ca.boulder", "redis", "doh", "agent"}
	before := map[string][]byte{}
	for _, s := range []string{"a", "b"} {
		if _, err := os.Stat(filepath.Join(l.SiteDir(s), "ipki", "ca.key")); err == nil {
			t.Errorf("site %s's bundle holds its internal CA's key", s)
		}
		for _, id := range ids {
			before[s+"/"+id] = leaf(s, id)
		}
	}
	o, err := upgrade.ForLab(l.Spec, l, l.Log, l.Cairn)
	if err != nil {
		t.Fatal(err)
	}
	o.RotateInternal = true
	plans, err := upgrade.Plan(ctx, o.Options)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if !slices.Contains(p.Changed, "ipki/wfe.boulder/cert.pem") || !slices.Contains(p.Restart, "wfe") || slices.Contains(p.Restart, "mariadb") {
			t.Errorf("site %s plan with --rotate-internal: changed %v, restart %v", p.Site, p.Changed, p.Restart)
		}
	}
	for _, id := range ids {
		if !slices.Equal(leaf("a", id), before["a/"+id]) {
			t.Fatalf("planning rotated %s in the running bundle", id)
		}
	}
	o.Canary = 0
	st, err := upgrade.Apply(ctx, o)
	if err != nil {
		t.Fatalf("rotation: %v", err)
	}
	for _, s := range []string{"a", "b"} {
		if p := st.Sites[s].Phase; p != upgrade.PhaseDone {
			t.Errorf("site %s ended in phase %s", s, p)
		}
		for _, id := range ids {
			if slices.Equal(leaf(s, id), before[s+"/"+id]) {
				t.Errorf("site %s: %s not rotated", s, id)
			}
		}
		// The controller's rotated credential at the rotated agent, and
		// the rotated crl-updater publishing through the rotated storer.
		// Right after the restart the updater's first run may hold a
		// shard (a lease outlives a failed upload by a minute): the agent
		// answers with the error, and the publication is asked again.
		var err error
		for deadline := time.Now().Add(3 * time.Minute); ; {
			if err = (revocation.Agents{Spec: l.Spec}).PublishCRLs(ctx, s); err == nil || time.Now().After(deadline) {
				break
			}
			t.Logf("site %s: publish-crls through the rotated agent: %v (asking again)", s, err)
			time.Sleep(2 * time.Second)
		}
		if err != nil {
			t.Errorf("site %s: the controller's rotated credential at the rotated agent: %v", s, err)
		}
	}
}

func waitHealthy(t *testing.T, l *lab.Lab) {
	t.Helper()
	c := &failover.Client{Spec: l.Spec}
	testenv.WaitFor(t, "every site healthy", 90*time.Second, func() bool {
		st, err := c.Status(context.Background())
		if err != nil || len(st.Sites) == 0 {
			return false
		}
		for _, s := range st.Sites {
			if s.State != failover.Healthy || s.Drained {
				return false
			}
		}
		return true
	})
}

func sql(t *testing.T, l *lab.Lab, siteName, q string) string {
	t.Helper()
	out, err := l.SiteSQL(context.Background(), siteName, q)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// A target schema that adds a column and an index to registrations and a
// table elsewhere: the registrations change reaches both sites with
// replication paused and running again afterwards (a row written at a
// with the new column arrives at b); the new table only the migrated
// site. A changed column is refused, naming it.
func testSchemaChange(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	dir := t.TempDir()
	src := l.SiteDir("a")
	for _, rel := range []string{"bundle.json", "sql/01-boulder_sa.sql", "sql/01-incidents_sa.sql"} {
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755)
		if rel == "sql/01-boulder_sa.sql" {
			s := string(b)
			old := "  `status` varchar(255) NOT NULL DEFAULT 'valid',\n  PRIMARY KEY (`id`),\n"
			if !strings.Contains(s, old) {
				t.Fatalf("Boulder's registrations table changed: update this test")
			}
			s = strings.Replace(s, old, "  `status` varchar(255) NOT NULL DEFAULT 'valid',\n  `cairnTest` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `cairn_test_idx` (`createdAt`),\n", 1)
			s += "\nCREATE TABLE `cairnTestTable` (`id` bigint(20) NOT NULL AUTO_INCREMENT, PRIMARY KEY (`id`)) ENGINE=InnoDB;\n"
			b = []byte(s)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var log strings.Builder
	if err := upgrade.Migrate(ctx, l, l.Spec, "a", dir, &log); err != nil {
		t.Fatalf("migrate: %v\n%s", err, log.String())
	}
	t.Logf("migration:\n%s", log.String())
	for _, want := range []string{"replication paused", "ADD COLUMN `cairnTest`", "ADD KEY `cairn_test_idx`", "CREATE TABLE boulder_sa.`cairnTestTable`", "replication resumed"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("migration log lacks %q", want)
		}
	}
	for _, s := range []string{"a", "b"} {
		if got := sql(t, l, s, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='boulder_sa' AND TABLE_NAME='registrations' AND COLUMN_NAME='cairnTest'"); got != "1" {
			t.Errorf("site %s: registrations.cairnTest missing", s)
		}
		if got := sql(t, l, s, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA='boulder_sa' AND TABLE_NAME='registrations' AND INDEX_NAME='cairn_test_idx'"); got != "1" {
			t.Errorf("site %s: registrations index missing", s)
		}
		want := map[string]string{"a": "1", "b": "0"}[s]
		if got := sql(t, l, s, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='boulder_sa' AND TABLE_NAME='cairnTestTable'"); got != want {
			t.Errorf("site %s: cairnTestTable count %s, want %s", s, got, want)
		}
		if got := sql(t, l, s, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'cairn_next_%'"); got != "0" {
			t.Errorf("site %s: a scratch database was left", s)
		}
	}
	// Replication runs again and carries the new column.
	// Written as the SA would: into the binary log (the admin's session
	// is not).
	sql(t, l, "a", "SET sql_log_bin=1; INSERT INTO boulder_sa.registrations (jwk, jwk_sha256, agreement, createdAt, cairnTest) VALUES ('{}', 'cairn-upgrade-test', '', NOW(), 7)")
	testenv.WaitFor(t, "the row written at a replicated to b", 30*time.Second, func() bool {
		out, _ := l.SiteSQL(ctx, "b", "SELECT cairnTest FROM boulder_sa.registrations WHERE jwk_sha256='cairn-upgrade-test'")
		return strings.TrimSpace(string(out)) == "7"
	})
	sql(t, l, "a", "SET sql_log_bin=1; DELETE FROM boulder_sa.registrations WHERE jwk_sha256='cairn-upgrade-test'")
	// Applied already: nothing more to do.
	log.Reset()
	if err := upgrade.Migrate(ctx, l, l.Spec, "a", dir, &log); err != nil || !strings.Contains(log.String(), "nothing to migrate") {
		t.Errorf("second migration: %v\n%s", err, log.String())
	}
	// A changed column needs a hand-written migration.
	p := filepath.Join(dir, "sql/01-boulder_sa.sql")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "`status` varchar(255) NOT NULL DEFAULT 'valid'", "`status` varchar(100) NOT NULL DEFAULT 'valid'", 1)), 0o644)
	err := upgrade.Migrate(ctx, l, l.Spec, "a", dir, &log)
	if err == nil || !strings.Contains(err.Error(), "registrations`.status") || !strings.Contains(err.Error(), "by hand") {
		t.Errorf("a changed column: %v", err)
	}
}

// The bad-release drill: the gate catches the broken release at the
// standby, rolls it back, and the clients lose nothing.
func testBadRelease(t *testing.T, l *lab.Lab) {
	sc, err := drill.Load("bad-release")
	if err != nil {
		t.Fatal(err)
	}
	// On two sites the rollback is over in about 40 s: the scenario's
	// two minutes leave room on slower hosts; here 80 s are enough.
	sc.Duration.Duration = 80 * time.Second
	// The built-in client every 5 s, not every 1 s (5 times fewer
	// issuances on the cores make test shares): 16 per retry policy, none
	// of which may be lost.
	sc.Workload.Every.Duration = 5 * time.Second
	waitHealthy(t, l)
	before, _ := site.ReadBundle(l.SiteDir("b"))
	r := &drill.Runner{Infra: l, Scenario: sc, Log: labtest.Log{T: t}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bad-release:\n%s", rep.Markdown())
	if !rep.Passed {
		t.Errorf("bad-release failed: %v", rep.Failures)
	}
	u := rep.Upgrade
	if u.Result != drill.UpgradeRolledBack || len(u.Sites) != 1 || u.Sites[0].Site != "b" {
		t.Fatalf("upgrade report %+v", u)
	}
	var phases []string
	for _, p := range u.Sites[0].Phases {
		phases = append(phases, p.Phase)
	}
	for _, want := range []string{"drained", "restarted", "rollback", "rolled-back"} {
		if !strings.Contains(" "+strings.Join(phases, " ")+" ", " "+want+" ") {
			t.Errorf("site b phases %v lack %s", phases, want)
		}
	}
	after, _ := site.ReadBundle(l.SiteDir("b"))
	if after.Generation != before.Generation {
		t.Errorf("b runs bundle %s after the rollback, %s before", after.Generation, before.Generation)
	}
	ra, _ := os.ReadFile(filepath.Join(l.SiteDir("b"), "etc", "ra.json"))
	if strings.Contains(string(ra), ":1\"") {
		t.Errorf("b's RA config still has the broken CA address")
	}
	for _, c := range rep.Clients {
		if c.Issuances == 0 {
			t.Errorf("policy %s issued nothing during the drill", c.Policy)
		}
	}
}

// `cairn upgrade apply --to` another Boulder release, interrupted with
// SIGINT once its first site restarted, then run again: it resumes (the
// first site is not restarted again), finishes, and every site runs the
// other release's binaries.
func testInterruptedUpgrade(t *testing.T, l *lab.Lab) {
	waitHealthy(t, l)
	ctl := &failover.Client{Spec: l.Spec}
	st0, err := ctl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The CLI as an operator runs it, interrupted with SIGINT once its
	// first site restarted on the new release (seen in the state file).
	apply := func() *exec.Cmd {
		cmd := exec.Command(l.Cairn, "-f", l.Spec.File, "upgrade", "apply", "--to", otherRelease, "--canary", "2s")
		cmd.Stdout = labtest.Log{T: t}
		return cmd
	}
	var stderr strings.Builder
	cmd := apply()
	cmd.Stderr = io.MultiWriter(&stderr, labtest.Log{T: t})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := ""
	testenv.WaitFor(t, "the first site restarted on the new release", 3*time.Minute, func() bool {
		st, _ := upgrade.ReadState(upgrade.StateFile(l.Spec))
		if st == nil || len(st.Order) == 0 {
			return false
		}
		first = st.Order[0]
		p := st.Sites[first].Phase
		return p == upgrade.PhaseRestarted || p == upgrade.PhaseHealthy || p == upgrade.PhaseCanary
	})
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err == nil || !strings.Contains(stderr.String(), "run the same command again to resume") {
		t.Fatalf("interrupted upgrade: %v\n%s", err, stderr.String())
	}
	st, err := upgrade.ReadState(upgrade.StateFile(l.Spec))
	if err != nil || st == nil || !st.Finished.IsZero() || st.Sites[st.Order[1]].Phase != upgrade.PhasePending {
		t.Fatalf("state after the interruption: %v %+v", err, st)
	}
	raPID := pidOf(t, l, first, "ra")

	start := time.Now()
	if err := apply().Run(); err != nil {
		t.Fatalf("resumed upgrade: %v", err)
	}
	if st, err = upgrade.ReadState(upgrade.StateFile(l.Spec)); err != nil || st.Finished.IsZero() {
		t.Fatalf("state after the resumed run: %v %+v", err, st)
	}
	t.Logf("resumed upgrade finished in %.1f s: %+v", time.Since(start).Seconds(), st.Order)
	if got := pidOf(t, l, first, "ra"); got != raPID {
		t.Errorf("site %s's RA was restarted again on resume (pid %d → %d)", first, raPID, got)
	}
	for _, name := range []string{"a", "b"} {
		b, err := site.ReadBundle(l.SiteDir(name))
		if err != nil || b.BoulderVersion != otherRelease {
			t.Fatalf("site %s bundle: %v %+v", name, err, b)
		}
		exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pidOf(t, l, name, "ra")), "exe"))
		if !strings.Contains(exe, "boulder-"+otherRelease) {
			t.Errorf("site %s's RA runs %s, not the %s binary", name, exe, otherRelease)
		}
		if st.Sites[name].Phase != upgrade.PhaseDone {
			t.Errorf("site %s ended in phase %s", name, st.Sites[name].Phase)
		}
	}
	// The controller sees the release, and the name is where it was.
	testenv.WaitFor(t, "the controller sees the new release at every site", 30*time.Second, func() bool {
		s, err := ctl.Status(context.Background())
		if err != nil {
			return false
		}
		for _, x := range s.Sites {
			if x.Release == nil || x.Release.Boulder != otherRelease {
				return false
			}
		}
		return s.Active == st0.Active
	})
	// Nothing left to do: a new run changes nothing.
	o2, err := upgrade.ForLab(l.Spec, l, l.Log, l.Cairn)
	if err != nil {
		t.Fatal(err)
	}
	o2.To, o2.Canary = otherRelease, 0
	st2, err := upgrade.Apply(context.Background(), o2)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range st2.Order {
		if p := st2.Sites[name].Phase; p != upgrade.PhaseUnchanged {
			t.Errorf("a second run: site %s phase %s, want unchanged", name, p)
		}
	}
	var f *upgrade.Failed
	if errors.As(err, &f) {
		t.Errorf("unexpected failure: %v", f)
	}

	// Back to the pinned release with --canary-traffic: each site takes
	// the ACME name for its canary, and the name ends where it was.
	o3, err := upgrade.ForLab(l.Spec, l, l.Log, l.Cairn)
	if err != nil {
		t.Fatal(err)
	}
	o3.To, o3.Canary, o3.CanaryTraffic = boulderbin.Version, 3*time.Second, true
	var served []string
	o3.Event = func(e upgrade.Event) {
		if e.Phase == upgrade.PhaseCanary {
			testenv.WaitFor(t, "the name on the canary "+e.Site, 30*time.Second, func() bool {
				s, err := ctl.Status(context.Background())
				return err == nil && s.Active == e.Site
			})
			served = append(served, e.Site)
		}
	}
	if _, err := upgrade.Apply(context.Background(), o3); err != nil {
		t.Fatalf("back to %s with canary traffic: %v", boulderbin.Version, err)
	}
	if len(served) != 2 {
		t.Errorf("canaries that took the name: %v, want both sites", served)
	}
	if s, err := ctl.Status(context.Background()); err != nil || s.Active != st0.Active {
		t.Errorf("after the upgrade the name is on %s, was on %s (%v)", s.Active, st0.Active, err)
	}
}

func pidOf(t *testing.T, l *lab.Lab, siteName, component string) int {
	t.Helper()
	b, err := site.ReadBundle(l.SiteDir(siteName))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range b.Processes {
		if p.Name == component {
			pid, ok := hostrun.NewProc(p, b.Root).Running()
			if !ok {
				t.Fatalf("%s/%s is not running", siteName, component)
			}
			return pid
		}
	}
	t.Fatalf("no %s/%s", siteName, component)
	return 0
}

// checkUpgradePlan: with the spec as rendered, no site would change; with
// a changed CAA identity every site would (its VAs' configs, their
// restarts, a new generation), standbys first; and planning changed
// nothing on disk.
func testPlan(t *testing.T, l *lab.Lab) {
	t.Helper()
	ctx := context.Background()
	opts := upgrade.Options{Spec: l.Spec, Bundle: l.SiteDir, Root: l.SiteDir, Lab: true, Active: "a", Self: l.Cairn, Log: io.Discard}
	plans, err := upgrade.Plan(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if !p.Unchanged() {
			t.Errorf("site %s would change with the spec it runs: %+v", p.Site, p)
		}
	}
	before, _ := site.ReadBundle(l.SiteDir("a"))
	changed := *l.Spec
	changed.ACME.CAAIdentity = "ca2." + changed.ACME.Zone
	opts.Spec = &changed
	plans, err = upgrade.Plan(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 2 || plans[0].Site != "b" || plans[1].Site != "a" || !plans[1].Active {
		t.Fatalf("plan order %+v: want b then the active a", plans)
	}
	for _, p := range plans {
		if p.Unchanged() || p.ToGeneration == p.FromGeneration || !slices.Contains(p.Changed, "etc/va.json") || !slices.Contains(p.Restart, "va") ||
			!strings.Contains(p.Diff, "ca2."+changed.ACME.Zone) {
			t.Errorf("site %s with a new CAA identity: %+v", p.Site, p)
		}
	}
	after, _ := site.ReadBundle(l.SiteDir("a"))
	if before.Generation != after.Generation {
		t.Errorf("planning changed site a's bundle: %s -> %s", before.Generation, after.Generation)
	}
}
