package drill

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
)

// destroyFault loses a site's host and disk: in the lab every process of
// the site stopped and its whole directory, database included, removed
// (its HSM token stays, as a real HSM outlives a host); on nspawn hosts
// the host switched off and its disk replaced by a blank one (the token
// comes back with the bundle).
// Restore is `cairn site rebuild`: the newest backup in the controller's
// store restored, the site reconciled with its peers, the controller's
// archived CRLs and journal (backup.Rebuild). Inject refuses a site with
// no backup: a drill does not destroy what cannot come back.
type destroyFault struct {
	l    SiteLoss
	spec *cluster.Spec
	site string
	log  io.Writer
	// Report is the rebuild's, once Restore rebuilt the site.
	Report *backup.Report
}

func (f *destroyFault) Describe() string {
	return "lose " + f.site + "'s host and disk (its database with it), then rebuild it from its newest backup"
}

// RestoreDetail is what the rebuild did, for the report's timeline.
func (f *destroyFault) RestoreDetail() string {
	r := f.Report
	if r == nil {
		return ""
	}
	return fmt.Sprintf("rebuilt from the backup of %s (%s old, %d bytes): restore %.1f s, %d of %d archived revoked serials re-applied, %d accounts copied back from peers, %.1f s in all",
		r.Backup.Taken.UTC().Format("15:04:05"), r.BackupAge.Round(time.Second), r.Backup.Bytes, r.RestoreTime.Seconds(), r.Reapplied, r.CRLSerials, r.Accounts, r.Total.Seconds())
}

func (f *destroyFault) Inject(ctx context.Context) error {
	if _, err := f.l.LatestBackup(ctx, f.site); err != nil {
		return fmt.Errorf("destroy %s: %w (the controller takes one per site when it starts; cairn backup now %s takes one)", f.site, err, f.site)
	}
	return f.l.DestroySite(f.site)
}

// Restore rebuilds the site when its database is gone; a site whose
// database is still there (Inject never ran, or failed half-way; a drill
// killed after a rebuild) is only started again.
func (f *destroyFault) Restore(ctx context.Context) error {
	if f.Report != nil {
		return nil // rebuilt already
	}
	if f.l.SiteDatabaseExists(f.site) {
		return f.l.StartSites(ctx)
	}
	ctrl := &failover.Client{Spec: f.spec}
	rb, err := f.l.Rebuild(f.site, func(ctx context.Context, site string) error {
		_, err := ctrl.Restored(ctx, site)
		return err
	}, f.log)
	if err != nil {
		return err
	}
	f.Report, err = rb.Run(ctx, false)
	return err
}
