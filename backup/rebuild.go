package backup

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
)

// Host is a lost site's new host as a rebuild drives it (the lab's site,
// a provisioned host).
type Host interface {
	// Prepare renders the site's bundle.
	Prepare(ctx context.Context) error
	// Stop stops whatever of the site runs, keeping it stopped until
	// StartDatabase and Start.
	Stop(ctx context.Context) error
	// HasDatabase reports whether the site's datadir holds a database.
	HasDatabase() bool
	// Restore puts a backup (hostrun.BackupDB's format) into the empty
	// datadir and returns the backup's binary log GTID position.
	Restore(ctx context.Context, r io.Reader) (gtid string, err error)
	// StartDatabase starts the site's MariaDB alone, with its users and
	// replication connections applied.
	StartDatabase(ctx context.Context) error
	// SQL runs statements as the site's local administrator (not written
	// to the binary log) and returns the output (tab-separated, no
	// column names).
	SQL(ctx context.Context, statements string) ([]byte, error)
	// Start starts the rest of the site and publishes its CRLs (a shard
	// its crl-updater holds already is published by it: Rebuild waits
	// for it).
	Start(ctx context.Context) error
}

// Rebuild is `cairn site rebuild`: a site whose host and disk are gone,
// brought back on a new host from the store (docs/backup.md).
type Rebuild struct {
	Spec  *cluster.Spec
	Site  string
	Store Store
	Host  Host
	// Peers opens an administrator connection to a site's database
	// (accounts.Admin); the accounts seed uses it for every site.
	Peers func(site string) (*sql.DB, error)
	// Restored tells the failover controller the site was restored, so it
	// applies its journal's revocations and key blocks there again (nil:
	// no controller).
	Restored func(ctx context.Context, site string) error
	Log      io.Writer

	// crlPoll and crlWait pace and bound the wait for the site's CRLs
	// after Start (zero: every 2 s, up to CRLWait).
	crlPoll, crlWait time.Duration
}

// CRLWait bounds how long a rebuild waits, once the site runs, for its
// crl-updater to publish every archived shard anew: a shard it held when
// the start-up run asked for it is out within its update timeout
// (site.CRLUpdateTimeout, a minute) and one more try.
const CRLWait = 150 * time.Second

// Report is what a rebuild did.
type Report struct {
	Site         string        `json:"site"`
	Backup       Manifest      `json:"backup"`
	BackupAge    time.Duration `json:"backupAgeNs"`
	RestoreTime  time.Duration `json:"restoreNs"`
	GTID         string        `json:"ownBinlogGTID"` // the site's binary log continues after it
	CRLSerials   int           `json:"crlSerials"`    // revoked serials in the archived CRLs
	Reapplied    int           `json:"reapplied"`     // of those, revocations the backup lacked
	Accounts     int           `json:"accountsCopied"`
	CRLsAfter    time.Duration `json:"crlsPublishedAfterStartNs"` // every archived shard published anew: time since Start began
	Total        time.Duration `json:"totalNs"`
	NotifiedCtrl bool          `json:"controllerNotified"`
}

func (rb *Rebuild) logf(format string, args ...any) {
	if rb.Log != nil {
		fmt.Fprintf(rb.Log, format+"\n", args...)
	}
}

// Run rebuilds the site. It refuses, before touching anything, a site
// with no backup, and a host whose datadir still holds a database.
func (rb *Rebuild) Run(ctx context.Context, force bool) (*Report, error) {
	start := time.Now()
	s, ok := rb.Spec.SiteByName(rb.Site)
	if !ok {
		return nil, fmt.Errorf("no site %q in the spec", cluster.Excerpt(rb.Site))
	}
	m, err := rb.Store.Latest(rb.Site)
	if errors.Is(err, ErrNoBackup) {
		return nil, fmt.Errorf("%w: a site without a backup cannot be rebuilt; revoke its issuers (cairn pki revoke-site %s) and give it a new generation (docs/backup.md, \"No backup\")", err, rb.Site)
	}
	if err != nil {
		return nil, err
	}
	rep := &Report{Site: rb.Site, Backup: m, BackupAge: time.Since(m.Taken)}
	rb.logf("rebuilding site %s from the backup of %s (%s old, %d bytes)", rb.Site, m.Taken.Format(time.RFC3339), rep.BackupAge.Round(time.Second), m.Bytes)
	if err := rb.Host.Prepare(ctx); err != nil {
		return nil, err
	}
	if rb.Host.HasDatabase() && !force {
		return nil, fmt.Errorf("site %s still has a database: a rebuild replaces a lost one (--force stops the site, moves this one aside and restores)", rb.Site)
	}
	if err := rb.Host.Stop(ctx); err != nil {
		return nil, err
	}
	f, err := os.Open(rb.Store.Path(m))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t0 := time.Now()
	gtid, err := rb.Host.Restore(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := rb.Host.StartDatabase(ctx); err != nil {
		return nil, err
	}
	rep.RestoreTime = time.Since(t0)
	rb.logf("  restored the database in %.1fs", rep.RestoreTime.Seconds())
	domain := int64(s.SerialPrefix.Value())
	if rep.GTID, err = rb.continueBinlog(ctx, domain, gtid); err != nil {
		return nil, err
	}
	rb.logf("  its binary log continues after %s (what its peers applied)", rep.GTID)
	crls, err := rb.Store.CRLs(rb.Site)
	if err != nil {
		return nil, err
	}
	revoked := revocations(crls)
	rep.CRLSerials = len(revoked)
	if rep.Reapplied, err = rb.reapply(ctx, revoked); err != nil {
		return nil, err
	}
	rb.logf("  %d revoked serials in its archived CRLs; %d were not revoked in the backup and are again", rep.CRLSerials, rep.Reapplied)
	seed, err := accounts.Seed(ctx, rb.Spec, rb.Peers, rb.Log)
	if err != nil {
		return nil, fmt.Errorf("accounts seed: %w", err)
	}
	for _, p := range seed.Pairs {
		if p.Replica == rb.Site {
			rep.Accounts += p.Copied
		}
	}
	startedAt := time.Now()
	if err := rb.Host.Start(ctx); err != nil {
		return nil, err
	}
	if rb.Restored != nil {
		if err := rb.Restored(ctx, rb.Site); err != nil {
			return rep, fmt.Errorf("site %s runs again, but the controller was not told to apply its journaled revocations there again (POST /api/restored?site=%s with the admin token once it answers): %w", rb.Site, rb.Site, err)
		}
		rep.NotifiedCtrl = true
	}
	if rep.CRLsAfter, err = rb.waitCRLs(ctx, crls, startedAt); err != nil {
		return rep, err
	}
	rb.logf("  every archived CRL shard published anew %.1fs after the start of the site began", rep.CRLsAfter.Seconds())
	rep.Total = time.Since(start)
	rb.logf("site %s rebuilt in %.1fs; the controller admits it like any returning site", rb.Site, rep.Total.Seconds())
	return rep, nil
}

// crlShardsSQL lists the site's CRL shards: issuer name ID, index and
// when each was last published (UTC; "-" for never).
const crlShardsSQL = "SELECT issuerID, idx, IFNULL(DATE_FORMAT(thisUpdate, '%Y-%m-%d %H:%i:%s'), '-') FROM boulder_sa.crlShards;"

// waitCRLs waits until the site's crl-updater has published every
// archived shard anew: its row's thisUpdate (Boulder numbers a CRL with
// it) after the archived CRL's, so relying parties get no CRL numbered
// before the one they saw before the loss, and every revocation re-applied
// is listed. It returns how long after started that took.
func (rb *Rebuild) waitCRLs(ctx context.Context, crls []ArchivedCRL, started time.Time) (time.Duration, error) {
	if len(crls) == 0 {
		return 0, nil
	}
	poll, wait := cmp.Or(rb.crlPoll, 2*time.Second), cmp.Or(rb.crlWait, CRLWait)
	deadline := time.Now().Add(wait)
	for {
		out, err := rb.Host.SQL(ctx, crlShardsSQL)
		var stale []string
		if err == nil {
			stale, err = staleShards(out, crls)
		}
		if err == nil && len(stale) == 0 {
			return time.Since(started), nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			if err != nil {
				return 0, fmt.Errorf("site %s runs again, but its CRL shards could not be read: %w", rb.Site, err)
			}
			return 0, fmt.Errorf("site %s runs again, but after %s its crl-updater has not published %d archived CRL shard(s) anew (%s): relying parties get the CRLs of its restored store until it does; see its crl-updater's log (docs/backup.md)",
				rb.Site, wait, len(stale), strings.Join(stale[:min(len(stale), 3)], ", "))
		}
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
}

// staleShards names the archived shards ("issuer/shard") whose row in
// out (crlShardsSQL's) is missing or not newer than the archived CRL.
func staleShards(out []byte, crls []ArchivedCRL) ([]string, error) {
	published := map[[2]int64]time.Time{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		bad := fmt.Errorf("crlShards row %q: want issuer, index and thisUpdate", cluster.Excerpt(line))
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, bad
		}
		if f[2] == "-" { // never published
			continue
		}
		issuer, err1 := strconv.ParseInt(f[0], 10, 64)
		idx, err2 := strconv.ParseInt(f[1], 10, 64)
		at, err3 := time.Parse(time.DateTime, f[2])
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, bad
		}
		published[[2]int64{issuer, idx}] = at
	}
	var stale []string
	for _, c := range crls {
		if at, ok := published[[2]int64{c.IssuerID, int64(c.Shard)}]; !ok || !at.After(c.CRL.ThisUpdate.UTC().Truncate(time.Second)) {
			stale = append(stale, fmt.Sprintf("%d/%d", c.IssuerID, c.Shard))
		}
	}
	return stale, nil
}

var gtidTriple = regexp.MustCompile(`^([0-9]+)-([0-9]+)-([0-9]+)$`)

// seqOf is the sequence number of domain's GTID in a position list.
func seqOf(pos string, domain int64) (server, seq int64, ok bool) {
	for _, t := range strings.Split(pos, ",") {
		m := gtidTriple.FindStringSubmatch(strings.TrimSpace(t))
		if m == nil {
			continue
		}
		if d, _ := strconv.ParseInt(m[1], 10, 64); d == domain {
			server, _ = strconv.ParseInt(m[2], 10, 64)
			seq, _ = strconv.ParseInt(m[3], 10, 64)
			return server, seq, true
		}
	}
	return 0, 0, false
}

// continueBinlog starts the restored site's binary log where its peers
// stand: its own GTID domain continues after the highest sequence number
// any peer applied from it (events after the backup included), so peers
// resume replicating from it (gtid_strict_mode) and nothing it writes
// reuses a number they saw.
func (rb *Rebuild) continueBinlog(ctx context.Context, domain int64, backupPos string) (string, error) {
	server, seq, _ := seqOf(backupPos, domain)
	if server == 0 {
		server = domain
	}
	for _, p := range rb.Spec.Sites {
		if p.Name == rb.Site {
			continue
		}
		db, err := rb.Peers(p.Name)
		if err != nil {
			return "", fmt.Errorf("peer %s: %w", p.Name, err)
		}
		var pos string
		err = db.QueryRowContext(ctx, "SELECT @@gtid_slave_pos").Scan(&pos)
		db.Close()
		if err != nil {
			return "", fmt.Errorf("peer %s: read its replication position: %w (every peer must answer during a rebuild)", p.Name, err)
		}
		if sv, n, ok := seqOf(pos, domain); ok && n > seq {
			server, seq = sv, n
		}
	}
	gtid := fmt.Sprintf("%d-%d-%d", domain, server, seq)
	if seq == 0 {
		return "(none)", nil
	}
	_, err := rb.Host.SQL(ctx, "STOP ALL SLAVES; RESET MASTER; SET GLOBAL gtid_binlog_state = '"+gtid+"'; START ALL SLAVES;")
	return gtid, err
}

// reapply revokes again, in the restored database, every serial of the
// archived CRLs it does not hold as revoked, with the CRL's date and
// reason: the certificate's status row (when the backup has the
// certificate) and the CRL row the crl-updater reads (always, so a
// certificate issued after the backup stays in the CRL). It returns how
// many it changed.
func (rb *Rebuild) reapply(ctx context.Context, revoked []Revoked) (int, error) {
	if len(revoked) == 0 {
		return 0, nil
	}
	fallback := time.Now().Add(rb.maxValidity()).Add(time.Hour).Truncate(time.Hour)
	out, err := rb.Host.SQL(ctx, ReapplySQL(revoked, fallback))
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		return 0, fmt.Errorf("reapplying revocations: no count in the output %q", cluster.Excerpt(string(out)))
	}
	return strconv.Atoi(fields[len(fields)-1])
}

// maxValidity is the longest certificate lifetime of the cluster's
// profiles: the CRL keeps a serial whose expiry the backup does not know
// until then.
func (rb *Rebuild) maxValidity() time.Duration {
	v := 90 * 24 * time.Hour
	for _, p := range rb.Spec.Profiles {
		v = max(v, p.Validity.Duration)
	}
	return v
}

// ReapplySQL is the statements that make every serial of revoked revoked
// in a site's database (one transaction), then print how many serials
// they changed.
func ReapplySQL(revoked []Revoked, fallbackNotAfterHour time.Time) string {
	var b strings.Builder
	b.WriteString("SET @changed = 0;\nSTART TRANSACTION;\n")
	for _, r := range revoked {
		// Every value is digits or hex (Revocations formats them).
		date := r.RevokedAt.UTC().Format("2006-01-02 15:04:05")
		fmt.Fprintf(&b, "SET @had = (SELECT COUNT(*) FROM boulder_sa.revokedCertificates WHERE serial = '%s');\n", r.Serial)
		fmt.Fprintf(&b, "UPDATE boulder_sa.certificateStatus SET status = 'revoked', revokedReason = %d, revokedDate = '%s', ocspLastUpdated = '%s' WHERE serial = '%s' AND status <> 'revoked';\n",
			r.Reason, date, date, r.Serial)
		fmt.Fprintf(&b, "INSERT INTO boulder_sa.revokedCertificates (issuerID, serial, notAfterHour, shardIdx, revokedDate, revokedReason) "+
			"SELECT %d, '%s', COALESCE((SELECT DATE_ADD(DATE_FORMAT(expires, '%%Y-%%m-%%d %%H:00:00'), INTERVAL 1 HOUR) FROM boulder_sa.serials WHERE serial = '%s'), '%s'), %d, '%s', %d FROM DUAL WHERE @had = 0;\n",
			r.IssuerID, r.Serial, r.Serial, fallbackNotAfterHour.UTC().Format("2006-01-02 15:04:05"), r.Shard, date, r.Reason)
		b.WriteString("SET @changed = @changed + IF(@had = 0, 1, 0);\n")
	}
	b.WriteString("COMMIT;\nSELECT @changed;\n")
	return b.String()
}
