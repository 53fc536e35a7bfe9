package drill

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
)

// A second lab beside TestDrillsInTheLab's (both parallel, so the
// package's end-to-end time is the longer of the two, not their sum):
// site-lost (issue 25, item 5: the active site's host and disk destroyed
// after the controller's first backups, the name moved, certbot and lego
// renewing elsewhere with their accounts, the site rebuilt from the
// controller's backup and admitted again), then full-outage and
// account-conflict, each checked like the first lab's scenarios.
func TestDrillsInASecondLab(t *testing.T) {
	t.Parallel()
	spec := labtest.SpecWith(t, labtest.BlockSiteLost, fastPolicy+"eab:\n  required: true\n", "a", "b")
	testenv.Integration(t, "certbot", "lego", "lego5", "unshare")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(context.Background(), lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	// The leading controller backs up every site it can reach that has
	// no backup.
	store := backup.Store{Dir: spec.Path(spec.Backup.Dir)}
	testenv.WaitFor(t, "the controller's first backup of every site", 2*time.Minute, func() bool {
		for _, s := range spec.SiteNames() {
			if _, err := store.Latest(s); err != nil {
				return false
			}
		}
		return true
	})
	out := t.TempDir()
	for _, name := range []string{"site-lost", "full-outage", "account-conflict"} {
		waitHealthy(t, l)
		dir := filepath.Join(out, name)
		rep := runScenario(t, l, name, dir)
		checkScenario(t, l, name, rep, dir)
		if name != "site-lost" {
			continue
		}
		rebuilt := false
		for _, e := range rep.Events {
			if e.Kind == "fault-restored" && strings.Contains(e.Detail, "rebuilt from the backup of") {
				rebuilt = true
				t.Logf("%s: %s", e.Site, e.Detail)
			}
		}
		if !rebuilt || len(rep.RestoreErrors) > 0 {
			t.Errorf("site-lost: no fault-restored event says the site was rebuilt (restore errors %q): %+v", rep.RestoreErrors, rep.Events)
		}
	}
}
