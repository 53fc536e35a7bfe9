package provision

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/accounts"
	cairnansible "github.com/cairn-pki/cairn/ansible"
	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// `cairn site rebuild NAME --infra …`: a site whose host or disk is gone,
// brought back on its (new) host from the controller's newest backup.
// backup.Rebuild does the reconciliation (binary log, revocations,
// accounts, the controller told); this file is its Host on a provisioned
// systemd host, every action an operator's command on that host:
//
//   - Prepare: the hosts made (Terraform: a destroyed one anew), the
//     bundles rendered, and the site's playbook run with its units held
//     (installed, none started: MariaDB would initialise an empty datadir);
//   - Restore: the backup streamed to the host and restored with
//     `cairn site restore-db` into the MariaDB unit's state directory;
//   - StartDatabase: the MariaDB unit started (its own steps load users
//     and replication); SQL: `cairn site sql`;
//   - Start: the site's playbook run again, every unit enabled and
//     started in order (its CRLs published).
//
// The controller's store is copied from its host into the working
// directory first (rebuild-store/<site>, 0700): backup.Rebuild reads the manifest, the
// backup and the archived CRLs there.

// Rebuild is the rebuild of site name on the provisioned hosts and a
// function removing its copy of the store. It runs from the operator's
// vantage (DrillFromOperator): the peers' databases and the controller
// are reached as `cairn accounts` and `cairn failover` reach them.
func (p *Provisioner) Rebuild(ctx context.Context, name string, restored func(context.Context, string) error, log io.Writer) (*backup.Rebuild, func(), error) {
	if p.o.Infra == "local" {
		return nil, nil, fmt.Errorf("--infra local: its namespace hosts run no systemd; rebuild the lab's sites without --infra, provisioned ones on systemd hosts (--infra nspawn, aws, existing)")
	}
	if _, ok := p.o.Spec.SiteByName(name); !ok {
		return nil, nil, fmt.Errorf("no site %q in the spec", cluster.Excerpt(name))
	}
	if p.o.Spec.Backup.Off {
		return nil, nil, fmt.Errorf("backup.off is set: the controller keeps no backup to rebuild %s from (docs/backup.md, \"No backup\")", name)
	}
	d, err := p.DrillInfra(ctx)
	if err != nil {
		return nil, nil, err
	}
	peers, err := accounts.Admin(p.o.Spec)
	if err != nil {
		return nil, nil, err
	}
	// The copy lives in the working directory (private, like the
	// bundles); a rebuild's own is removed first, and after it by cleanup.
	dir := p.path("rebuild-store", name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := d.copyStore(ctx, name, dir); err != nil {
		cleanup()
		return nil, nil, err
	}
	h := &rebuildHost{p: p, d: d, name: name}
	return &backup.Rebuild{Spec: p.o.Spec, Site: name, Store: backup.Store{Dir: dir}, Host: h, Peers: peers, Restored: restored, Log: log}, cleanup, nil
}

// copyStore copies the site's directory of the controller's store (its
// backups, manifests and archived CRLs) from the controller's host into
// dir; nothing when the host holds none (backup.Rebuild then refuses).
func (d *DrillInfra) copyStore(ctx context.Context, name, dir string) error {
	var script []string
	for _, s := range d.p.hostControllerStores() {
		script = append(script, fmt.Sprintf("if [ -d %[1]s/%[2]s ]; then cd %[1]s && tar -czf - --exclude='.*' %[2]s | base64 -w0; exit; fi", shellQuote(s), shellQuote(name)))
	}
	out, err := d.hosts["cluster"].run(ctx, "", "sh", "-c", strings.Join(script, "; "))
	if err != nil {
		return fmt.Errorf("copying the backups of %s from the controller's host: %w", name, err)
	}
	if strings.TrimSpace(out) == "" {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("the backups of %s from the controller's host: %w", name, err)
	}
	return untarSite(raw, name, dir)
}

// untarSite unpacks a gzip'd tar of the store's directory name into dir:
// regular files under name/ only (0600), directories 0700.
func untarSite(raw []byte, name, dir string) error {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		clean := path.Clean(hdr.Name)
		if clean != name && !strings.HasPrefix(clean, name+"/") {
			return fmt.Errorf("the controller's store sent %q, outside %s/", cluster.Excerpt(hdr.Name), name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(clean))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			b, err := io.ReadAll(io.LimitReader(tr, 1<<30))
			if err != nil {
				return err
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				return err
			}
		}
	}
}

// rebuildHost is backup.Host on a provisioned systemd host.
type rebuildHost struct {
	p    *Provisioner
	d    *DrillInfra
	name string
	// inventory: the one apply writes (every host, the release's binaries).
	inventory string
	b         *site.Bundle
}

func (h *rebuildHost) run(ctx context.Context, stdin string, argv ...string) (string, error) {
	out, err := h.d.hosts[h.name].run(ctx, stdin, argv...)
	if err != nil {
		return out, fmt.Errorf("site %s: %s: %w", h.name, argv[0], err)
	}
	return out, nil
}

// playbook installs the site's bundle (the inventory apply writes) with
// its units held or started.
func (h *rebuildHost) playbook(ctx context.Context, hold bool) error {
	vars, _ := json.Marshal(map[string]bool{"cairn_common_hold_units": hold})
	return h.p.ansible(ctx, h.inventory, h.name, "site.yml", "-e", string(vars))
}

// Prepare makes the hosts (a destroyed one anew), renders the bundles
// and installs the site's with its units held.
func (h *rebuildHost) Prepare(ctx context.Context) error {
	out, err := h.p.outputs(ctx)
	if err != nil {
		return err
	}
	if h.inventory, err = h.p.render(ctx, out); err != nil {
		return err
	}
	if h.b, err = site.ReadBundle(h.p.path("bundles", h.name)); err != nil {
		return err
	}
	if err := writeFS(cairnansible.Files, ".", h.p.path("ansible")); err != nil {
		return err
	}
	h.p.logf("  installing site %s's bundle on its host, its units held", h.name)
	return h.playbook(ctx, true)
}

// units are the site's units, in the bundle's order.
func (h *rebuildHost) units() []string {
	var out []string
	for _, pr := range h.b.Processes {
		out = append(out, "cairn-"+pr.Name+".service")
	}
	return out
}

// Stop stops every unit of the site (none runs on a host just installed).
func (h *rebuildHost) Stop(ctx context.Context) error {
	_, err := h.run(ctx, "", append([]string{"systemctl", "stop"}, h.units()...)...)
	return err
}

func (h *rebuildHost) HasDatabase() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := h.run(ctx, "", "sh", "-c", hasDatabaseScript(h.b))
	// Unknown counts as present: a rebuild then refuses without --force.
	return err != nil || strings.TrimSpace(out) != "no"
}

// mariadb is the name of the site's MariaDB process.
func (h *rebuildHost) mariadb() (string, error) {
	for _, pr := range h.b.Processes {
		if pr.Program == "mariadbd" {
			return pr.Name, nil
		}
	}
	return "", fmt.Errorf("site %s has no MariaDB process", h.name)
}

// Restore streams the backup to the host and restores it with `cairn
// site restore-db` in a mount namespace where the bundle's var/mysql is
// the MariaDB unit's state directory (where the unit keeps its datadir):
// the bundle's my.cnf then names the right places. A database still
// there is moved aside (data.replaced-<time>).
func (h *rebuildHost) Restore(ctx context.Context, r io.Reader) (string, error) {
	state, ok := unitMySQLDir(h.b)
	if !ok {
		return "", fmt.Errorf("site %s has no MariaDB process", h.name)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	varMySQL := path.Dir(h.b.Database.DataDir)
	data := path.Join(state, path.Base(h.b.Database.DataDir))
	script := fmt.Sprintf(`set -e
mkdir -p %[1]s
if [ -d %[2]s/mysql ]; then mv %[2]s %[2]s.replaced-$(date -u +%%Y%%m%%dT%%H%%M%%S); echo "moved the database that was there aside" >&2; fi
mount --bind %[1]s %[3]s
base64 -d | %[4]s/bin/cairn site restore-db --bundle %[5]s --bin %[4]s/bin`, shellQuote(state), shellQuote(data), shellQuote(varMySQL), HostRoot, hostSite)
	out, err := h.run(ctx, base64.StdEncoding.EncodeToString(raw), "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	if err != nil {
		return "", err
	}
	var res struct {
		GTID string `json:"gtid"`
	}
	if err := json.Unmarshal([]byte(lastLine(out)), &res); err != nil {
		return "", fmt.Errorf("site %s: cairn site restore-db answered %q: %w", h.name, cluster.Excerpt(out), err)
	}
	return res.GTID, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// StartDatabase starts the MariaDB unit alone (its steps chown the
// datadir and load the users and replication connections).
func (h *rebuildHost) StartDatabase(ctx context.Context) error {
	name, err := h.mariadb()
	if err != nil {
		return err
	}
	_, err = h.run(ctx, "", "systemctl", "start", "cairn-"+name+".service")
	return err
}

// SQL runs statements with `cairn site sql` on the host.
func (h *rebuildHost) SQL(ctx context.Context, statements string) ([]byte, error) {
	out, err := h.run(ctx, statements, HostRoot+"/bin/cairn", "site", "sql", "--bundle", hostSite, "--bin", HostRoot+"/bin")
	if err != nil {
		return nil, err
	}
	return []byte(out + "\n"), nil
}

// Start installs the site's bundle again with its units started (every
// unit enabled and started in order; the CRL updater's first run
// publishes its CRLs).
func (h *rebuildHost) Start(ctx context.Context) error {
	h.p.logf("  starting site %s's units", h.name)
	return h.playbook(ctx, false)
}
