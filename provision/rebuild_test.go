package provision

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// tarGz is a gzip'd tar of files (name → content; a name ending in / is a
// directory).
func tarGz(t *testing.T, files map[string]string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}
		if strings.HasSuffix(name, "/") {
			hdr = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// The store of the lost site is copied from the controller's host (its
// directory only, 0600 files); a host without it copies nothing; a tar
// reaching outside the site's directory is refused.
func TestRebuildCopiesTheControllersStore(t *testing.T) {
	ctl := &fakeShell{answers: map[string]string{"tar -czf": tarGz(t, map[string]string{"b/": "", "b/20261207T050102.000Z.json": "{}", "b/crls/1-1.crl": "der"})}}
	d := drillInfraWith(map[string]*fakeShell{"cluster": ctl}, true)
	d.p.o.Spec.Backup.Dir = "backups"
	dir := t.TempDir()
	if err := d.copyStore(context.Background(), "b", dir); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ctl.runs[0], "'/var/lib/cairn-controller/spec/backups'/'b'") || !strings.Contains(ctl.runs[0], "'/opt/cairn/cluster/spec/backups'/'b'") {
		t.Errorf("asked the controller's host: %s", ctl.runs[0])
	}
	for _, f := range []string{"b/20261207T050102.000Z.json", "b/crls/1-1.crl"} {
		if info, err := os.Stat(filepath.Join(dir, f)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v", f, err)
		}
	}
	ctl.answers["tar -czf"] = ""
	empty := t.TempDir()
	if err := d.copyStore(context.Background(), "b", empty); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("nothing held, but copied %v", ents)
	}
	ctl.answers["tar -czf"] = tarGz(t, map[string]string{"b/../../etc/x": "evil"})
	if err := d.copyStore(context.Background(), "b", t.TempDir()); err == nil || !strings.Contains(err.Error(), "outside b/") {
		t.Errorf("a tar reaching outside: %v", err)
	}
}

// On the site's host: the restore runs in a mount namespace where the
// bundle's var/mysql is the MariaDB unit's state directory, with the
// backup on its standard input; the database is started as its unit;
// SQL goes through cairn site sql; the site's units are stopped by name.
func TestRebuildHostActsOnTheSitesHost(t *testing.T) {
	sh := &fakeShell{answers: map[string]string{"restore-db": "moved nothing\n{\"gtid\":\"2-2-17\"}\n", "then echo yes": "no\n", "site sql": "3"}}
	d := drillInfraWith(map[string]*fakeShell{"b": sh}, true)
	h := &rebuildHost{p: d.p, d: d, name: "b", b: &site.Bundle{Site: "b", Database: site.Database{DataDir: "/opt/cairn/site/var/mysql/data"},
		Processes: []site.Process{{Name: "mariadb", Program: "mariadbd"}, {Name: "wfe"}}}}
	ctx := context.Background()
	if h.HasDatabase() {
		t.Fatal("a host answering no has a database")
	}
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	gtid, err := h.Restore(ctx, strings.NewReader("the backup"))
	if err != nil || gtid != "2-2-17" {
		t.Fatalf("restore: %q %v", gtid, err)
	}
	if err := h.StartDatabase(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := h.SQL(ctx, "SELECT 3")
	if err != nil || strings.TrimSpace(string(out)) != "3" {
		t.Fatalf("sql: %q %v", out, err)
	}
	want := []string{
		"test -d '/opt/cairn/site/var/mysql/data/mysql' || test -d '/var/lib/cairn-mariadb/mysql/data/mysql'",
		"systemctl stop cairn-mariadb.service cairn-wfe.service",
		"unshare --mount --propagation private sh -c",
		"systemctl start cairn-mariadb.service",
		"/opt/cairn/bin/cairn site sql --bundle /opt/cairn/site",
	}
	if len(sh.runs) != len(want) {
		t.Fatalf("ran %q", sh.runs)
	}
	for i, w := range want {
		if !strings.Contains(sh.runs[i], w) {
			t.Errorf("run %d: %s, want %s", i, sh.runs[i], w)
		}
	}
	restore := sh.runs[2]
	for _, w := range []string{"mkdir -p '/var/lib/cairn-mariadb/mysql'", "mount --bind '/var/lib/cairn-mariadb/mysql' '/opt/cairn/site/var/mysql'",
		"if [ -d '/var/lib/cairn-mariadb/mysql/data'/mysql ]; then mv", "base64 -d | /opt/cairn/bin/cairn site restore-db --bundle /opt/cairn/site"} {
		if !strings.Contains(restore, w) {
			t.Errorf("the restore script lacks %q:\n%s", w, restore)
		}
	}
	if b, _ := base64.StdEncoding.DecodeString(sh.stdin[2]); string(b) != "the backup" {
		t.Errorf("the restore's stdin: %q", sh.stdin[2])
	}
	// A restore that answers no position is an error naming the site.
	sh.answers["restore-db"] = "mbstream: error"
	if _, err := h.Restore(ctx, strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "site b") {
		t.Errorf("a bad answer: %v", err)
	}
}

// A rebuild is refused on hosts without systemd, for a site the spec
// lacks, and with backups off, before anything runs.
func TestProvisionedRebuildRefusals(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	spec.Dir = t.TempDir()
	for infra, want := range map[string]string{"local": "no systemd"} {
		p := &Provisioner{o: Options{Spec: spec, Infra: infra}, dir: spec.Path(Dir)}
		if _, _, err := p.Rebuild(context.Background(), "b", nil, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", infra, err)
		}
	}
	p := &Provisioner{o: Options{Spec: spec, Infra: "nspawn"}, dir: spec.Path(Dir)}
	if _, _, err := p.Rebuild(context.Background(), "zz", nil, nil); err == nil || !strings.Contains(err.Error(), `no site "zz"`) {
		t.Errorf("unknown site: %v", err)
	}
	spec.Backup.Off = true
	if _, _, err := p.Rebuild(context.Background(), "b", nil, nil); err == nil || !strings.Contains(err.Error(), "backup.off") {
		t.Errorf("backups off: %v", err)
	}
}

// A drill's destroy on provisioned hosts: refused before the drill on
// hosts cairn did not boot; the newest backup is the controller host's.
func TestDrillInfraSiteLoss(t *testing.T) {
	ctl := &fakeShell{answers: map[string]string{"ls -1": "a/20261207T050102.000Z.json\nb/20261207T050102.000Z.json\nb/20261207T060102.500Z.json\n"}}
	d := drillInfraWith(map[string]*fakeShell{"cluster": ctl, "a": {}, "b": {}}, false)
	d.p.o.Spec.Backup.Dir = "backups"
	d.p.o.Infra = "aws"
	if err := d.CanDestroy("b"); err == nil || !strings.Contains(err.Error(), "cairn site rebuild b --infra aws") {
		t.Errorf("destroy on aws hosts: %v", err)
	}
	m, err := d.LatestBackup(context.Background(), "b")
	if err != nil || m.File != "20261207T060102.500Z.xb.gz" || m.Taken.Format("15:04:05.000") != "06:01:02.500" {
		t.Fatalf("latest backup of b: %+v %v", m, err)
	}
	if _, err := d.LatestBackup(context.Background(), "c"); !errors.Is(err, backup.ErrNoBackup) {
		t.Errorf("a site without backups: %v", err)
	}
}

// The controller host's CLI runs as the controller's user with its copy
// of the spec (its store is there).
func TestControllerCLIOnItsHost(t *testing.T) {
	ctl := &fakeShell{answers: map[string]string{"backup list": "SITE TAKEN\n"}}
	d := drillInfraWith(map[string]*fakeShell{"cluster": ctl}, true)
	d.p.o.Spec.File = "/home/op/cluster/cairn.yaml"
	out, err := d.ControllerCLI(context.Background(), "-o", "json", "backup", "list")
	if err != nil || out != "SITE TAKEN\n" {
		t.Fatalf("%q %v", out, err)
	}
	if want := "runuser -u cairn-controller -- /opt/cairn/bin/cairn -f /var/lib/cairn-controller/spec/cairn.yaml -o json backup list"; ctl.runs[0] != want {
		t.Errorf("ran %s, want %s", ctl.runs[0], want)
	}
}
