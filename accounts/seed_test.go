package accounts_test

import (
	"context"
	"crypto/x509"
	"path"
	"slices"
	"strconv"
	"testing"
	"time"

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

	spec.Accounts.Replication = cluster.ReplicationMariaDB
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil { // re-renders my.cnf and the connections
		t.Fatal(err)
	}
	restarted, err := l.EnableBinlogs(ctx)
	if err != nil || len(restarted) != 2 {
		t.Fatalf("binary logs: restarted %v, %v", restarted, err)
	}
	open, err := accounts.Admin(spec)
	if err != nil {
		t.Fatal(err)
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
		if p.Copied != 0 || p.Updated != 0 {
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
