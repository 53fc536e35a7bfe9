package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// RebuildHost is one lab site as `cairn site rebuild` drives it.
func (l *Lab) RebuildHost(name string) backup.Host { return &rebuildHost{l: l, name: name} }

type rebuildHost struct {
	l       *Lab
	name    string
	b       *site.Bundle
	resolve func(string) (string, error)
}

// Prepare renders every bundle: a lost site's directory is made again
// from the spec, its secrets and PKI.
func (h *rebuildHost) Prepare(ctx context.Context) error {
	r, err := h.l.render(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, b := range r.Sites {
		if b.Site == h.name {
			h.b = b
		}
	}
	if h.b == nil {
		return fmt.Errorf("no site %q in the lab", h.name)
	}
	if err := h.l.addAliases(r.Cluster, r.Sites); err != nil {
		return err
	}
	h.resolve = h.l.resolverFor(ctx, h.b, h.l.resolver(r.Bins))
	return nil
}

// Stop stops the site, holding its processes against the supervisor
// until StartDatabase and Start.
func (h *rebuildHost) Stop(context.Context) error {
	for i := len(h.b.Processes) - 1; i >= 0; i-- {
		p := hostrun.NewProc(h.b.Processes[i], h.b.Root)
		if err := p.Hold(); err != nil {
			return err
		}
		if _, err := p.Stop(10 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (h *rebuildHost) HasDatabase() bool {
	return fsutil.Exists(filepath.Join(h.b.Database.DataDir, "mysql"))
}

// Restore moves a database still there aside (data.replaced-<time>),
// then restores the backup.
func (h *rebuildHost) Restore(ctx context.Context, r io.Reader) (string, error) {
	if h.HasDatabase() {
		aside := h.b.Database.DataDir + ".replaced-" + time.Now().UTC().Format("20060102T150405")
		if err := os.Rename(h.b.Database.DataDir, aside); err != nil {
			return "", err
		}
		h.l.logf("  moved the database that was there to %s", aside)
	}
	info, err := hostrun.RestoreDB(ctx, h.b.Database, r)
	return info.GTID, err
}

func (h *rebuildHost) StartDatabase(ctx context.Context) error {
	if err := hostrun.InitDBDir(ctx, h.b.Database, hostrun.DBOSUser()); err != nil {
		return err
	}
	for _, p := range h.b.Processes {
		if p.Program != "mariadbd" {
			continue
		}
		proc := hostrun.NewProc(p, h.b.Root)
		proc.Release()
		if err := h.l.startProc(ctx, proc, h.resolve); err != nil {
			return err
		}
		return hostrun.LoadDB(ctx, h.b.Database)
	}
	return fmt.Errorf("site %s has no MariaDB process", h.name)
}

func (h *rebuildHost) SQL(ctx context.Context, statements string) ([]byte, error) {
	return hostrun.AdminScript(ctx, h.b.Database, statements)
}

func (h *rebuildHost) Start(ctx context.Context) error {
	for _, p := range h.b.Processes {
		hostrun.NewProc(p, h.b.Root).Release()
	}
	return h.l.startSite(ctx, h.b, h.resolve)
}

// DestroySite is what losing a site's host and disk does to the lab:
// every process of the site stopped, its whole directory (database,
// logs, rendered files) removed. The site's HSM token stays (it lives in
// the PKI directory: an HSM is a device, not the host's disk).
func (l *Lab) DestroySite(name string) error {
	bundles, err := l.bundles()
	if err != nil {
		return err
	}
	for _, b := range bundles {
		if b.Site != name {
			continue
		}
		for i := len(b.Processes) - 1; i >= 0; i-- {
			if _, err := hostrun.NewProc(b.Processes[i], b.Root).Stop(10 * time.Second); err != nil {
				return err
			}
		}
		return os.RemoveAll(l.siteDir(name))
	}
	return fmt.Errorf("no site %q in the lab", name)
}

// Rebuild is `cairn site rebuild name` on the lab: the newest backup in
// the spec's backup.dir, the lab's site as the host, the peers through
// the administrator's database credential; restored tells the controller
// (nil: none to tell).
func (l *Lab) Rebuild(name string, restored func(ctx context.Context, site string) error, log io.Writer) (*backup.Rebuild, error) {
	peers, err := accounts.Admin(l.Spec)
	if err != nil {
		return nil, err
	}
	return &backup.Rebuild{Spec: l.Spec, Site: name, Store: backup.Store{Dir: l.Spec.Path(l.Spec.Backup.Dir)}, Host: l.RebuildHost(name),
		Peers: peers, Restored: restored, Log: log}, nil
}

// refuseLostSites refuses to start a site whose database is gone while
// the store holds a backup of it: started empty, it would give out again
// account IDs its peers hold and forget what it issued and revoked.
func (l *Lab) refuseLostSites(bundles []*site.Bundle) error {
	store := backup.Store{Dir: l.Spec.Path(l.Spec.Backup.Dir)}
	for _, b := range bundles {
		if fsutil.Exists(filepath.Join(b.Database.DataDir, "mysql")) {
			continue
		}
		if m, err := store.Latest(b.Site); err == nil {
			return fmt.Errorf("site %s has no database but a backup of %s: bring it back with cairn site rebuild %s (or move %s away to start it empty)",
				b.Site, m.Taken.UTC().Format(time.RFC3339), b.Site, filepath.Join(store.Dir, b.Site))
		}
	}
	return nil
}

// CanDestroy: every lab site can be lost and rebuilt (drill.SiteLoss).
func (l *Lab) CanDestroy(string) error { return nil }

// LatestBackup is the newest backup of the site in backup.dir.
func (l *Lab) LatestBackup(_ context.Context, name string) (backup.Manifest, error) {
	return backup.Store{Dir: l.Spec.Path(l.Spec.Backup.Dir)}.Latest(name)
}

// SiteDatabaseExists says whether a site's database is on disk (false
// once DestroySite removed it, or for a site never started).
func (l *Lab) SiteDatabaseExists(name string) bool {
	b, err := site.ReadBundle(l.SiteDir(name))
	return err == nil && fsutil.Exists(filepath.Join(b.Database.DataDir, "mysql"))
}

// StartSites starts whatever of the lab is not running (cairn lab up).
func (l *Lab) StartSites(ctx context.Context) error {
	_, err := l.Up(ctx, UpOptions{})
	return err
}
