package nspawntest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/backup"
)

// backupsOnSystemdHosts: the controller (on the DNS host) backs up every
// site when it starts; on systemd hosts the agent, which cannot read
// MariaDB's files, gets each backup from cairn-db-backup.socket (a unit
// running as mysql), and the controller keeps it in its state directory.
func backupsOnSystemdHosts(t *testing.T, c *clusterUnderTest) {
	t.Helper()
	ctx := context.Background()
	ctrl := c.hosts["dns"]
	dir := "/var/lib/cairn-controller/spec/" + c.spec.Backup.Dir
	for _, s := range c.spec.SiteNames() {
		var m backup.Manifest
		deadline := time.Now().Add(3 * time.Minute)
		for {
			out, err := ctrl.Exec(ctx, "sh", "-c", "cat "+dir+"/"+s+"/*.json 2>/dev/null | head -c 4096")
			if err == nil && json.Unmarshal(out, &m) == nil && m.Bytes > 0 {
				break
			}
			if time.Now().After(deadline) {
				logs, _ := ctrl.Exec(ctx, "sh", "-c", "tail -n 30 /opt/cairn/*/var/logs/controller.log; /opt/cairn/bin/cairn -f /var/lib/cairn-controller/spec/cairn.yaml failover status 2>&1 | head -8; ls -la /var/lib/cairn-controller/spec")
				site, _ := c.hosts[s].Exec(ctx, "sh", "-c", "tail -n 20 /opt/cairn/*/var/logs/agent.log /opt/cairn/*/var/logs/db-backup.log; systemctl status --no-pager cairn-db-backup.socket | head -5")
				t.Fatalf("no backup of site %s by the controller within 3 minutes\ncontroller:\n%s\nsite:\n%s", s, logs, site)
			}
			time.Sleep(2 * time.Second)
		}
		sock, _ := c.hosts[s].Exec(ctx, "stat", "-c", "%U %a", "/run/cairn-db-backup/backup.sock")
		t.Logf("site %s on a systemd host: backup %s, %d bytes in %.1f s; its socket: %s", s, m.File, m.Bytes, m.Seconds, strings.TrimSpace(string(sock)))
		if strings.TrimSpace(string(sock)) != "cairn-agent 600" {
			t.Errorf("site %s: the backup socket is %q, want the agent's alone (cairn-agent 600)", s, sock)
		}
		// What the controller stored is whole (gzip's trailer checks it)
		// and a mariadb-backup stream.
		out, err := ctrl.Exec(ctx, "sh", "-c", "gzip -t "+dir+"/"+s+"/"+m.File+" && gzip -dc "+dir+"/"+s+"/"+m.File+" | head -c 8 | od -c | head -1")
		if err != nil || !strings.Contains(string(out), "X   B   S   T   C   K") {
			t.Errorf("site %s: the stored backup is not a whole xbstream: %v %s", s, err, out)
		}
	}
}
