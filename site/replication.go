package site

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Account replication (docs/accounts.md): every site's MariaDB pulls the
// boulder_sa.registrations table, and only it, from every peer with
// MariaDB's multi-source, asynchronous, row-based, GTID replication. Each
// site keeps writing alone when every peer is gone.
//
//   - Each site is its own GTID domain and server ID (its serial prefix),
//     and account IDs are congruent to the prefix mod 128, so two sites
//     never write the same ID.
//   - Per-connection replicate_do_table filters sit in my.cnf, so no
//     connection ever runs without its filter.
//   - slave_skip_errors=1062,1032: a duplicate row (a re-applied event, or
//     the same key registered at two sites during a partition) is skipped
//     and counted; the row the site already has wins. Replication never
//     stalls on it.
//   - A site applies a peer's account row only if its ID is in that peer's
//     range (ownershipGuardSQL): triggers on the accounts table, run for
//     replicated rows too (slave_run_triggers_for_rbr=ENFORCE), refuse
//     any other row with ForeignWriteErrno, which slave_skip_errors skips,
//     and count it in ForeignWritesTable.
//   - Each replica authenticates with a password and its certificate from
//     the cluster's database CA (REQUIRE SUBJECT and ISSUER), and verifies
//     the source's certificate and address against that CA. The database
//     CA is cairn's own (software key in secrets/db-ca, 0600, on the
//     machine that renders): the infrastructure intermediate made by
//     Boulder's ceremony is limited to serverAuth, and replicas need
//     clientAuth certificates.

// ReplicatedTable is Boulder's accounts table, the only Boulder table
// sites exchange (with cairn's EAB tables: ReplicatedTables).
const ReplicatedTable = "boulder_sa.registrations"

// MonitorUser reads replication status and account rows (cairn accounts
// status, the controller's accounts probe): TLS with a client certificate
// of the database CA (MonitorTLSFiles) and a password.
const MonitorUser = "cairn_monitor"

// MonitorCertCN is the monitor client certificate's common name.
const MonitorCertCN = "cairn-monitor"

// MonitorCertDir holds the monitor client's cert.pem and key.pem (0600),
// relative to the spec; the controllers get a copy.
const MonitorCertDir = DBCADir + "/" + MonitorCertCN

// MonitorTLSFiles are the monitor client's certificate and key.
func MonitorTLSFiles(spec *cluster.Spec) (cert, key string) {
	return dbClientFiles(spec, MonitorCertCN)
}

// ForeignWritesTable counts, per peer (its GTID domain, which is its
// serial prefix), the replicated account rows this site refused because
// their ID is not in that peer's range: domain_id, n, last_id, last_op,
// last_at (UTC).
const ForeignWritesTable = "cairn.foreign_writes"

// ForeignWriteErrno is the error the ownership triggers raise for a
// refused row (ER_SIGNAL_EXCEPTION); slave_skip_errors lists it, so the
// replica skips the row and keeps applying the peer's others.
const ForeignWriteErrno = 1644

// ReplicaSkipErrors are the errors a replica skips (slave_skip_errors):
// a duplicate key (1062), a missing row (1032), a refused foreign row.
var ReplicaSkipErrors = []int{1062, 1032, ForeignWriteErrno}

// ReplicationPasswordFile is a replica site's password at every source,
// relative to the spec (the lab and `cairn provision` render every site
// from one spec, so both ends read the same file).
func ReplicationPasswordFile(site string) string {
	return cluster.DefaultSecretsDir + "/db-replication-" + site + ".pw"
}

// AdminUser copies accounts and sets replication positions (cairn
// accounts seed), from the machine that renders the sites: TLS with a
// client certificate only that machine holds (DBCADir/cairn-admin).
const AdminUser = "cairn_admin"

// AdminPasswordFile is the admin user's password, relative to the spec.
const AdminPasswordFile = cluster.DefaultSecretsDir + "/db-admin.pw"

// AdminCertCN is the admin client certificate's common name.
const AdminCertCN = "cairn-admin"

// AdminTLSFiles are the admin client's certificate and key.
func AdminTLSFiles(spec *cluster.Spec) (cert, key string) { return dbClientFiles(spec, AdminCertCN) }

// dbClientFiles are the certificate and key of a client of the database CA.
func dbClientFiles(spec *cluster.Spec, cn string) (cert, key string) {
	dir := spec.Path(DBCADir + "/" + cn)
	return filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
}

// MonitorPasswordFile is the monitor user's password, relative to the spec.
const MonitorPasswordFile = cluster.DefaultSecretsDir + "/db-monitor.pw"

// DBCADir holds the database CA (key 0600) and every site's database
// certificate, relative to the spec.
const DBCADir = cluster.DefaultSecretsDir + "/db-ca"

// DBCAFile is the database CA certificate: what cairn's monitor trusts.
func DBCAFile(spec *cluster.Spec) string { return spec.Path(DBCADir + "/ca.pem") }

// ConnectionName is the replication connection a site uses for a peer
// (MariaDB folds '-' and '_' in option names, so only '_' is used).
func ConnectionName(peer string) string { return strings.ReplaceAll(peer, "-", "_") }

// replicaUser is the user a replica site logs in as at its sources.
func replicaUser(site string) string { return "repl_" + ConnectionName(site) }

// DBCertCN is the common name of a site's database certificate; it has no
// dot, so no ACME order can ever name it.
func DBCertCN(site string) string { return "cairn-db-" + site }

// ReplicationAddr is where peers reach a site's database: its public
// address (the database also listens there; firewall it to peers).
func (p *Plan) ReplicationAddr() string { return Addr(p.Public, PortDB) }

// Replicating says whether this site exchanges accounts with peers.
func (p *Plan) Replicating() bool {
	return p.Spec.Accounts.Replication == cluster.ReplicationMariaDB && len(p.Spec.Sites) > 1
}

// peers are the plans of every other site.
func (p *Plan) peers() ([]*Plan, error) {
	var out []*Plan
	for j := range p.Spec.Sites {
		if j == p.Index {
			continue
		}
		q, err := NewPlan(p.Spec, j)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

// replicationCnf is the my.cnf part that makes the site a replication
// source (binary log) and a replica of every peer (filters).
func replicationCnf(p *Plan, varDir string, peers []*Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Account replication (docs/accounts.md): this site is GTID domain %[1]d.
server_id=%[1]d
gtid_domain_id=%[1]d
gtid_strict_mode=ON
log_bin=%[2]s/mysql/binlog/boulder
binlog_format=ROW
binlog_row_image=MINIMAL
log_slave_updates=OFF
sync_binlog=1
binlog_expire_logs_seconds=%[3]d
slave_net_timeout=30
master_retry_count=1000000
# Refused foreign rows (%[4]d) are skipped like conflicts; the ownership
# triggers run for replicated rows whatever the peer's events claim.
slave_skip_errors=%[5]s
slave_run_triggers_for_rbr=ENFORCE
`, p.Site.SerialPrefix.Value(), varDir, int64(p.Spec.Accounts.BinlogRetention.Seconds()), ForeignWriteErrno, joinInts(ReplicaSkipErrors))
	// One line per table: the option file takes no comma-separated list
	// (it would read as one table whose name holds commas).
	for _, q := range peers {
		for _, t := range ReplicatedTables {
			fmt.Fprintf(&b, "%s.replicate_do_table=%s\n", ConnectionName(q.Site.Name), t.Table)
		}
	}
	return b.String()
}

// replicaHosts are the addresses a replica site connects from: its public
// address, and 127.0.0.1 when that is a loopback address (the kernel picks
// 127.0.0.1 as the source on lo).
func replicaHosts(q *Plan) []string {
	hosts := []string{q.Public.String()}
	if q.Public.IsLoopback() && q.Public.String() != "127.0.0.1" {
		hosts = append(hosts, "127.0.0.1")
	}
	return hosts
}

// replicationSQL creates the users peers and cairn log in as, then points
// one connection at every peer and starts them. It is run on every start,
// as the local administrator over the socket, with sql_log_bin=0.
func replicationSQL(p *Plan, peers []*Plan, root, issuerDN, ownPW string, peerPW map[string]string, monitorPW, adminPW, frontPW string) string {
	var b strings.Builder
	b.WriteString("-- Rendered by cairn: account replication (docs/accounts.md). Secret: 0600.\n")
	user := func(name, host, pw, require, grant string) {
		fmt.Fprintf(&b, "CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s' REQUIRE %s;\n", name, host, pw, require)
		fmt.Fprintf(&b, "ALTER USER '%s'@'%s' IDENTIFIED BY '%s' REQUIRE %s;\n", name, host, pw, require)
		fmt.Fprintf(&b, "GRANT %s TO '%s'@'%s';\n", grant, name, host)
	}
	b.WriteString(ownershipGuardSQL())
	user(MonitorUser, "%", monitorPW, fmt.Sprintf("SUBJECT '/CN=%s' AND ISSUER '%s'", MonitorCertCN, issuerDN),
		"SLAVE MONITOR, BINLOG MONITOR ON *.*")
	fmt.Fprintf(&b, "GRANT SELECT ON %s TO '%s'@'%%';\n", ReplicatedTable, MonitorUser)
	fmt.Fprintf(&b, "GRANT SELECT ON %s TO '%s'@'%%';\n", ForeignWritesTable, MonitorUser)
	user(AdminUser, "%", adminPW, fmt.Sprintf("SUBJECT '/CN=%s' AND ISSUER '%s'", AdminCertCN, issuerDN),
		"REPLICATION SLAVE ADMIN, SLAVE MONITOR, BINLOG MONITOR, BINLOG ADMIN ON *.*")
	fmt.Fprintf(&b, "GRANT SELECT, INSERT, UPDATE ON %s TO '%s'@'%%';\n", ReplicatedTable, AdminUser)
	b.WriteString(eabGrantsSQL(p, frontPW))
	if !p.Replicating() {
		return b.String()
	}
	for _, q := range peers {
		require := fmt.Sprintf("SUBJECT '/CN=%s' AND ISSUER '%s'", DBCertCN(q.Site.Name), issuerDN)
		for _, h := range replicaHosts(q) {
			user(replicaUser(q.Site.Name), h, peerPW[q.Site.Name], require, "REPLICATION SLAVE ON *.*")
		}
	}
	// CHANGE MASTER needs its connection stopped; STOP ALL SLAVES also
	// works when none exists yet. Positions survive (gtid_slave_pos).
	b.WriteString("STOP ALL SLAVES;\n")
	for _, q := range peers {
		host, port, _ := net.SplitHostPort(q.ReplicationAddr())
		fmt.Fprintf(&b, "CHANGE MASTER '%s' TO MASTER_HOST='%s', MASTER_PORT=%s, MASTER_USER='%s', MASTER_PASSWORD='%s', "+
			"MASTER_SSL=1, MASTER_SSL_CA='%s', MASTER_SSL_CERT='%s', MASTER_SSL_KEY='%s', MASTER_SSL_VERIFY_SERVER_CERT=1, "+
			"MASTER_USE_GTID=slave_pos, DO_DOMAIN_IDS=(%d), MASTER_CONNECT_RETRY=10;\n",
			ConnectionName(q.Site.Name), host, port, replicaUser(p.Site.Name), ownPW,
			filepath.Join(root, "tls", "db-ca.pem"), filepath.Join(root, "tls", "db.pem"), filepath.Join(root, "tls", "db.key"),
			q.Site.SerialPrefix.Value())
	}
	b.WriteString("START ALL SLAVES;\n")
	return b.String()
}

// ownershipGuardSQL makes the site refuse a peer's account row whose ID
// is not in that peer's range (docs/accounts.md, "Only owned rows").
//
// The replication SQL thread runs each peer transaction with the session
// gtid_domain_id of its GTID, and each connection takes only its peer's
// domain (DO_DOMAIN_IDS, checked by cairn accounts status), so inside a
// trigger the session domain names the peer the row came from; a local
// session (Boulder, cairn accounts seed) has the site's own domain. The
// domain is the peer's serial prefix, and its account IDs are the prefix
// mod 128. A refused row is counted, then raises ForeignWriteErrno: the
// replica skips that row (slave_skip_errors) and goes on with the peer's
// next ones. The count is kept: a skipped row's error is cleared, not
// rolled back. The applier's writes are not binary-logged
// (log_slave_updates=OFF), so the count stays at this site.
func ownershipGuardSQL() string {
	var b strings.Builder
	fmt.Fprintf(&b, `CREATE DATABASE IF NOT EXISTS cairn;
CREATE TABLE IF NOT EXISTS %[1]s (
  domain_id INT UNSIGNED NOT NULL PRIMARY KEY,
  n BIGINT UNSIGNED NOT NULL,
  last_id BIGINT NOT NULL,
  last_op VARCHAR(6) NOT NULL,
  last_at DATETIME NOT NULL
) ENGINE=InnoDB;
ALTER TABLE %[1]s ADD COLUMN IF NOT EXISTS last_table VARCHAR(64) NOT NULL DEFAULT '%[3]s';
%[4]sDELIMITER //
CREATE OR REPLACE PROCEDURE cairn.refuse_foreign_write(IN tbl VARCHAR(64), IN row_id BIGINT, IN op VARCHAR(6))
BEGIN
  INSERT INTO %[1]s (domain_id, n, last_id, last_op, last_at, last_table)
    VALUES (@@session.gtid_domain_id, 1, row_id, op, UTC_TIMESTAMP(), tbl)
    ON DUPLICATE KEY UPDATE n = n + 1, last_id = VALUES(last_id), last_op = VALUES(last_op), last_at = VALUES(last_at), last_table = VALUES(last_table);
  SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = %[2]d,
    MESSAGE_TEXT = 'cairn: refused a replicated row outside its origin''s ID range (docs/accounts.md)';
END//
`, ForeignWritesTable, ForeignWriteErrno, ReplicatedTable, eabSchemaSQL())
	peer := "@@session.gtid_domain_id <> @@global.gtid_domain_id"
	// Parenthesised: under sql_mode HIGH_NOT_PRECEDENCE, NOT binds tighter
	// than =.
	owned := func(id string) string {
		return fmt.Sprintf("(%s %% %d = @@session.gtid_domain_id)", id, accountIDRange)
	}
	for _, t := range ReplicatedTables {
		schema, table, _ := strings.Cut(t.Table, ".") // a trigger lives in its table's schema
		prefix := "cairn_owned_"                      // the accounts table's triggers keep their first names
		if t.Table != ReplicatedTable {
			prefix = table + "_owned_"
		}
		newID, oldID := "NEW."+t.OwnerColumn, "OLD."+t.OwnerColumn
		for _, tr := range []struct{ op, cond, id string }{
			{"insert", "NOT " + owned(newID), newID},
			{"update", fmt.Sprintf("NOT (%s AND %s)", owned(oldID), owned(newID)), oldID},
			{"delete", "NOT " + owned(oldID), oldID},
		} {
			fmt.Fprintf(&b, "CREATE OR REPLACE TRIGGER %[1]s.%[2]s%[3]s BEFORE %[4]s ON %[5]s FOR EACH ROW\n"+
				"  IF %[6]s AND %[7]s THEN CALL cairn.refuse_foreign_write('%[5]s', %[8]s, '%[3]s'); END IF//\n",
				schema, prefix, tr.op, strings.ToUpper(tr.op), t.Table, peer, tr.cond, tr.id)
		}
	}
	b.WriteString("DELIMITER ;\n")
	return b.String()
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// opensslDN formats a name as OpenSSL's X509_NAME_oneline does, which is
// what MariaDB compares REQUIRE SUBJECT and ISSUER with.
func opensslDN(n pkix.Name) string {
	short := map[string]string{"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU"}
	var b strings.Builder
	for _, rdn := range n.ToRDNSequence() {
		for _, atv := range rdn {
			k, ok := short[atv.Type.String()]
			if !ok {
				k = atv.Type.String()
			}
			fmt.Fprintf(&b, "/%s=%v", k, atv.Value)
		}
	}
	return b.String()
}

// replication renders the database certificate, the peers' filters and
// the replication SQL. It returns the my.cnf addition.
func (r *renderer) replication(ctx context.Context) (string, error) {
	p := r.p
	// The database's certificate: server (peers and cairn connect to it)
	// and client (it connects to its peers).
	ca, err := loadOrCreateIPKI(r.o.Spec.Path(DBCADir), p.Spec.Name+" database replication CA", r.o.Now)
	if err != nil {
		return "", fmt.Errorf("database CA: %w", err)
	}
	// MariaDB reads its certificate at start only and an upgrade does not
	// restart it for a renewed one: its certificates keep a long life.
	ca.validity = 825 * 24 * time.Hour
	cn := DBCertCN(p.Site.Name)
	if err := ca.leaf(cn, nil, []net.IP{p.Public.AsSlice(), p.DB.AsSlice()}); err != nil {
		return "", err
	}
	if err := ca.leaf(AdminCertCN, nil, nil); err != nil { // stays on this machine
		return "", err
	}
	if err := ca.leaf(MonitorCertCN, nil, nil); err != nil { // here and at the controllers
		return "", err
	}
	// tls/ is traversable (0755): on systemd hosts MariaDB runs as mysql,
	// which then owns tls/db.key (0600; `cairn site step db-init`).
	if err := os.MkdirAll(r.out("tls"), 0o755); err != nil {
		return "", err
	}
	for _, f := range []struct {
		src, dst string
		secret   bool
	}{{ca.caFile(), "tls/db-ca.pem", false}, {ca.certFile(cn), "tls/db.pem", false}, {ca.keyFile(cn), "tls/db.key", true}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return "", err
		}
		if err := r.write(f.dst, b, f.secret); err != nil {
			return "", err
		}
	}
	peers, err := p.peers()
	if err != nil {
		return "", err
	}
	secret := func(rel string) (string, error) { return fsutil.EnsureSecret(r.o.Spec.Path(rel), 18) }
	monitorPW, err := secret(MonitorPasswordFile)
	if err != nil {
		return "", err
	}
	adminPW, err := secret(AdminPasswordFile)
	if err != nil {
		return "", err
	}
	ownPW, err := secret(ReplicationPasswordFile(p.Site.Name))
	if err != nil {
		return "", err
	}
	peerPW := map[string]string{}
	for _, q := range peers {
		if peerPW[q.Site.Name], err = secret(ReplicationPasswordFile(q.Site.Name)); err != nil {
			return "", err
		}
	}
	frontPW, err := r.secret(frontPasswordSecret, 18)
	if err != nil {
		return "", err
	}
	sql := replicationSQL(p, peers, r.o.Root, opensslDN(ca.cert.Subject), ownPW, peerPW, monitorPW, adminPW, frontPW)
	if err := r.write("secrets/db-replication.sql", []byte(sql), true); err != nil {
		return "", err
	}
	if !p.Replicating() {
		return "", nil
	}
	return replicationCnf(p, r.varDir, peers), nil
}

// connections are the names of the site's replication connections.
func (r *renderer) connections() []string {
	if !r.p.Replicating() {
		return nil
	}
	var out []string
	for _, s := range r.p.Spec.Sites {
		if s.Name != r.p.Site.Name {
			out = append(out, ConnectionName(s.Name))
		}
	}
	return out
}
