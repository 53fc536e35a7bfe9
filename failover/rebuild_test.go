package failover_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/lab"
	"github.com/cairn-pki/cairn/revocation"
)

// rebuildLostSite is the last part of TestLabRevokesAtADeadSite: site b's
// host and disk are lost after a backup and rebuilt from it (issue 25,
// item 5). What happened after the backup must survive: a certificate of
// the backup revoked later through the controller, a certificate issued
// and revoked through ACME after the backup, an account registered after
// it; serials, account IDs and CRL numbers never go back.
func rebuildLostSite(t *testing.T, l *lab.Lab, spec *cluster.Spec, sum *lab.Summary, revokedBefore []string) {
	ctx := context.Background()
	cairn := func(args ...string) (string, error) {
		out, err := exec.Command(l.Cairn, append([]string{"-f", spec.File}, args...)...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := cairn(args...)
		if err != nil {
			t.Fatalf("cairn %v: %v\n%s", args, err, out)
		}
		return out
	}
	keepFile := issueAt(t, spec, sum, 1) // in the backup, revoked after it
	out := must("backup", "now", "b")
	t.Logf("backup: %s", strings.TrimSpace(out))
	store := backup.Store{Dir: spec.Path(spec.Backup.Dir)}
	m, err := store.Latest("b")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(store.Path(m)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file %s: %v, mode %v (want 0600)", m.File, err, fi.Mode().Perm())
	}

	// After the backup: a revocation through the controller of a
	// certificate the backup holds, a new account, and a certificate
	// issued and revoked through ACME that the backup never saw.
	keep := revocation.Serial(labtest.ReadCert(t, keepFile))
	must("revoke", "--serial", keep, "--reason", "superseded")
	c := goClientAt(t, spec, sum, 1)
	acct, err := c.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chain, key, _, err := c.Issue(ctx, []string{"after-backup." + spec.ACME.Zone})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ACME().RevokeCert(ctx, key, chain[0], acme.CRLReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	late := revocation.Serial(labtest.ParseCert(t, chain[0]))
	revoked := append(slices.Clone(revokedBefore), keep, late)
	if err := l.UpdateCRLs(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the controller's archive of b's CRLs with every revoked serial", 90*time.Second, func() bool {
		rs, err := store.Revocations("b")
		if err != nil {
			t.Fatal(err)
		}
		return !slices.ContainsFunc(revoked, func(s string) bool {
			return !slices.ContainsFunc(rs, func(r backup.Revoked) bool { return r.Serial == s })
		})
	})
	before := crlNumbers(t, store, "b")

	// b's host and disk are gone.
	if err := l.DestroySite("b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b down at the controller", 60*time.Second, func() bool { return status(t, spec).Sites[1].State != "healthy" })
	// Started empty it would give out account IDs its peers hold: lab up
	// refuses and says what to do.
	if _, err := l.Up(ctx, lab.UpOptions{}); err == nil || !strings.Contains(err.Error(), "cairn site rebuild b") {
		t.Errorf("lab up with b's database gone and a backup of it: %v", err)
	}
	start := time.Now()
	out = must("site", "rebuild", "b")
	t.Logf("cairn site rebuild b (%.1f s): %s", time.Since(start).Seconds(), strings.TrimSpace(out))
	if out, err := cairn("site", "rebuild", "b"); err == nil || !strings.Contains(out, "still has a database") {
		t.Errorf("a second rebuild over the restored database: %v %s", err, out)
	}

	// Every revocation is in b's published CRLs, each CRL numbered
	// after the one before the loss, as soon as the rebuild returns (it
	// waits for the shards its new crl-updater held to be published).
	targets, err := healthcheck.SiteTargets(spec)
	if err != nil {
		t.Fatal(err)
	}
	crls, err := healthcheck.SiteCRLs(ctx, targets[1])
	if err != nil {
		t.Fatalf("b's CRLs right after the rebuild: %v", err)
	}
	listed := map[string]bool{}
	for _, crl := range crls {
		if old, ok := before[path.Base(path.Dir(crl.URL))+"/"+path.Base(crl.URL)]; ok && crl.CRL.Number.Cmp(old) <= 0 {
			t.Errorf("%s: CRL number %s right after the rebuild, %s before: it went back", crl.URL, crl.CRL.Number, old)
		}
		for _, e := range crl.CRL.RevokedCertificateEntries {
			listed[fmt.Sprintf("%036x", e.SerialNumber)] = true
		}
	}
	for _, s := range revoked {
		if !listed[s] {
			t.Errorf("serial %s, revoked before the loss, is not in b's CRLs right after the rebuild", s)
		}
	}

	// The account made after the backup is there, under its URL; a new
	// one takes a new ID; a new certificate a new serial.
	c2 := goClientAt(t, spec, sum, 1)
	if got, err := c.ACME().GetReg(ctx, ""); err != nil || got.URI != acct.URI {
		t.Errorf("the account registered after the backup, at the rebuilt b: %v %+v, want %s", err, got, acct.URI)
	}
	acct2, err := c2.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if accountID(t, acct2.URI) <= accountID(t, acct.URI) {
		t.Errorf("a new account at the rebuilt b got %s, not after %s: an account ID may be given twice", acct2.URI, acct.URI)
	}
	chain2, _, _, err := c2.Issue(ctx, []string{"after-rebuild." + spec.ACME.Zone})
	if err != nil {
		t.Fatal(err)
	}
	if s := revocation.Serial(labtest.ParseCert(t, chain2[0])); slices.Contains(revoked, s) {
		t.Errorf("the rebuilt b issued serial %s again", s)
	}
	if out, err := cairn("accounts", "status"); err != nil {
		t.Errorf("accounts status after the rebuild: %v\n%s", err, out)
	}
	// The controller applied its journal at b again and admits it.
	var entries []revocation.Entry
	waitFor(t, "b's journaled revocations in its CRLs again, b healthy and not blocked", 3*time.Minute, func() bool {
		out, err := cairn("-o", "json", "revoke", "status")
		if err != nil {
			return false
		}
		if err := json.Unmarshal([]byte(out), &entries); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Site == "b" && e.State() != "in-crl" {
				return false
			}
		}
		st := status(t, spec).Sites[1]
		return st.State == "healthy" && st.Blocked == ""
	})
	t.Logf("b rebuilt → healthy and unblocked %.1f s after the rebuild started; backup %d bytes taken in %.1f s", time.Since(start).Seconds(), m.Bytes, m.Seconds)
}

// crlNumbers is the CRL number of each archived shard of site, by
// "<issuer>/<shard>.crl".
func crlNumbers(t *testing.T, store backup.Store, site string) map[string]*big.Int {
	t.Helper()
	crls, err := store.CRLs(site)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*big.Int{}
	for _, c := range crls {
		out[strconv.FormatInt(c.IssuerID, 10)+"/"+strconv.Itoa(c.Shard)+".crl"] = c.CRL.Number
	}
	if len(out) == 0 {
		t.Fatal("no archived CRLs")
	}
	return out
}

// accountID is the number at the end of an account URL.
func accountID(t *testing.T, uri string) int64 {
	t.Helper()
	id, err := strconv.ParseInt(filepath.Base(uri), 10, 64)
	if err != nil {
		t.Fatalf("account URL %s: %v", uri, err)
	}
	return id
}
