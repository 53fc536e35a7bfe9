package accounts_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/lab"
)

// A 2-site lab runs without replication and each site gets accounts of its
// own; replication is switched on, the lab re-rendered, and cairn accounts
// seed (binary logs on, copy, positions) makes every account usable at
// both sites; new accounts then flow by replication, and a second seed
// changes nothing.
func TestSeed(t *testing.T) {
	spec := labtest.SpecWith(t, labtest.BlockAccounts, "accounts:\n  replication: off\n", "a", "b")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	register := registrar(t, spec)
	before := []int64{register("a"), register("a"), register("b")}
	reader, err := accounts.NewMariaDB(spec)
	if err != nil {
		t.Fatal(err)
	}
	if has(t, reader, "b", before[0]) {
		t.Fatal("replication off, yet b has a's account")
	}

	// EAB rows that exist at a alone (replication off): a key with a
	// scope and an account bound to it, a revoked key.
	open, err := accounts.Admin(spec)
	if err != nil {
		t.Fatal(err)
	}
	eab := eabRows{t: t, l: l, spec: spec, e: &accounts.EAB{Spec: spec, Open: open, Log: labtest.Log{T: t}, Wait: time.Second}}
	scoped := eab.create("seed-scoped", "scoped."+spec.ACME.Zone)
	bound := eab.register("a", scoped, nil)
	revoked := eab.create("seed-revoked")
	if _, err := eab.e.Revoke(ctx, "a", revoked.KID); err != nil {
		t.Fatal(err)
	}
	for _, q := range eab.queries(scoped, revoked, bound) {
		if n := eab.count("b", q); n != 0 {
			t.Fatalf("replication off, yet b has %d rows of %s", n, q)
		}
	}

	spec.Accounts.Replication = cluster.ReplicationMariaDB
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil { // re-renders my.cnf and the connections
		t.Fatal(err)
	}
	// lab up restarts each database whose my.cnf changed (binary log on);
	// EnableBinlogs restarts any that still runs without it.
	if restarted, err := l.EnableBinlogs(ctx); err != nil {
		t.Fatalf("binary logs: restarted %v, %v", restarted, err)
	}
	for _, s := range spec.Sites {
		if on, err := l.BinlogOn(ctx, s.Name); err != nil || !on {
			t.Fatalf("site %s: binary log on %v (%v) after lab up with replication on", s.Name, on, err)
		}
	}
	rep, err := accounts.Seed(ctx, spec, open, labtest.Log{T: t})
	if err != nil {
		t.Fatal(err)
	}
	copied := 0
	for _, p := range rep.Pairs {
		copied += p.Copied
	}
	if copied < len(before) {
		t.Errorf("seed copied %d rows, want at least the %d accounts made before", copied, len(before))
	}
	for _, id := range before {
		for _, s := range []string{"a", "b"} {
			if !has(t, reader, s, id) {
				t.Errorf("after the seed, site %s lacks account %d", s, id)
			}
		}
	}
	// The EAB rows came along: at b the scoped key registers a new account
	// (its HMAC key verifies there), the account bound at a is held to the
	// key's scope, and the revoked key is refused.
	eabCopied := 0
	for _, p := range rep.Pairs {
		eabCopied += p.EABCopied
	}
	for _, q := range eab.queries(scoped, revoked, bound) {
		if n := eab.count("b", q); n != 1 {
			t.Errorf("after the seed b has %d rows of %s, want 1", n, q)
		}
	}
	if eabCopied < 4 {
		t.Errorf("seed copied %d EAB rows, want at least the 4 made at a (2 keys, a revocation, a binding)", eabCopied)
	}
	eab.register("b", scoped, nil)
	eab.register("b", revoked, errRevoked)
	eab.outOfScope("b", bound, scoped)

	// New accounts flow by replication now.
	id := register("b")
	waitFor(t, func() bool { return has(t, reader, "a", id) }, "account %d made at b to reach a", id)
	st := accounts.Check(ctx, spec, reader)
	if !st.OK {
		t.Errorf("status after the seed: %v", st.Problems)
	}
	// Again: nothing to copy, replication still runs.
	rep, err = accounts.Seed(ctx, spec, open, labtest.Log{T: t})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Pairs {
		if p.Copied != 0 || p.Updated != 0 || p.EABCopied != 0 {
			t.Errorf("second seed changed rows: %+v", p)
		}
	}
	id = register("a")
	waitFor(t, func() bool { return has(t, reader, "b", id) }, "account %d made at a to reach b after a second seed", id)
}

// registrar registers a new account at a site of spec over ACME and
// returns its ID.
func registrar(t *testing.T, spec *cluster.Spec) func(siteName string) int64 {
	targets, err := healthcheck.SiteTargets(spec)
	if err != nil {
		t.Fatal(err)
	}
	return func(siteName string) int64 {
		t.Helper()
		for _, tg := range targets {
			if tg.Site == siteName {
				id, err := registerNew(context.Background(), tg.Roots, tg.DialAddr, tg.ServerName, tg.DirectoryURL)
				if err != nil {
					t.Fatal(err)
				}
				return id
			}
		}
		t.Fatalf("no site %s", siteName)
		return 0
	}
}

func registerNew(ctx context.Context, roots *x509.CertPool, dial, serverName, dir string) (int64, error) {
	c, err := acmeclient.New(acmeclient.Options{DirectoryURL: dir, Roots: roots, ServerName: serverName, DialAddr: dial, Timeout: 10 * time.Second})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	acct, err := c.Register(ctx)
	if err != nil {
		return 0, err
	}
	return accountID(acct.URI)
}

func has(t *testing.T, r accounts.Reader, siteName string, id int64) bool {
	t.Helper()
	raw, err := r.Read(context.Background(), siteName)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(raw.Accounts, func(a accounts.Account) bool { return a.ID == id })
}

func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
	}
}
func accountID(uri string) (int64, error) { return strconv.ParseInt(path.Base(uri), 10, 64) }

// eabRows makes and checks EAB rows of TestSeed's lab.
type eabRows struct {
	t    *testing.T
	l    *lab.Lab
	spec *cluster.Spec
	e    *accounts.EAB
}

var errRevoked = errors.New("revoked")

// create makes a key at site a only.
func (r eabRows) create(label string, scope ...string) *accounts.EABKey {
	r.t.Helper()
	k, err := r.e.Create(context.Background(), "a", label, scope)
	if err != nil {
		r.t.Fatal(err)
	}
	return k
}

// bound is an account registered with a binding.
type bound struct {
	id  int64
	key *ecdsa.PrivateKey
}

// client is an ACME client of siteName with key.
func (r eabRows) client(siteName string, key *ecdsa.PrivateKey, k *accounts.EABKey) *acmeclient.Client {
	r.t.Helper()
	targets, err := healthcheck.SiteTargets(r.spec)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Site == siteName {
			o := acmeclient.Options{DirectoryURL: tg.DirectoryURL, Roots: tg.Roots, ServerName: tg.ServerName, DialAddr: tg.DialAddr, Key: key, Timeout: 10 * time.Second}
			if k != nil {
				secret, _ := base64.RawURLEncoding.DecodeString(k.HMAC)
				o.EAB = &acme.ExternalAccountBinding{KID: k.KID, Key: secret}
			}
			c, err := acmeclient.New(o)
			if err != nil {
				r.t.Fatal(err)
			}
			r.t.Cleanup(c.Close)
			return c
		}
	}
	r.t.Fatalf("no site %s", siteName)
	return nil
}

// register registers a new account at siteName with key k: it must
// succeed (want nil) or be refused naming want.
func (r eabRows) register(siteName string, k *accounts.EABKey, want error) bound {
	r.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		r.t.Fatal(err)
	}
	acct, err := r.client(siteName, key, k).Register(context.Background())
	switch {
	case want == nil && err != nil:
		r.t.Fatalf("site %s: register with %s: %v", siteName, k.KID, err)
	case want != nil && (err == nil || !strings.Contains(err.Error(), want.Error())):
		r.t.Errorf("site %s: register with %s: %v, want a refusal naming %q", siteName, k.KID, err, want)
	}
	if err != nil {
		return bound{}
	}
	id, _ := accountID(acct.URI)
	return bound{id: id, key: key}
}

// outOfScope: b's order for a name outside its key's scope is refused
// there, naming the scope.
func (r eabRows) outOfScope(siteName string, b bound, k *accounts.EABKey) {
	r.t.Helper()
	_, err := r.client(siteName, b.key, nil).ACME().AuthorizeOrder(context.Background(), acme.DomainIDs("other."+r.spec.ACME.Zone))
	var ae *acme.Error
	if !errors.As(err, &ae) || !strings.HasSuffix(ae.ProblemType, "rejectedIdentifier") || !strings.Contains(ae.Detail, k.Scope[0]) {
		r.t.Errorf("site %s: account %d (key %s) ordered outside its scope: %v", siteName, b.id, k.KID, err)
	}
}

// queries count the rows of the keys, the revocation and the binding.
func (r eabRows) queries(scoped, revoked *accounts.EABKey, b bound) []string {
	return []string{
		"SELECT COUNT(*) FROM cairn.eab_keys WHERE kid = '" + scoped.KID + "' AND hmac_key IS NOT NULL",
		"SELECT COUNT(*) FROM cairn.eab_keys WHERE kid = '" + revoked.KID + "'",
		"SELECT COUNT(*) FROM cairn.eab_revocations WHERE kid = '" + revoked.KID + "'",
		fmt.Sprintf("SELECT COUNT(*) FROM cairn.eab_bindings WHERE account_id = %d AND kid = '%s'", b.id, scoped.KID),
	}
}

func (r eabRows) count(siteName, q string) int {
	r.t.Helper()
	out, err := r.l.SiteSQL(context.Background(), siteName, q)
	if err != nil {
		r.t.Fatalf("site %s: %s: %v", siteName, q, err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}
