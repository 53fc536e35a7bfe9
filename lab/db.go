package lab

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/site"
)

// DBExec runs SQL as the site's local database administrator (over the
// socket, not logged to the binary log): drills use it to cut and restore
// replication.
func (l *Lab) DBExec(ctx context.Context, siteName, statements string) error {
	_, err := l.SiteSQL(ctx, siteName, statements)
	return err
}

// BinlogOn says whether the site's MariaDB runs with its binary log (a
// database started before account replication was switched on does not).
func (l *Lab) BinlogOn(ctx context.Context, siteName string) (bool, error) {
	b, err := site.ReadBundle(l.siteDir(siteName))
	if err != nil {
		return false, err
	}
	out, err := hostrun.AdminSQL(ctx, b.Database, "-N", "-e", "SELECT @@log_bin")
	if err != nil {
		return false, fmt.Errorf("site %s: %w", siteName, err)
	}
	return strings.TrimSpace(string(out)) == "1", nil
}

// EnableBinlogs restarts, with the rendered my.cnf, every site database
// that still runs without its binary log (started before account
// replication was switched on), and returns their sites.
func (l *Lab) EnableBinlogs(ctx context.Context) ([]string, error) {
	var restarted []string
	for _, s := range l.Spec.Sites {
		on, err := l.BinlogOn(ctx, s.Name)
		if err != nil {
			return restarted, err
		}
		if on {
			continue
		}
		l.logf("site %s: restarting MariaDB with its binary log on", s.Name)
		if err := l.RestartDatabase(ctx, s.Name); err != nil {
			return restarted, err
		}
		restarted = append(restarted, s.Name)
	}
	return restarted, nil
}

// RestartDatabase stops the site's MariaDB and starts it with the rendered
// my.cnf, then applies users and replication connections again.
func (l *Lab) RestartDatabase(ctx context.Context, siteName string) error {
	b, err := site.ReadBundle(l.siteDir(siteName))
	if err != nil {
		return err
	}
	if err := l.StopComponent(siteName, "mariadb"); err != nil {
		return err
	}
	if err := hostrun.InitDBDir(ctx, b.Database, hostrun.DBOSUser()); err != nil {
		return err
	}
	if err := l.StartComponent(ctx, siteName, "mariadb"); err != nil {
		return err
	}
	return hostrun.LoadDB(ctx, b.Database)
}
