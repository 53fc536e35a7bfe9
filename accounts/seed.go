package accounts

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// ErrBinlogOff: a site's MariaDB still runs without its binary log (it was
// started before replication was switched on): restart it with the
// rendered my.cnf, then seed again.
var ErrBinlogOff = errors.New("binary log off")

// SeedPair is what seeding one replica from one source did.
type SeedPair struct {
	Replica  string `json:"replica"`
	Source   string `json:"source"`
	Copied   int    `json:"copied"`    // rows the replica did not have
	Updated  int    `json:"updated"`   // rows of the source's own accounts that differed (the origin wins; a deactivation is kept)
	Conflict int    `json:"conflicts"` // rows left out: the replica holds the key under another ID
	// EABCopied: rows of the EAB tables (keys, revocations, bindings) the
	// replica did not have; without them it would refuse every account
	// bound to a key it lacks.
	EABCopied int    `json:"eabCopied"`
	Position  string `json:"position"` // the source's GTID the replica continues from
}

// SeedReport is the whole seed.
type SeedReport struct {
	Pairs []SeedPair `json:"pairs"`
}

// Admin opens an administrator connection to each site's database: the
// admin user over TLS with the client certificate of the machine that
// renders the sites.
func Admin(spec *cluster.Spec) (func(site string) (*sql.DB, error), error) {
	m, err := NewMariaDB(spec)
	if err != nil {
		return nil, err
	}
	pw, err := fsutil.ReadSecret(spec.Path(site.AdminPasswordFile))
	if err != nil {
		return nil, fmt.Errorf("admin password: %w", err)
	}
	certFile, keyFile := site.AdminTLSFiles(spec)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("admin client certificate: %w (render the sites on this machine first)", err)
	}
	return func(siteName string) (*sql.DB, error) {
		return m.connect(siteName, site.AdminUser, pw, []tls.Certificate{cert}, 30*time.Second)
	}, nil
}

type row struct {
	id                     int64
	jwk                    []byte
	sha, agreement, status string
	createdAt              time.Time
}

// Seed brings account replication up on a cluster that ran without it, or
// back after a peer was gone longer than the binary logs are kept, or a
// site was restored from a backup. For every site R and every peer S:
// stop R's connections, read S's current GTID position in its own domain,
// copy every account S has that R lacks (INSERT IGNORE, not logged), let
// S's own accounts that differ at R take S's values (a deactivation is
// never undone), set R's position for S's domain to what was read, and
// start R's connections. What S writes after the position was read is
// replicated (and skipped where the copy already brought it), so Seed is
// idempotent and safe to re-run. Every site's binary log must be on and
// its connections must exist (the rendered db-replication.sql).
func Seed(ctx context.Context, spec *cluster.Spec, open func(string) (*sql.DB, error), log io.Writer) (*SeedReport, error) {
	if spec.Accounts.Replication != cluster.ReplicationMariaDB {
		return nil, errors.New("accounts.replication is off in the spec: set it to mariadb, render the sites (cairn lab up / cairn provision apply), then seed")
	}
	sd := &seeder{spec: spec, dbs: map[string]*sql.DB{}, prefix: map[string]int64{}, log: log}
	defer sd.close()
	if err := sd.check(ctx, open); err != nil {
		return nil, err
	}
	rep := &SeedReport{}
	for _, r := range spec.Sites {
		if err := sd.seedReplica(ctx, r.Name, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// seeder is one Seed: the sites' databases and GTID domains (their serial
// prefixes).
type seeder struct {
	spec   *cluster.Spec
	dbs    map[string]*sql.DB
	prefix map[string]int64
	log    io.Writer
}

func (sd *seeder) close() {
	for _, db := range sd.dbs {
		db.Close()
	}
}

// check opens every site's database and checks that it can be seeded:
// it answers, its binary log is on and it has a replication connection
// from every peer. The error names every problem.
func (sd *seeder) check(ctx context.Context, open func(string) (*sql.DB, error)) error {
	var problems []error
	for _, s := range sd.spec.Sites {
		sd.prefix[s.Name] = int64(s.SerialPrefix.Value())
		problems = append(problems, sd.checkSite(ctx, s.Name, open)...)
	}
	return errors.Join(problems...)
}

// checkSite opens one site's database (kept in sd.dbs once it answers)
// and returns its problems.
func (sd *seeder) checkSite(ctx context.Context, name string, open func(string) (*sql.DB, error)) []error {
	db, err := open(name)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		return []error{fmt.Errorf("site %s: %w", name, err)}
	}
	sd.dbs[name] = db
	var logBin int
	if err := db.QueryRowContext(ctx, "SELECT @@log_bin").Scan(&logBin); err != nil {
		return []error{fmt.Errorf("site %s: %w", name, err)}
	}
	if logBin != 1 {
		return []error{fmt.Errorf("site %s: %w: restart its MariaDB with the rendered my.cnf", name, ErrBinlogOff)}
	}
	conns, err := slaves(ctx, db)
	if err != nil {
		return []error{fmt.Errorf("site %s: %w", name, err)}
	}
	var problems []error
	for _, peer := range sd.spec.Sites {
		if _, ok := (Raw{Connections: conns}).Connection(peer.Name); peer.Name != name && !ok {
			problems = append(problems, fmt.Errorf("site %s: no replication connection from %s: restart its database so db-replication.sql is applied", name, peer.Name))
		}
	}
	return problems
}

// seedReplica stops replica r's connections, seeds it from every peer,
// sets its position for each peer's domain and starts its connections.
func (sd *seeder) seedReplica(ctx context.Context, r string, rep *SeedReport) error {
	rdb := sd.dbs[r]
	pos, err := sd.stop(ctx, r)
	if err != nil {
		return err
	}
	for _, src := range sd.spec.Sites {
		if src.Name == r {
			continue
		}
		pair, err := seedPair(ctx, sd.dbs[src.Name], rdb, src.Name, r, sd.prefix[src.Name])
		if err != nil {
			return fmt.Errorf("seed %s from %s: %w", r, src.Name, err)
		}
		if pair.Position != "" {
			pos[sd.prefix[src.Name]] = pair.Position
		}
		rep.Pairs = append(rep.Pairs, pair)
		fmt.Fprintf(sd.log, "  %s from %s: %d copied, %d updated, %d conflicts, %d EAB rows copied; continues after %s\n", r, src.Name, pair.Copied, pair.Updated, pair.Conflict, pair.EABCopied, orNone(pair.Position))
	}
	return sd.start(ctx, r, pos)
}

// stop stops replica r's connections and returns its current position by
// domain.
func (sd *seeder) stop(ctx context.Context, r string) (map[int64]string, error) {
	rdb := sd.dbs[r]
	if _, err := rdb.ExecContext(ctx, "STOP ALL SLAVES"); err != nil {
		return nil, fmt.Errorf("site %s: STOP ALL SLAVES: %w", r, err)
	}
	var slavePos string
	if err := rdb.QueryRowContext(ctx, "SELECT @@gtid_slave_pos").Scan(&slavePos); err != nil {
		return nil, err
	}
	pos := gtidTriples(slavePos)
	// gtid_strict_mode: the position must name the site's own domain
	// as far as its binary log goes.
	var own string
	if err := rdb.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&own); err != nil {
		return nil, err
	}
	if t, ok := gtidTriples(own)[sd.prefix[r]]; ok {
		pos[sd.prefix[r]] = t
	}
	return pos, nil
}

// start sets replica r's position and starts its connections. The site
// keeps serving meanwhile: its own domain's position is read again right
// before it is set (gtid_strict_mode refuses one behind the binary log),
// and once more if the site wrote in between.
func (sd *seeder) start(ctx context.Context, r string, pos map[int64]string) error {
	rdb := sd.dbs[r]
	var err error
	for range 3 {
		var own string
		if err = rdb.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&own); err != nil {
			return err
		}
		if t, ok := gtidTriples(own)[sd.prefix[r]]; ok {
			pos[sd.prefix[r]] = t
		}
		var parts []string
		for _, t := range pos {
			parts = append(parts, t)
		}
		// Every part came from gtidTriples (digits and dashes only).
		if _, err = rdb.ExecContext(ctx, "SET GLOBAL gtid_slave_pos = '"+strings.Join(parts, ",")+"'"); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("site %s: set gtid_slave_pos: %w", r, err)
	}
	if _, err := rdb.ExecContext(ctx, "START ALL SLAVES"); err != nil {
		return fmt.Errorf("site %s: START ALL SLAVES: %w", r, err)
	}
	return nil
}

func seedPair(ctx context.Context, sdb, rdb *sql.DB, source, replica string, domain int64) (SeedPair, error) {
	pair := SeedPair{Replica: replica, Source: source}
	var binlogPos string
	if err := sdb.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&binlogPos); err != nil {
		return pair, err
	}
	pair.Position = gtidTriples(binlogPos)[domain]
	srcRows, err := readRows(ctx, sdb)
	if err != nil {
		return pair, err
	}
	have, err := readRows(ctx, rdb)
	if err != nil {
		return pair, err
	}
	byID := map[int64]row{}
	byKey := map[string]int64{}
	for _, h := range have {
		byID[h.id] = h
		byKey[h.sha] = h.id
	}
	if _, err := rdb.ExecContext(ctx, "SET SESSION sql_log_bin = 0"); err != nil {
		return pair, err
	}
	for _, s := range srcRows {
		h, ok := byID[s.id]
		switch {
		case !ok:
			if id, taken := byKey[s.sha]; taken && id != s.id {
				pair.Conflict++ // the replica's own row for this key wins there
				continue
			}
			res, err := rdb.ExecContext(ctx, "INSERT IGNORE INTO "+site.ReplicatedTable+" (id, jwk, jwk_sha256, agreement, createdAt, status) VALUES (?, ?, ?, ?, ?, ?)",
				s.id, s.jwk, s.sha, s.agreement, s.createdAt, s.status)
			if err != nil {
				return pair, err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				pair.Copied++
			}
		case int64(site.AccountIDSite(s.id)) == domain && (h.sha != s.sha || (h.status == "valid" && s.status != "valid")):
			// The source is this account's origin: its key (a rollover) and
			// a status that left valid win.
			status := s.status
			if h.status != "valid" {
				status = h.status
			}
			if id, taken := byKey[s.sha]; taken && id != s.id {
				pair.Conflict++
				continue
			}
			if _, err := rdb.ExecContext(ctx, "UPDATE "+site.ReplicatedTable+" SET jwk = ?, jwk_sha256 = ?, status = ? WHERE id = ?", s.jwk, s.sha, status, s.id); err != nil {
				return pair, err
			}
			pair.Updated++
		}
	}
	n, err := seedEAB(ctx, sdb, rdb)
	pair.EABCopied = n
	return pair, err
}

// eabTables are the EAB tables a seed copies: each row is identified by
// its origin column and never changes (docs/authority.md), so a row the
// replica lacks is copied as it is. A key the replica holds under another
// ID (made at every site while replication was off) is left alone.
var eabTables = []struct{ table, id, cols string }{
	{site.EABKeysTable, "id", "id, kid, hmac_key, label, scope, created_at"},
	{site.EABRevocationsTable, "id", "id, kid, revoked_at"},
	{site.EABBindingsTable, "account_id", "account_id, kid, bound_at"},
}

// seedEAB copies the EAB rows the source has and the replica lacks, on
// the replica's session (binary log off), and returns how many.
func seedEAB(ctx context.Context, sdb, rdb *sql.DB) (int, error) {
	copied := 0
	for _, t := range eabTables {
		have := map[string]bool{}
		rows, err := rdb.QueryContext(ctx, "SELECT "+t.id+" FROM "+t.table)
		if err != nil {
			return copied, fmt.Errorf("%s: %w", t.table, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return copied, err
			}
			have[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return copied, err
		}
		cols := strings.Split(t.cols, ", ")
		src, err := sdb.QueryContext(ctx, "SELECT "+t.cols+" FROM "+t.table+" ORDER BY "+t.id)
		if err != nil {
			return copied, fmt.Errorf("%s: %w", t.table, err)
		}
		var missing [][]any
		for src.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := src.Scan(ptrs...); err != nil {
				src.Close()
				return copied, err
			}
			if !have[fmt.Sprint(asString(vals[0]))] {
				missing = append(missing, vals)
			}
		}
		src.Close()
		if err := src.Err(); err != nil {
			return copied, err
		}
		insert := "INSERT IGNORE INTO " + t.table + " (" + t.cols + ") VALUES (?" + strings.Repeat(", ?", len(cols)-1) + ")"
		for _, vals := range missing {
			res, err := rdb.ExecContext(ctx, insert, vals...)
			if err != nil {
				return copied, fmt.Errorf("%s: %w", t.table, err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				copied++
			}
		}
	}
	return copied, nil
}

// asString is a scanned column as text (the driver gives bytes or int64).
func asString(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

func readRows(ctx context.Context, db *sql.DB) ([]row, error) {
	rows, err := db.QueryContext(ctx, "SELECT id, jwk, jwk_sha256, agreement, createdAt, status FROM "+site.ReplicatedTable+" ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		var created []byte
		if err := rows.Scan(&r.id, &r.jwk, &r.sha, &r.agreement, &created, &r.status); err != nil {
			return nil, err
		}
		r.createdAt, err = time.Parse(time.DateTime, string(created))
		if err != nil {
			return nil, fmt.Errorf("account %d: createdAt %q: %w", r.id, created, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// gtidTriples splits a GTID position into its "domain-server-seq" parts
// by domain.
func gtidTriples(pos string) map[int64]string {
	out := map[int64]string{}
	for _, part := range strings.Split(pos, ",") {
		part = strings.TrimSpace(part)
		var d, srv, n int64
		if _, err := fmt.Sscanf(part, "%d-%d-%d", &d, &srv, &n); err == nil {
			out[d] = part
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "the start of its binary log"
	}
	return s
}
