package nspawntest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/internal/testenv"
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
		testenv.WaitFor(t, "the controller's backup of site "+s, 2*time.Minute, func() bool {
			out, err := ctrl.Exec(ctx, "sh", "-c", "cat "+dir+"/"+s+"/*.json 2>/dev/null | head -c 4096")
			return err == nil && json.Unmarshal(out, &m) == nil && m.Bytes > 0
		})
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
