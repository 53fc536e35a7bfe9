package drill

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/internal/acmeclient"
)

// AccountsReport is what an accounts scenario saw (pass.accountsFlow).
type AccountsReport struct {
	// ConflictIDs: the one key registered at two sites while their
	// databases could not see each other, by site.
	ConflictIDs map[string]int64 `json:"conflictIDs,omitempty"`
	// ConflictReported: cairn accounts status lists that key under both IDs.
	ConflictReported bool `json:"conflictReported"`
	// SkippedRows: rows the sites skipped (the conflict's), all sites.
	SkippedRows        int64 `json:"skippedRows"`
	ConnectionsRunning bool  `json:"connectionsRunning"`
	// FlowSeconds: from registering a new account at the faulted site after
	// the restore until every site has it; null if it never arrived.
	FlowSeconds *float64 `json:"newAccountEverywhereSeconds"`
	Problems    []string `json:"statusProblems,omitempty"` // accounts status at the end
	// Missing: accounts some site still lacks at the end.
	Missing int      `json:"missing"`
	Errors  []string `json:"errors,omitempty"`
}

// siteClient is an ACME client of one site, addressed directly (not
// through the ACME name), with key as its account key (nil: a new one).
func (r *Runner) siteClient(w *workload, siteName string, key *ecdsa.PrivateKey) (*acmeclient.Client, error) {
	s, ok := r.spec.SiteByName(siteName)
	if !ok {
		return nil, fmt.Errorf("no site %q", siteName)
	}
	o := acmeclient.Options{
		DirectoryURL: "https://" + net.JoinHostPort(r.spec.ACME.Name, strconv.Itoa(r.spec.ACME.HTTPSPort)) + "/directory",
		Roots:        w.roots, ServerName: r.spec.ACME.Name, DNS: w.dnsUp,
		DialAddr: net.JoinHostPort(s.Address, strconv.Itoa(r.spec.ACME.HTTPSPort)), Timeout: 10 * time.Second}
	if key != nil {
		o.Key = key
	}
	return acmeclient.New(w.options(o))
}

// registerAt registers key at one site, addressed directly (not through
// the ACME name), and returns the account ID.
func (r *Runner) registerAt(ctx context.Context, w *workload, siteName string, key *ecdsa.PrivateKey) (int64, error) {
	c, err := r.siteClient(w, siteName, key)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	acct, err := c.Register(rctx)
	if err != nil {
		return 0, fmt.Errorf("register at %s: %w", siteName, err)
	}
	return strconv.ParseInt(path.Base(acct.URI), 10, 64)
}

// conflict registers one new key at the faulted site and at another one.
func (r *Runner) conflict(ctx context.Context, w *workload, rep *Report, target string) {
	other := ""
	for _, s := range r.spec.Sites {
		if s.Name != target {
			other = s.Name
			break
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil || other == "" {
		rep.Accounts.Errors = append(rep.Accounts.Errors, fmt.Sprintf("conflict: needs two sites and a key (%v)", err))
		return
	}
	ids := map[string]int64{}
	for _, s := range []string{target, other} {
		id, err := r.registerAt(ctx, w, s, key)
		if err != nil {
			rep.Accounts.Errors = append(rep.Accounts.Errors, "conflict: "+err.Error())
			return
		}
		ids[s] = id
		r.event("account-registered", s, fmt.Sprintf("account %d (one key at two sites)", id))
	}
	rep.Accounts.ConflictIDs = ids
}

// checkAccounts, after the restore: a new account made at the faulted site
// must reach every site, and the status must show the conflict and every
// connection running.
func (r *Runner) checkAccounts(ctx context.Context, w *workload, rep *Report, target string) {
	ar := &rep.Accounts
	reader, err := accounts.NewMariaDB(r.spec)
	if err != nil {
		ar.Errors = append(ar.Errors, err.Error())
		return
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ar.Errors = append(ar.Errors, err.Error())
		return
	}
	id, err := r.registerAt(ctx, w, target, key)
	if err != nil {
		ar.Errors = append(ar.Errors, "after the restore: "+err.Error())
		return
	}
	from := time.Now()
	r.event("account-registered", target, fmt.Sprintf("account %d (after the restore)", id))
	for deadline := from.Add(time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; sleepCtx(ctx, 250*time.Millisecond) {
		everywhere := true
		for _, s := range r.spec.Sites {
			raw, err := reader.Read(ctx, s.Name)
			if err != nil || !slices.ContainsFunc(raw.Accounts, func(a accounts.Account) bool { return a.ID == id }) {
				everywhere = false
				break
			}
		}
		if everywhere {
			ar.FlowSeconds = secs(from, time.Now())
			r.event("account-everywhere", "", fmt.Sprintf("account %d at every site", id))
			break
		}
	}
	st := accounts.Check(ctx, r.spec, reader)
	ar.Problems = st.Problems
	ar.Missing = len(st.Missing)
	ar.ConnectionsRunning = len(st.Connections) > 0
	for _, c := range st.Connections {
		ar.ConnectionsRunning = ar.ConnectionsRunning && c.Running && c.FilterOK
	}
	for _, s := range st.Sites {
		ar.SkippedRows += s.SkippedRows
	}
	for _, c := range st.Conflicts {
		found := 0
		for _, cid := range ar.ConflictIDs {
			for _, id := range c.IDs {
				if id == cid {
					found++
					break
				}
			}
		}
		if len(ar.ConflictIDs) > 0 && found == len(ar.ConflictIDs) {
			ar.ConflictReported = true
		}
	}
}

// judgeAccounts adds pass.accountsFlow's failures.
func (rep *Report) judgeAccounts(sc *Scenario, fail func(string, ...any)) {
	if !sc.Pass.AccountsFlow {
		return
	}
	ar := rep.Accounts
	for _, e := range ar.Errors {
		fail("accounts: %s", e)
	}
	if !ar.ConnectionsRunning {
		fail("accounts: replication is not running everywhere after the restore (%v)", ar.Problems)
	}
	if sc.Accounts.ConflictAt.Duration > 0 && len(ar.ConflictIDs) == 2 && !ar.ConflictReported {
		fail("accounts: the key registered at two sites (%v) is not reported as a conflict", ar.ConflictIDs)
	}
	if ar.Missing > 0 {
		fail("accounts: %d accounts still missing at some site after the restore (%v)", ar.Missing, ar.Problems)
	}
	if ar.FlowSeconds == nil {
		fail("accounts: an account made at the faulted site after the restore did not reach every site within 1m")
	}
}
