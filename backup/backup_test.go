package backup

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
)

func write(s string) func(context.Context, io.Writer) error {
	return func(_ context.Context, w io.Writer) error { _, err := io.WriteString(w, s); return err }
}

// A backup appears whole, 0600, with its manifest, or not at all.
func TestTakeIsWholeOrNothing(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	m, err := s.Take(context.Background(), "b", write("database"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path(m))
	if err != nil || fi.Mode().Perm() != 0o600 || m.Bytes != 8 {
		t.Fatalf("backup %+v: %v %v", m, fi, err)
	}
	failing := func(_ context.Context, w io.Writer) error {
		io.WriteString(w, "half a datab")
		return errors.New("agent: connection reset")
	}
	if _, err := s.Take(context.Background(), "b", failing); err == nil {
		t.Fatal("a failed fetch was taken")
	}
	if _, err := s.Take(context.Background(), "b", write("")); err == nil {
		t.Fatal("an empty backup was taken")
	}
	entries, _ := os.ReadDir(filepath.Join(s.Dir, "b"))
	if len(entries) != 2 {
		t.Errorf("after two failed takes the site's directory holds %d files, want the one backup and its manifest", len(entries))
	}
	if got, err := s.Latest("b"); err != nil || got.File != m.File {
		t.Errorf("latest: %+v %v", got, err)
	}
}

// Latest skips a damaged backup; Prune keeps the newest.
func TestLatestAndPrune(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	var ms []Manifest
	for i := range 4 {
		m, err := s.Take(context.Background(), "a", write("backup "+string(rune('0'+i))))
		if err != nil {
			t.Fatal(err)
		}
		// Distinct, ordered times (a fast machine takes two in one ms).
		m.Taken = now.Add(time.Duration(i) * time.Hour)
		rewriteManifest(t, s, m)
		ms = append(ms, m)
	}
	if _, err := s.Latest("c"); !errors.Is(err, ErrNoBackup) {
		t.Errorf("a site without backups: %v", err)
	}
	os.WriteFile(s.Path(ms[3]), []byte("backup X"), 0o600) // same size, other bytes
	got, err := s.Latest("a")
	if err != nil || got.File != ms[2].File {
		t.Errorf("latest with the newest damaged: %+v %v, want %s", got, err, ms[2].File)
	}
	if n, err := s.Prune("a", 2); err != nil || n != 2 {
		t.Fatalf("prune: %d %v", n, err)
	}
	left, _ := s.List("a")
	if len(left) != 2 || left[0].File != ms[3].File || left[1].File != ms[2].File {
		t.Errorf("after prune: %+v", left)
	}
	if _, err := os.Stat(s.Path(ms[0])); !os.IsNotExist(err) {
		t.Errorf("the oldest backup's file is still there: %v", err)
	}
}

func rewriteManifest(t *testing.T, s Store, m Manifest) {
	t.Helper()
	path := s.manifestPath(m)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("manifest of %s: %v", m.File, err)
	}
	b := []byte(`{"site":"` + m.Site + `","file":"` + m.File + `","taken":"` + m.Taken.Format(time.RFC3339Nano) + `","bytes":` +
		big.NewInt(m.Bytes).String() + `,"sha256":"` + m.SHA256 + `"}`)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func testCRL(t *testing.T, number int64, serials ...int64) ([]byte, *x509.RevocationList) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "b-e1"}, SubjectKeyId: []byte{1, 2, 3},
		KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, ca, ca, key.Public(), key)
	issuer, _ := x509.ParseCertificate(der)
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Unix(1_800_000_000, 0), ReasonCode: 1})
	}
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: time.Now(),
		NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := x509.ParseRevocationList(crlDER)
	return crlDER, crl
}

// The archive keeps the newest CRL of each shard and reads the issuer and
// shard from Boulder's URL; Revocations lists every serial.
func TestCRLArchive(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	const u = "http://crl.b.lab.home.arpa/crls/66208268261293133/2.crl"
	der5, crl5 := testCRL(t, 5, 0x02aa, 0x02bb)
	der4, crl4 := testCRL(t, 4, 0x02cc)
	if ok, err := s.ArchiveCRL("b", u, der5, crl5); !ok || err != nil {
		t.Fatalf("archive: %v %v", ok, err)
	}
	if ok, err := s.ArchiveCRL("b", u, der4, crl4); ok || err != nil {
		t.Errorf("an older CRL replaced a newer one: %v %v", ok, err)
	}
	if _, err := s.ArchiveCRL("b", "http://crl.b/whatever.crl", der5, crl5); err == nil || !strings.Contains(err.Error(), "<issuer ID>/<shard>.crl") {
		t.Errorf("a URL that is not Boulder's: %v", err)
	}
	rs, err := s.Revocations("b")
	if err != nil || len(rs) != 2 {
		t.Fatalf("revocations: %+v %v", rs, err)
	}
	want := Revoked{Serial: "0000000000000000000000000000000002aa", IssuerID: 66208268261293133, Shard: 2, RevokedAt: time.Unix(1_800_000_000, 0).UTC(), Reason: 1}
	if rs[0] != want {
		t.Errorf("first: %+v, want %+v", rs[0], want)
	}
	sql := ReapplySQL(rs, time.Date(2027, 3, 1, 5, 0, 0, 0, time.UTC))
	for _, w := range []string{"START TRANSACTION;", "WHERE serial = '0000000000000000000000000000000002aa' AND status <> 'revoked'",
		"SELECT 66208268261293133, '0000000000000000000000000000000002aa'", "'2027-03-01 05:00:00'), 2, '2027-01-15 08:00:00', 1", "COMMIT;\nSELECT @changed;"} {
		if !strings.Contains(sql, w) {
			t.Errorf("ReapplySQL lacks %q:\n%s", w, sql)
		}
	}
}

// fakeHost records what a rebuild asked of the site.
type fakeHost struct {
	calls []string
	hasDB bool
	// sqlOut answers SQL (nil: no output).
	sqlOut func(statements string) ([]byte, error)
}

func (h *fakeHost) note(s string)                       { h.calls = append(h.calls, s) }
func (h *fakeHost) Prepare(context.Context) error       { h.note("prepare"); return nil }
func (h *fakeHost) Stop(context.Context) error          { h.note("stop"); return nil }
func (h *fakeHost) HasDatabase() bool                   { return h.hasDB }
func (h *fakeHost) StartDatabase(context.Context) error { h.note("start-db"); return nil }
func (h *fakeHost) Start(context.Context) error         { h.note("start"); return nil }
func (h *fakeHost) Restore(context.Context, io.Reader) (string, error) {
	h.note("restore")
	return "", nil
}
func (h *fakeHost) SQL(_ context.Context, statements string) ([]byte, error) {
	h.note("sql")
	if h.sqlOut != nil {
		return h.sqlOut(statements)
	}
	return nil, nil
}

// After Start a rebuild waits until every archived shard's row says it
// was published after the archived CRL (a shard the new crl-updater
// held is published by it later); one still stale at the deadline, or
// missing, is an error naming it; an unreadable row names the row.
func TestRebuildWaitsForTheCRLs(t *testing.T) {
	_, crl := testCRL(t, 5)
	at := crl.ThisUpdate.UTC()
	crls := []ArchivedCRL{{IssuerID: 66208268261293133, Shard: 0, CRL: crl}, {IssuerID: 66208268261293133, Shard: 1, CRL: crl}}
	row := func(shard int, t time.Time) string {
		return fmt.Sprintf("66208268261293133\t%d\t%s\n", shard, t.Format(time.DateTime))
	}
	// Shard 1 is published on the third read; shard 0 on the first.
	reads := 0
	h := &fakeHost{sqlOut: func(q string) ([]byte, error) {
		if q != crlShardsSQL {
			t.Fatalf("SQL %q", q)
		}
		reads++
		one := at
		if reads >= 3 {
			one = at.Add(40 * time.Second)
		}
		return []byte(row(0, at.Add(30*time.Second)) + row(1, one) + "7\t0\t-\n"), nil
	}}
	rb := &Rebuild{Site: "b", Host: h, crlPoll: time.Millisecond, crlWait: time.Minute}
	if _, err := rb.waitCRLs(context.Background(), crls, time.Now()); err != nil || reads != 3 {
		t.Errorf("wait: %v after %d reads, want success on the third", err, reads)
	}
	// Never published again (the same second as the archived CRL is not
	// after it), or no row at all: an error naming the shard, once the
	// wait is over.
	for name, out := range map[string]string{"stale": row(0, at.Add(time.Second)) + row(1, at), "missing": row(0, at.Add(time.Second))} {
		h.sqlOut = func(string) ([]byte, error) { return []byte(out), nil }
		rb.crlWait = 20 * time.Millisecond
		_, err := rb.waitCRLs(context.Background(), crls, time.Now())
		if err == nil || !strings.Contains(err.Error(), "1 archived CRL shard(s) anew (66208268261293133/1)") || !strings.Contains(err.Error(), "site b runs again") {
			t.Errorf("%s: %v", name, err)
		}
	}
	h.sqlOut = func(string) ([]byte, error) { return []byte("66208268261293133\tx\n"), nil }
	if _, err := rb.waitCRLs(context.Background(), crls, time.Now()); err == nil || !strings.Contains(err.Error(), `crlShards row "66208268261293133\tx"`) {
		t.Errorf("an unreadable row: %v", err)
	}
	// No archived CRL: nothing to wait for.
	if _, err := rb.waitCRLs(context.Background(), nil, time.Now()); err != nil {
		t.Errorf("nothing archived: %v", err)
	}
}

// A rebuild refuses, before it stops anything, a site without a backup
// (with the way out) and a host that still has its database.
func TestRebuildRefuses(t *testing.T) {
	spec := &cluster.Spec{Sites: []cluster.Site{{Name: "a"}, {Name: "b"}}}
	s := Store{Dir: t.TempDir()}
	h := &fakeHost{}
	rb := &Rebuild{Spec: spec, Site: "b", Store: s, Host: h, Log: io.Discard}
	_, err := rb.Run(context.Background(), false)
	if !errors.Is(err, ErrNoBackup) || !strings.Contains(err.Error(), "cairn pki revoke-site b") {
		t.Errorf("no backup: %v", err)
	}
	if len(h.calls) != 0 {
		t.Errorf("without a backup the site was touched: %q", h.calls)
	}
	if _, err := s.Take(context.Background(), "b", write("x")); err != nil {
		t.Fatal(err)
	}
	h.hasDB = true
	if _, err := rb.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "still has a database") {
		t.Errorf("a host with its database: %v", err)
	}
	if strings.Join(h.calls, ",") != "prepare" {
		t.Errorf("a host with its database was touched: %q", h.calls)
	}
	rb.Site = "z"
	if _, err := rb.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), `no site "z"`) {
		t.Errorf("unknown site: %v", err)
	}
}

// The scheduler backs up what is due, only when leading, retries a
// failure after a growing pause, and keeps Keep backups.
func TestScheduler(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	leading, fail := true, false
	var taken []string
	sc := &Scheduler{Store: Store{Dir: t.TempDir()}, Sites: []string{"a", "b"}, Every: time.Hour, Keep: 2, CRLEvery: time.Minute,
		Leading: func() bool { return leading }, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
		Backup: func(_ context.Context, site string, w io.Writer) error {
			if fail {
				return errors.New("agent down")
			}
			taken = append(taken, site)
			_, err := io.WriteString(w, site+now.String())
			return err
		},
		CRLs: func(context.Context, string) ([]healthcheck.PublishedCRL, error) { return nil, nil }}
	step := func(d time.Duration) { now = now.Add(d); sc.Step(context.Background()) }
	step(0)
	if strings.Join(taken, ",") != "a,b" {
		t.Fatalf("first step took %q", taken)
	}
	step(30 * time.Minute)
	leading = false
	step(31 * time.Minute)
	if len(taken) != 2 {
		t.Errorf("took backups not due or not leading: %q", taken)
	}
	leading, fail = true, true
	step(time.Second) // both fail: retried after 30 s, then 60 s
	step(31 * time.Second)
	fail = false
	step(50 * time.Second)
	if len(taken) != 2 {
		t.Errorf("retried a failed backup before its backoff: %q", taken)
	}
	step(11 * time.Second)
	if strings.Join(taken, ",") != "a,b,a,b" {
		t.Errorf("after the backoff: %q", taken)
	}
	step(time.Hour + time.Second)
	if strings.Join(taken, ",") != "a,b,a,b,a,b" {
		t.Errorf("an hour later: %q", taken)
	}
	if l, _ := sc.Store.List("a"); len(l) != 2 {
		t.Errorf("kept %d backups of a, want 2", len(l))
	}
}

// A site with no backup yet (a new cluster, its agent not installed yet)
// is retried every 30 s, not after a growing pause: until its first
// backup it cannot be rebuilt.
func TestSchedulerRetriesAFirstBackupSoon(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	tries := 0
	sc := &Scheduler{Store: Store{Dir: t.TempDir()}, Sites: []string{"a"}, Every: time.Hour, Keep: 2, CRLEvery: time.Minute,
		Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
		Backup: func(_ context.Context, site string, w io.Writer) error {
			tries++
			return errors.New("agent: connection refused")
		},
		CRLs: func(context.Context, string) ([]healthcheck.PublishedCRL, error) { return nil, nil }}
	for range 10 { // 5 minutes in 30-s steps: a try at each
		sc.Step(context.Background())
		now = now.Add(30 * time.Second)
	}
	if tries != 10 {
		t.Errorf("%d tries in 5 minutes for a site without a backup, want 10 (every 30 s)", tries)
	}
}
