package accounts

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/namescope"
	"github.com/cairn-pki/cairn/site"
)

// External Account Binding keys (docs/authority.md): made at one site
// and replicated to every other with the accounts; revoked by a row of
// its own at every reachable site. The HMAC key is printed once by
// `cairn accounts eab create` and kept only in the sites' databases (the
// fronts verify bindings with it): the administrator's database user may
// insert it but not read it back.

// EABKey is a key as `eab create` makes it; HMAC only there.
type EABKey struct {
	KID   string   `json:"kid"`
	HMAC  string   `json:"hmacKey,omitempty"` // base64url, what clients take
	Label string   `json:"label"`
	Scope []string `json:"scope"`
	Site  string   `json:"site"` // where it was made
}

// EABListed is a key as `eab list` shows it (never its HMAC).
type EABListed struct {
	KID     string     `json:"kid"`
	Label   string     `json:"label"`
	Scope   []string   `json:"scope"`
	Created time.Time  `json:"created"`
	Site    string     `json:"site"`              // where it was made
	At      []string   `json:"at"`                // sites whose database has it
	Bound   int        `json:"boundAccounts"`     // accounts registered with it
	Revoked *time.Time `json:"revoked,omitempty"` // first revocation seen
}

// EAB works on the sites' EAB tables through open (the admin user).
type EAB struct {
	Spec *cluster.Spec
	Open func(site string) (*sql.DB, error)
	Log  io.Writer // progress (never a secret)
	// Wait bounds how long create and revoke wait for every reachable
	// site to have the change.
	Wait time.Duration
}

// eabKIDPrefix marks cairn's key IDs (random, so unique across sites).
const eabKIDPrefix = "eab-"

// validLabel refuses labels that would garble listings.
func validLabel(l string) error {
	if strings.TrimSpace(l) == "" {
		return errors.New("--label is required: name the team or service the key is for (e.g. --label payments)")
	}
	if len(l) > 200 {
		return errors.New("--label is longer than 200 characters")
	}
	if strings.IndexFunc(l, unicode.IsControl) >= 0 {
		return errors.New("--label contains a control character")
	}
	return nil
}

// Scope normalizes a key's scope and checks it lies inside the cluster's
// policy.allowedNames.
func (e *EAB) Scope(entries []string) ([]string, error) {
	scope, err := namescope.NormalizeAll(entries)
	if err != nil {
		return nil, fmt.Errorf("--scope %w", err)
	}
	allowed, _ := namescope.NormalizeAll(e.Spec.Policy.AllowedNames)
	for _, s := range scope {
		if len(allowed) > 0 && !namescope.Within(allowed, s) {
			return nil, fmt.Errorf("--scope %s is outside policy.allowedNames (%s): the key could never order it; use a suffix inside them",
				s, namescope.String(allowed))
		}
	}
	return scope, nil
}

// Create makes a key at the first reachable site (or at siteName), and
// waits until every other reachable site has it.
func (e *EAB) Create(ctx context.Context, siteName, label string, scopeEntries []string) (*EABKey, error) {
	if err := validLabel(label); err != nil {
		return nil, err
	}
	scope, err := e.Scope(scopeEntries)
	if err != nil {
		return nil, err
	}
	var kidBytes [12]byte
	secret := make([]byte, 32)
	if _, err := rand.Read(kidBytes[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	k := &EABKey{KID: eabKIDPrefix + hex.EncodeToString(kidBytes[:]), HMAC: base64.RawURLEncoding.EncodeToString(secret), Label: label, Scope: scope}
	sites, err := e.targets(siteName)
	if err != nil {
		return nil, err
	}
	// Without account replication nothing carries the key: it is written
	// at every site (each row in that site's own range).
	everywhere := e.Spec.Accounts.Replication == cluster.ReplicationOff && siteName == ""
	var made []string
	for _, s := range sites {
		db, err := e.Open(s)
		if err == nil {
			_, err = db.ExecContext(ctx, "INSERT INTO "+site.EABKeysTable+" (kid, hmac_key, label, scope, created_at) VALUES (?, ?, ?, ?, UTC_TIMESTAMP())",
				k.KID, secret, label, namescope.Join(scope))
			db.Close()
		}
		if err != nil {
			fmt.Fprintf(e.Log, "site %s: %v\n", s, firstLine(err.Error()))
			continue
		}
		made = append(made, s)
		if !everywhere {
			break
		}
	}
	if len(made) == 0 {
		return nil, errors.New("no site's database took the key (every site unreachable?): nothing was made")
	}
	k.Site = made[0]
	fmt.Fprintf(e.Log, "key %s made at %s\n", k.KID, strings.Join(made, ", "))
	e.waitEverywhere(ctx, k.KID, "has the key", "SELECT COUNT(*) FROM "+site.EABKeysTable+" WHERE kid = ?")
	return k, nil
}

// targets are siteName, or every site in spec order.
func (e *EAB) targets(siteName string) ([]string, error) {
	if siteName == "" {
		return e.Spec.SiteNames(), nil
	}
	if _, ok := e.Spec.SiteByName(siteName); !ok {
		return nil, fmt.Errorf("--site %q is not a site of the spec (%s)", siteName, strings.Join(e.Spec.SiteNames(), ", "))
	}
	return []string{siteName}, nil
}

// waitEverywhere polls every site until query (with kid) counts a row,
// reporting how long each took; sites that do not within e.Wait are
// named (replication will bring it, or is broken: cairn accounts status).
func (e *EAB) waitEverywhere(ctx context.Context, kid, what, query string) map[string]time.Duration {
	start := time.Now()
	took := map[string]time.Duration{}
	dbs := map[string]*sql.DB{}
	for _, s := range e.Spec.SiteNames() {
		if db, err := e.Open(s); err == nil {
			dbs[s] = db
			defer db.Close()
		}
	}
	deadline := start.Add(e.Wait)
	for len(took) < len(dbs) {
		for s, db := range dbs {
			if _, done := took[s]; done {
				continue
			}
			var n int
			if err := db.QueryRowContext(ctx, query, kid).Scan(&n); err == nil && n > 0 {
				took[s] = time.Since(start)
			}
		}
		if len(took) == len(dbs) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, s := range e.Spec.SiteNames() {
		switch d, ok := took[s]; {
		case ok:
			fmt.Fprintf(e.Log, "  site %s %s (after %s)\n", s, what, d.Round(time.Millisecond))
		case dbs[s] == nil:
			fmt.Fprintf(e.Log, "  site %s: database unreachable; replication brings it when the site is back\n", s)
		default:
			fmt.Fprintf(e.Log, "  site %s: NOT YET after %s: check `cairn accounts status`\n", s, e.Wait)
		}
	}
	return took
}

// Revoke revokes kid at every reachable site (or only at siteName, the
// others then learn it by replication) and waits until every reachable
// site has the revocation. It returns how long each site took.
func (e *EAB) Revoke(ctx context.Context, siteName, kid string) (map[string]time.Duration, error) {
	if kid == "" || len(kid) > 64 {
		return nil, errors.New("KID: give the key ID `cairn accounts eab list` shows")
	}
	keys, err := e.List(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(keys, func(k EABListed) bool { return k.KID == kid }) {
		return nil, fmt.Errorf("no EAB key %q at any reachable site (cairn accounts eab list)", kid)
	}
	sites, err := e.targets(siteName)
	if err != nil {
		return nil, err
	}
	var wrote []string
	for _, s := range sites {
		db, err := e.Open(s)
		if err == nil {
			// One revocation row per site at most; each replicates to the
			// others (rows of the writing site's range).
			_, err = db.ExecContext(ctx, "INSERT INTO "+site.EABRevocationsTable+" (kid, revoked_at) SELECT ?, UTC_TIMESTAMP(3) FROM DUAL "+
				"WHERE NOT EXISTS (SELECT 1 FROM "+site.EABRevocationsTable+" WHERE kid = ?)", kid, kid)
			db.Close()
		}
		if err != nil {
			fmt.Fprintf(e.Log, "site %s: %v\n", s, firstLine(err.Error()))
			continue
		}
		wrote = append(wrote, s)
	}
	if len(wrote) == 0 {
		return nil, errors.New("no site's database took the revocation (every site unreachable?)")
	}
	fmt.Fprintf(e.Log, "key %s revoked at %s\n", kid, strings.Join(wrote, ", "))
	return e.waitEverywhere(ctx, kid, "refuses it", "SELECT COUNT(*) FROM "+site.EABRevocationsTable+" WHERE kid = ?"), nil
}

// List reads every reachable site's keys and merges them.
func (e *EAB) List(ctx context.Context) ([]EABListed, error) {
	byKID := map[string]*EABListed{}
	var order []string
	reached := 0
	for _, s := range e.Spec.SiteNames() {
		rows, err := e.listAt(ctx, s)
		if err != nil {
			fmt.Fprintf(e.Log, "site %s: %v\n", s, firstLine(err.Error()))
			continue
		}
		reached++
		for _, k := range rows {
			have, ok := byKID[k.KID]
			if !ok {
				c := k
				byKID[k.KID], order = &c, append(order, k.KID)
				have = &c
			} else {
				have.At = append(have.At, s)
				have.Bound = max(have.Bound, k.Bound)
				if k.Revoked != nil && (have.Revoked == nil || k.Revoked.Before(*have.Revoked)) {
					have.Revoked = k.Revoked
				}
			}
		}
	}
	if reached == 0 {
		return nil, errors.New("no site's database answers")
	}
	out := make([]EABListed, 0, len(order))
	for _, kid := range order {
		out = append(out, *byKID[kid])
	}
	slices.SortStableFunc(out, func(a, b EABListed) int { return a.Created.Compare(b.Created) })
	return out, nil
}

func (e *EAB) listAt(ctx context.Context, siteName string) ([]EABListed, error) {
	db, err := e.Open(siteName)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT k.id, k.kid, k.label, k.scope, k.created_at, "+
		"(SELECT MIN(r.revoked_at) FROM "+site.EABRevocationsTable+" r WHERE r.kid = k.kid), "+
		"(SELECT COUNT(*) FROM "+site.EABBindingsTable+" b WHERE b.kid = k.kid) FROM "+site.EABKeysTable+" k ORDER BY k.id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	bySerial := map[int64]string{}
	for _, s := range e.Spec.Sites {
		bySerial[int64(s.SerialPrefix.Value())] = s.Name
	}
	var out []EABListed
	for rows.Next() {
		var k EABListed
		var id int64
		var scope string
		var created []byte
		var revoked sql.NullString
		if err := rows.Scan(&id, &k.KID, &k.Label, &scope, &created, &revoked, &k.Bound); err != nil {
			return nil, err
		}
		k.Scope = namescope.Split(scope)
		if k.Scope == nil {
			k.Scope = []string{}
		}
		k.Created, _ = time.Parse(time.DateTime, string(created))
		if revoked.Valid {
			if t, err := time.Parse("2006-01-02 15:04:05.000", revoked.String); err == nil {
				k.Revoked = &t
			}
		}
		k.Site = bySerial[int64(site.AccountIDSite(id))]
		k.At = []string{siteName}
		out = append(out, k)
	}
	return out, rows.Err()
}
