package accounts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// MariaDB reads each site's database as the monitor user, over TLS to the
// site's replication address, verified against the cluster's database CA,
// with the monitor's client certificate of that CA.
type MariaDB struct {
	addrs    map[string]string // site -> host:port
	password string
	roots    *x509.CertPool
	cert     tls.Certificate // the monitor's
}

// NewMariaDB reads the monitor password, its client certificate and the
// database CA of the spec.
func NewMariaDB(spec *cluster.Spec) (*MariaDB, error) {
	pw, err := fsutil.ReadSecret(spec.Path(site.MonitorPasswordFile))
	if err != nil {
		return nil, fmt.Errorf("monitor password: %w (render the sites first: `cairn lab up` or `cairn provision apply`)", err)
	}
	caPEM, err := os.ReadFile(site.DBCAFile(spec))
	if err != nil {
		return nil, fmt.Errorf("database CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", site.DBCAFile(spec))
	}
	certFile, keyFile := site.MonitorTLSFiles(spec)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("monitor client certificate: %w (render the sites first: `cairn lab up` or `cairn provision apply`)", err)
	}
	m := &MariaDB{addrs: map[string]string{}, password: pw, roots: roots, cert: cert}
	for i, s := range spec.Sites {
		p, err := site.NewPlan(spec, i)
		if err != nil {
			return nil, err
		}
		m.addrs[s.Name] = p.ReplicationAddr()
	}
	return m, nil
}

// Open is a monitor session to the site's database (read-only: status and
// the accounts table).
func (m *MariaDB) Open(siteName string) (*sql.DB, error) {
	return m.connect(siteName, site.MonitorUser, m.password, []tls.Certificate{m.cert}, 5*time.Second)
}

// connect opens one session (MaxOpenConns 1: session settings such as
// sql_log_bin hold for every statement) to the site's database over TLS,
// its certificate verified against the database CA.
func (m *MariaDB) connect(siteName, user, password string, certs []tls.Certificate, timeout time.Duration) (*sql.DB, error) {
	addr, ok := m.addrs[siteName]
	if !ok {
		return nil, fmt.Errorf("no site %q in the spec", siteName)
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, password, "tcp", addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 3*time.Second, timeout, timeout
	cfg.TLS = &tls.Config{RootCAs: m.roots, ServerName: host, Certificates: certs, MinVersion: tls.VersionTLS12}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

// Read implements Reader.
func (m *MariaDB) Read(ctx context.Context, siteName string) (Raw, error) {
	var raw Raw
	db, err := m.Open(siteName)
	if err != nil {
		return raw, err
	}
	defer db.Close()
	if raw.Connections, err = slaves(ctx, db); err != nil {
		return raw, fmt.Errorf("SHOW ALL SLAVES STATUS: %w", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&raw.BinlogPos); err != nil {
		return raw, err
	}
	var name, val string
	if err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Slave_skipped_errors'").Scan(&name, &val); err == nil {
		raw.SkippedErrors, _ = strconv.ParseInt(val, 10, 64)
	}
	if err := db.QueryRowContext(ctx, "SELECT @@slave_run_triggers_for_rbr, @@slave_skip_errors").Scan(&raw.RunTriggersForRBR, &raw.SkipErrors); err != nil {
		return raw, err
	}
	if raw.ForeignWrites, err = foreignWrites(ctx, db); err != nil {
		raw.ForeignWritesErr = err.Error()
	}
	rows, err := db.QueryContext(ctx, "SELECT id, jwk_sha256, status FROM "+site.ReplicatedTable+" ORDER BY id")
	if err != nil {
		return raw, err
	}
	defer rows.Close()
	for rows.Next() {
		var a Account
		if err := rows.Scan(&a.ID, &a.KeySHA, &a.Status); err != nil {
			return raw, err
		}
		raw.Accounts = append(raw.Accounts, a)
	}
	return raw, rows.Err()
}

// foreignWrites reads the rows the site refused, by the peer's domain.
func foreignWrites(ctx context.Context, db *sql.DB) (map[int64]ForeignWrite, error) {
	rows, err := db.QueryContext(ctx, "SELECT domain_id, n, last_id, last_op, last_at, last_table FROM "+site.ForeignWritesTable)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]ForeignWrite{}
	for rows.Next() {
		var d int64
		var fw ForeignWrite
		var at []byte
		if err := rows.Scan(&d, &fw.Count, &fw.LastID, &fw.LastOp, &at, &fw.LastTable); err != nil {
			return nil, err
		}
		if t, err := time.Parse(time.DateTime, string(at)); err == nil {
			fw.LastAt = t.UTC()
		}
		out[d] = fw
	}
	return out, rows.Err()
}

// slaves reads SHOW ALL SLAVES STATUS by column name (its columns change
// between MariaDB versions).
func slaves(ctx context.Context, db *sql.DB) ([]Connection, error) {
	rows, err := db.QueryContext(ctx, "SHOW ALL SLAVES STATUS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []Connection
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		get := func(name string) (string, bool) {
			for i, c := range cols {
				if strings.EqualFold(c, name) {
					return vals[i].String, vals[i].Valid
				}
			}
			return "", false
		}
		c := Connection{}
		c.Name, _ = get("Connection_name")
		c.IORunning, _ = get("Slave_IO_Running")
		c.SQLRunning, _ = get("Slave_SQL_Running")
		c.LastIOError, _ = get("Last_IO_Error")
		c.LastSQLError, _ = get("Last_SQL_Error")
		c.DoTable, _ = get("Replicate_Do_Table")
		c.DoDomainIDs, _ = get("Replicate_Do_Domain_Ids")
		c.UsingGTID, _ = get("Using_Gtid")
		c.GTIDSlavePos, _ = get("Gtid_Slave_Pos")
		if v, ok := get("Seconds_Behind_Master"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				c.SecondsBehind = &n
			}
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
