package lab

import (
	"context"
	"fmt"

	"github.com/cairn-pki/cairn/hostrun"
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
	resolve, err := l.siteResolver(ctx, b)
	if err != nil {
		return err
	}
	return hostrun.RestartComponents(ctx, b, names, resolve, l.logf)
}

// SiteSQL runs statements as the site's local database administrator
// (over the socket, kept out of the binary log) and returns the rows,
// tab-separated, without headers.
func (l *Lab) SiteSQL(ctx context.Context, siteName, statements string) ([]byte, error) {
	out, err := hostrun.BundleSQL(ctx, l.siteDir(siteName), statements)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", siteName, err)
	}
	return out, nil
}

// CloseConnections has the site's ACME front end every keep-alive
// connection after its next answer (SIGUSR1); nothing to do when it does
// not run.
func (l *Lab) CloseConnections(ctx context.Context, siteName string) error {
	return hostrun.CloseConnections(ctx, l.siteDir(siteName))
}
