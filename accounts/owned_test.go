package accounts_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/lab"
	"github.com/cairn-pki/cairn/site"
)

// A site applies a peer's account rows only in that peer's ID range. Site
// a's database, written as a compromised site's administrator would (binary
// log on), rewrites the key and status of an account b owns, inserts a row
// into b's range and deletes another of b's accounts. b and c refuse all
// three, count them against a, and keep applying a's own rows: the account
// a registers next and a's deactivation of it, which the test waits for
// before it looks at b's accounts. The monitor user gets in only with its
// client certificate.
func TestOnlyOwnedRows(t *testing.T) {
	spec := labtest.SpecWith(t, labtest.BlockAccounts, "", "a", "b", "c")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	reader, err := accounts.NewMariaDB(spec)
	if err != nil {
		t.Fatal(err)
	}
	register := registrar(t, spec)
	rewritten, deleted := register("b"), register("b")
	for _, s := range []string{"a", "c"} {
		for _, id := range []int64{rewritten, deleted} {
			waitFor(t, func() bool { return has(t, reader, s, id) }, "b's account %d to reach %s", id, s)
		}
	}
	before := map[string]map[int64]accounts.Account{}
	for _, s := range []string{"b", "c"} {
		before[s] = accountsOf(t, reader, s)
	}
	prefixB := int64(spec.Sites[1].SerialPrefix.Value())
	forged := prefixB + 128*1_000_000 // in b's range, far above what b hands out here
	if _, err := l.SiteSQL(ctx, "a", fmt.Sprintf("SET SESSION sql_log_bin = 1; "+
		"UPDATE %[1]s SET jwk_sha256 = 'forged-by-a', status = 'deactivated' WHERE id = %[2]d; "+
		"INSERT INTO %[1]s (id, jwk, jwk_sha256, agreement, createdAt, status) VALUES (%[3]d, 'x', 'inserted-by-a', 'x', UTC_TIMESTAMP(), 'valid'); "+
		"DELETE FROM %[1]s WHERE id = %[4]d",
		site.ReplicatedTable, rewritten, forged, deleted)); err != nil {
		t.Fatal(err)
	}
	atA := accountsOf(t, reader, "a")
	if _, ok := atA[deleted]; ok || atA[rewritten].KeySHA != "forged-by-a" || atA[forged].KeySHA != "inserted-by-a" {
		t.Fatalf("the writes at a did not happen: %+v", atA)
	}
	// a's own rows, written after the foreign ones, in the same stream.
	own := register("a")
	if _, err := l.SiteSQL(ctx, "a", fmt.Sprintf("SET SESSION sql_log_bin = 1; UPDATE %s SET status = 'deactivated' WHERE id = %d", site.ReplicatedTable, own)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"b", "c"} {
		waitFor(t, func() bool { return accountsOf(t, reader, s)[own].Status == "deactivated" }, "a's deactivation of its account %d to reach %s", own, s)
		after := accountsOf(t, reader, s)
		for _, id := range []int64{rewritten, deleted} {
			if after[id] != before[s][id] {
				t.Errorf("site %s: b's account %d is %+v, was %+v: a's write was applied", s, id, after[id], before[s][id])
			}
		}
		if a, ok := after[forged]; ok {
			t.Errorf("site %s: a inserted %+v into b's range and it was applied", s, a)
		}
		raw, err := reader.Read(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		fw := raw.ForeignWrites[int64(spec.Sites[0].SerialPrefix.Value())]
		if fw.Count != 3 || fw.LastOp != "delete" || fw.LastID != deleted {
			t.Errorf("site %s: refused from a %+v, want the 3 writes, the last a delete of %d", s, fw, deleted)
		}
	}

	// cairn accounts status: every connection runs, the refusals show on
	// b's and c's connection from a, and the diff names a's rewritten row.
	st := accounts.Check(ctx, spec, reader)
	for _, c := range st.Connections {
		want := int64(0)
		if c.Peer == "a" {
			want = 3
		}
		if !c.Running || c.ForeignWrites == nil || c.ForeignWrites.Count != want {
			t.Errorf("%s from %s: running %v, refused %+v, want %d", c.Site, c.Peer, c.Running, c.ForeignWrites, want)
		}
	}
	if !mismatched(st, rewritten) {
		t.Errorf("status does not show a's rewritten account %d as differing: %+v", rewritten, st.Mismatches)
	}
	for _, ss := range st.Sites {
		if ss.Guard != "" {
			t.Errorf("site %s: %s", ss.Site, ss.Guard)
		}
	}
	// The controller's probe: what cairn_accounts_foreign_writes_total
	// exports.
	r := healthcheck.ProbeReplication(ctx, &healthcheck.Target{Site: "b", Replication: reader,
		ReplicationPeers: []accounts.Peer{{Name: "a", Domain: int64(spec.Sites[0].SerialPrefix.Value())}, {Name: "c", Domain: int64(spec.Sites[2].SerialPrefix.Value())}}})
	if !r.OK || r.Facts[healthcheck.FactForeignWrites+"a"] != "3" || r.Facts[healthcheck.FactForeignWrites+"c"] != "0" {
		t.Errorf("replication probe of b: ok %v, failed %+v, facts %v", r.OK, r.FailedStep(), r.Facts)
	}

	// The monitor user: its password alone, or with another certificate
	// of the database CA, is refused; with its own certificate it gets in.
	adminCert, err := tls.LoadX509KeyPair(site.AdminTLSFiles(spec))
	if err != nil {
		t.Fatal(err)
	}
	monitorCert, err := tls.LoadX509KeyPair(site.MonitorTLSFiles(spec))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		certs  []tls.Certificate
		denied bool
	}{{"no client certificate", nil, true}, {"the admin's certificate", []tls.Certificate{adminCert}, true}, {"its own certificate", []tls.Certificate{monitorCert}, false}} {
		err := pingAsMonitor(ctx, t, spec, tc.certs)
		var me *mysql.MySQLError
		switch {
		case tc.denied && !(errors.As(err, &me) && me.Number == 1045):
			t.Errorf("monitor with %s: %v, want access denied (1045)", tc.name, err)
		case !tc.denied && err != nil:
			t.Errorf("monitor with %s: %v", tc.name, err)
		}
	}
}

// accountsOf is the site's accounts by ID.
func accountsOf(t *testing.T, r accounts.Reader, siteName string) map[int64]accounts.Account {
	t.Helper()
	raw, err := r.Read(context.Background(), siteName)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]accounts.Account{}
	for _, a := range raw.Accounts {
		out[a.ID] = a
	}
	return out
}

func mismatched(st *accounts.Status, id int64) bool {
	for _, m := range st.Mismatches {
		if m.ID == id {
			return true
		}
	}
	return false
}

// pingAsMonitor logs in to site a's database as the monitor user with its
// password, over TLS verified against the database CA, presenting certs.
func pingAsMonitor(ctx context.Context, t *testing.T, spec *cluster.Spec, certs []tls.Certificate) error {
	t.Helper()
	pw, err := fsutil.ReadSecret(spec.Path(site.MonitorPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(site.DBCAFile(spec))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	p, err := site.NewPlan(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(p.ReplicationAddr())
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.Timeout = site.MonitorUser, pw, "tcp", p.ReplicationAddr(), 5*time.Second
	cfg.TLS = &tls.Config{RootCAs: roots, ServerName: host, Certificates: certs, MinVersion: tls.VersionTLS12}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return db.PingContext(ctx)
}
