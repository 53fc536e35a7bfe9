package drill

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
)

// The site-lost drill on a lab of its own (running beside
// TestDrillsInTheLab's): the active site's host and disk are destroyed
// after the controller's first backups, the name moves, certbot and lego
// renew elsewhere with their accounts, and the site is rebuilt from the
// controller's backup and admitted again (issue 25, item 5).
func TestSiteLostDrill(t *testing.T) {
	t.Parallel()
	spec := labtest.SpecWith(t, labtest.BlockSiteLost, fastPolicy, "a", "b")
	testenv.Integration(t, "certbot", "lego", "unshare")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	// The leading controller backs up every site that has no backup when
	// it starts.
	store := backup.Store{Dir: spec.Path(spec.Backup.Dir)}
	testenv.WaitFor(t, "the controller's first backup of every site", 90*time.Second, func() bool {
		for _, s := range spec.SiteNames() {
			if _, err := store.Latest(s); err != nil {
				return false
			}
		}
		return true
	})
	waitHealthy(t, l)
	sc, err := Load("site-lost")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := (&Runner{Lab: l, Scenario: sc, Log: labtest.Log{T: t}}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed {
		t.Errorf("site-lost failed: %v", rep.Errors)
	}
	rebuilt := false
	for _, e := range rep.Events {
		if e.Kind == "fault-restored" && strings.Contains(e.Detail, "rebuilt from the backup of") {
			rebuilt = true
			t.Logf("%s: %s", e.Site, e.Detail)
		}
	}
	if !rebuilt {
		t.Errorf("no fault-restored event says the site was rebuilt: %+v", rep.Events)
	}
	if len(rep.RestoreErrors) > 0 {
		t.Errorf("restore errors: %q", rep.RestoreErrors)
	}
}
