package provision

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// The controller host's listing of its store: the newest manifest per
// site; backup files, CRLs, temporary files and stray lines are no
// backups.
func TestControllerBackups(t *testing.T) {
	listing := "a/20261207T050102.000Z.json\na/20261207T060102.000Z.json\nb/20261206T230000.500Z.json\n" +
		"c/.taking-123.json\nc/20261207T010101.000Z.xb.gz\nc/crls/1-1.json\nnot a path\n\n"
	got := controllerBackups(listing)
	want := map[string]string{"a": "20261207T060102.000Z", "b": "20261206T230000.500Z"}
	if !maps.Equal(got, want) {
		t.Fatalf("backups %v, want %v", got, want)
	}
	if got := backupTaken("20261207T060102.000Z"); got != "2026-12-07T06:01:02Z" {
		t.Errorf("taken %s", got)
	}
	if got := shellQuote("/var/lib/it's"); got != `'/var/lib/it'\''s'` {
		t.Errorf("quoted %s", got)
	}
}

// apply refuses a site whose host has no database while the controller's
// host holds a backup of it, naming the site, the backup and what to do;
// a site with its database, or without a backup, goes on; a first apply
// (nothing in the store) asks one question only.
func TestApplyRefusesALostSite(t *testing.T) {
	spec := cluster.Default([]string{"a", "b", "c"})
	spec.Dir = t.TempDir()
	p := &Provisioner{o: Options{Spec: spec, Infra: "nspawn"}, dir: spec.Path(Dir)}
	for _, s := range []string{"a", "b", "c"} {
		dir := p.path("bundles", s)
		os.MkdirAll(dir, 0o755)
		b, _ := json.Marshal(site.Bundle{Site: s, Database: site.Database{DataDir: "/opt/cairn/site/var/mysql/data"},
			Processes: []site.Process{{Name: "redis"}, {Name: "mariadb", Program: "mariadbd"}}})
		if err := os.WriteFile(filepath.Join(dir, "bundle.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := &Outputs{DNSServers: []DNSServer{{Name: "dns"}}}
	var asked []string
	fake := func(listing string, hasDB map[string]bool) askHost {
		return func(_ context.Context, host string, argv []string) (string, error) {
			asked = append(asked, host+": "+argv[len(argv)-1])
			if host == "dns" {
				return listing, nil
			}
			// The unit's state directory (systemd hosts) or the bundle's.
			if sh := argv[len(argv)-1]; !strings.Contains(sh, "test -d '/var/lib/cairn-mariadb/mysql/data/mysql'") ||
				!strings.Contains(sh, "test -d '/opt/cairn/site/var/mysql/data/mysql'") {
				t.Errorf("site %s asked about %q", host, argv)
			}
			if hasDB[host] {
				return "yes\n", nil
			}
			return "no\n", nil
		}
	}
	ctx := context.Background()
	// A first apply: the store is empty.
	if err := p.refuseLostSites(ctx, fake("", nil), out); err != nil || len(asked) != 1 {
		t.Fatalf("first apply: %v, asked %q", err, asked)
	}
	if !strings.Contains(asked[0], "/var/lib/cairn-controller/spec/backups") {
		t.Errorf("the store asked for: %s", asked[0])
	}
	// b lost its database; a has its own; c has no backup (not asked).
	asked = nil
	err := p.refuseLostSites(ctx, fake("a/20261207T050102.000Z.json\nb/20261207T050102.000Z.json\nb/20261207T060000.000Z.json\n", map[string]bool{"a": true}), out)
	if err == nil || !strings.Contains(err.Error(), "site b has no database on its host but the controller's host dns holds a backup of it (2026-12-07T06:00:00Z") ||
		strings.Contains(err.Error(), "site a") || !strings.Contains(err.Error(), "cairn site rebuild SITE --infra nspawn") {
		t.Fatalf("b lost: %v", err)
	}
	if len(asked) != 3 {
		t.Errorf("asked %q, want the store, a and b", asked)
	}
	// Backups off: nothing asked.
	asked = nil
	spec.Backup.Off = true
	if err := p.refuseLostSites(ctx, fake("b/20261207T050102.000Z.json\n", nil), out); err != nil || len(asked) != 0 {
		t.Errorf("backups off: %v, asked %q", err, asked)
	}
}

// An ad-hoc command's answer is the json callback's alone: an operator's
// ANSIBLE_CALLBACKS_ENABLED (profile_tasks adds lines to stdout) is
// cleared; output that is no answer is named as such, not as "<nil>".
func TestAdhocReadsOnlyTheJSONCallback(t *testing.T) {
	bin := t.TempDir()
	script := `#!/bin/sh
[ -n "$ANSIBLE_CALLBACKS_ENABLED" ] && echo "Monday 07 December 2026 (0:00:00.1) profile_tasks"
[ -n "$FAKE_GARBAGE" ] && { echo "PLAY RECAP"; exit 0; }
echo '{"plays":[{"tasks":[{"hosts":{"dns":{"rc":0,"stdout":"a/20261207T050102.000Z.json"}}}]}]}'
`
	if err := os.WriteFile(filepath.Join(bin, "ansible"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.profile_tasks")
	spec := cluster.Default([]string{"a"})
	spec.Dir = t.TempDir()
	p := &Provisioner{o: Options{Spec: spec, Infra: "nspawn"}, dir: spec.Path(Dir)}
	os.MkdirAll(p.path("ansible"), 0o755)
	out, err := p.adhoc(context.Background(), "inv.yml", "dns", []string{"ls"}, "")
	if err != nil || out != "a/20261207T050102.000Z.json" {
		t.Fatalf("adhoc with the operator's callbacks enabled: %q %v", out, err)
	}
	t.Setenv("FAKE_GARBAGE", "1")
	_, err = p.adhoc(context.Background(), "inv.yml", "dns", []string{"ls"}, "")
	if err == nil || !strings.Contains(err.Error(), "unreadable output: PLAY RECAP") || strings.Contains(err.Error(), "<nil>") {
		t.Fatalf("adhoc with output that is no answer: %v", err)
	}
}
