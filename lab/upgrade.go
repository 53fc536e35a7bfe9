package lab

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/site"
)

// RestartComponents restarts the named processes of a site with what its
// bundle on disk says now: stopped in reverse dependency order, started
// in dependency order (each ready before the next), Boulder components on
// the release the bundle names. A restarted MariaDB gets its users and
// replication connections again. It is what `cairn upgrade apply` does to
// a site after re-rendering it.
func (l *Lab) RestartComponents(ctx context.Context, siteName string, names []string) error {
	b, err := site.ReadBundle(l.siteDir(siteName))
	if err != nil {
		return fmt.Errorf("site %s: %w", siteName, err)
	}
	for _, n := range names {
		if !slices.ContainsFunc(b.Processes, func(p site.Process) bool { return p.Name == n }) {
			return fmt.Errorf("site %s has no component %q", siteName, n)
		}
	}
	for i := len(b.Processes) - 1; i >= 0; i-- {
		p := b.Processes[i]
		if slices.Contains(names, p.Name) {
			if _, err := hostrun.NewProc(p, b.Root).Stop(10 * time.Second); err != nil {
				return fmt.Errorf("site %s: stop %s: %w", siteName, p.Name, err)
			}
		}
	}
	bins, err := boulderbin.Ensure(ctx, l.Log, "boulder", "ct-test-srv", "s3-test-srv")
	if err != nil {
		return err
	}
	resolve := l.resolverFor(ctx, b, l.resolver(bins))
	for _, p := range b.Processes {
		if !slices.Contains(names, p.Name) {
			continue
		}
		if err := l.startProc(ctx, hostrun.NewProc(p, b.Root), resolve); err != nil {
			return fmt.Errorf("site %s: %w", siteName, err)
		}
		if p.Program == "mariadbd" {
			if err := hostrun.LoadDB(ctx, b.Database); err != nil {
				return fmt.Errorf("site %s: %w", siteName, err)
			}
		}
	}
	return nil
}

// SiteSQL runs statements as the site's local database administrator
// (over the socket) and returns the rows, tab-separated, without headers.
func (l *Lab) SiteSQL(ctx context.Context, siteName, statements string) ([]byte, error) {
	b, err := site.ReadBundle(l.siteDir(siteName))
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", siteName, err)
	}
	out, err := hostrun.AdminSQL(ctx, b.Database, "-N", "-B", "-e", statements)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", siteName, err)
	}
	return out, nil
}
