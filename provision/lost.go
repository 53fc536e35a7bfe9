package provision

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/site"
)

// A lost site. The leading controller keeps backups of every site's
// database on its host (backup.Scheduler, under backup.dir of its copy
// of the spec). A site host that comes back without its database (a new
// host, a lost disk) must not be started empty while such a backup
// exists: MariaDB would be initialised afresh and the site would give out
// again account IDs its peers hold, and forget what it issued and revoked.
// So apply asks the controller's host which sites it holds backups of
// and, for those, whether their hosts still have a database, before any
// playbook runs.

// controllerBackups lists, from the controller host's store listing
// (`<site>/<stamp>.json` per line), the newest backup's stamp per site.
func controllerBackups(listing string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(listing, "\n") {
		dir, file, ok := strings.Cut(strings.TrimSpace(line), "/")
		if !ok || strings.Contains(file, "/") || !strings.HasSuffix(file, ".json") || strings.HasPrefix(file, ".") {
			continue
		}
		stamp := strings.TrimSuffix(file, ".json")
		if stamp > out[dir] {
			out[dir] = stamp
		}
	}
	return out
}

// backupTaken turns a store stamp (backup.StampFormat) into a time for
// messages; the stamp itself if it does not parse.
func backupTaken(stamp string) string {
	if t, err := time.Parse(backup.StampFormat, stamp); err == nil {
		return t.UTC().Format(time.RFC3339)
	}
	return stamp
}

// hostControllerStores are where the store may be on the controller's
// host: under its spec's state directory (systemd hosts), or next to the
// spec in the cluster bundle (hosts without systemd).
func (p *Provisioner) hostControllerStores() []string {
	dir := p.o.Spec.Backup.Dir
	if path.IsAbs(dir) {
		return []string{dir}
	}
	return []string{path.Join(hostControllerSpec, dir), path.Join(hostCluster, "spec", dir)}
}

// storeListingScript lists, on the controller's host, every manifest of
// its store (`<site>/<stamp>.json`; nothing when it holds none).
func (p *Provisioner) storeListingScript() string {
	var script []string
	for _, d := range p.hostControllerStores() {
		script = append(script, "(cd "+shellQuote(d)+" 2>/dev/null && ls -1 -- */*.json 2>/dev/null)")
	}
	return strings.Join(script, "; ") + "; true"
}

// askHost runs argv on a host of the inventory and returns its stdout.
type askHost func(ctx context.Context, host string, argv []string) (string, error)

// refuseLostSites refuses, before any playbook runs, to install a site
// whose host has no database while the controller's host holds a backup
// of it. On a first apply the controller's host holds nothing: one
// question to it.
func (p *Provisioner) refuseLostSites(ctx context.Context, ask askHost, out *Outputs) error {
	if p.o.Spec.Backup.Off || len(out.DNSServers) == 0 {
		return nil
	}
	ctl := out.DNSServers[0].Name
	listing, err := ask(ctx, ctl, []string{"sh", "-c", p.storeListingScript()})
	if err != nil {
		return fmt.Errorf("asking the controller's host %s which backups it holds: %w", ctl, err)
	}
	backups := controllerBackups(listing)
	var lost []string
	for _, s := range p.o.Spec.Sites {
		stamp, ok := backups[s.Name]
		if !ok {
			continue
		}
		b, err := site.ReadBundle(p.path("bundles", s.Name))
		if err != nil {
			return err
		}
		has, err := ask(ctx, s.Name, []string{"sh", "-c", hasDatabaseScript(b)})
		if err != nil {
			return fmt.Errorf("asking site %s's host whether it has a database: %w", s.Name, err)
		}
		if strings.TrimSpace(has) == "no" {
			lost = append(lost, fmt.Sprintf("site %s has no database on its host but the controller's host %s holds a backup of it (%s, in %s/ of backup.dir)",
				s.Name, ctl, backupTaken(stamp), s.Name))
		}
	}
	if len(lost) == 0 {
		return nil
	}
	slices.Sort(lost)
	return fmt.Errorf("%s: installing it would start it empty, giving out again account IDs its peers hold and forgetting what it issued and revoked; "+
		"bring it back from that backup with cairn site rebuild SITE --infra %s (docs/backup.md), or move the backups aside on the controller's host to start it empty on purpose",
		strings.Join(lost, "; "), p.o.Infra)
}

// hostDataDirs are where a site host keeps its MariaDB datadir: on a
// systemd host the unit's state directory, mounted over the bundle's
// var/mysql for that unit alone (/var/lib/cairn-<name>/mysql/data:
// ansible/roles/cairn_common/vars/main.yml, hostrun.unitSocket); on a
// host without systemd the bundle's own.
func hostDataDirs(b *site.Bundle) []string {
	dirs := []string{b.Database.DataDir}
	if state, ok := unitMySQLDir(b); ok {
		dirs = append(dirs, path.Join(state, path.Base(b.Database.DataDir)))
	}
	return dirs
}

// unitMySQLDir is the MariaDB unit's state directory on a systemd host,
// mounted over the bundle's var/mysql: /var/lib/cairn-<name>/mysql.
func unitMySQLDir(b *site.Bundle) (string, bool) {
	for _, p := range b.Processes {
		if p.Program == "mariadbd" {
			return path.Join("/var/lib", "cairn-"+p.Name, path.Base(path.Dir(b.Database.DataDir))), true
		}
	}
	return "", false
}

// hasDatabaseScript answers yes when the host holds the site's database
// (a datadir of hostDataDirs with MariaDB's system schema), no if not.
func hasDatabaseScript(b *site.Bundle) string {
	var tests []string
	for _, d := range hostDataDirs(b) {
		tests = append(tests, "test -d "+shellQuote(d+"/mysql"))
	}
	return "if " + strings.Join(tests, " || ") + "; then echo yes; else echo no; fi"
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
