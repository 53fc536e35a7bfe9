package acmefront

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

const host = "acme.lab.home.arpa"

// fakeStore is the site's database: keys, revoked kids, registered key
// digests and bindings.
type fakeStore struct {
	mu         sync.Mutex
	keys       map[string]*Key
	registered map[string]bool
	bindings   map[int64]string
	err        error // every call fails with it
	bindErr    error
	queries    int
}

func newFakeStore() *fakeStore {
	return &fakeStore{keys: map[string]*Key{}, registered: map[string]bool{}, bindings: map[int64]string{}}
}

func (s *fakeStore) Key(_ context.Context, kid string) (*Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	if s.err != nil {
		return nil, s.err
	}
	k, ok := s.keys[kid]
	if !ok {
		return nil, nil
	}
	c := *k
	return &c, nil
}

func (s *fakeStore) Registered(_ context.Context, digest string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	return s.registered[digest], s.err
}

func (s *fakeStore) Binding(_ context.Context, id int64) (*Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	if s.err != nil {
		return nil, s.err
	}
	kid, ok := s.bindings[id]
	if !ok {
		return nil, nil
	}
	b := &Binding{KID: kid}
	if k, ok := s.keys[kid]; ok {
		b.KeyKnown, b.Scope, b.Revoked = true, k.Scope, k.Revoked
	}
	return b, nil
}

func (s *fakeStore) Bind(_ context.Context, id int64, kid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bindErr != nil {
		return s.bindErr
	}
	if _, ok := s.bindings[id]; !ok {
		s.bindings[id] = kid
	}
	return nil
}

// account is a client's account key.
type account struct {
	key *ecdsa.PrivateKey
	jwk jose.JSONWebKey
}

func newAccount(t testing.TB) account {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return account{key: k, jwk: jose.JSONWebKey{Key: k.Public(), Algorithm: "ES256"}}
}

func (a account) digest(t testing.TB) string {
	der, err := publicKeyDER(mustJSON(t, a.jwk))
	if err != nil {
		t.Fatal(err)
	}
	return keyDigest(der)
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signed is a JWS as an ACME client sends it (go-jose: an implementation
// independent of the front's), with the key embedded (newAccount) or an
// account URL as kid.
func (a account) signed(t testing.TB, url string, kid string, payload any) string {
	opts := &jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"url": url, "nonce": "n0nce"}}
	if kid == "" {
		opts.EmbedJWK = true
	} else {
		opts.ExtraHeaders["kid"] = kid
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: a.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	j, err := signer.Sign(mustJSON(t, payload))
	if err != nil {
		t.Fatal(err)
	}
	return j.FullSerialize()
}

// eab is an externalAccountBinding over jwk's public key, as certbot and
// lego make it; change alters its protected header.
func eab(t testing.TB, kid string, hmacKey []byte, url string, jwk jose.JSONWebKey, change func(map[jose.HeaderKey]any)) json.RawMessage {
	hdr := map[jose.HeaderKey]any{"kid": kid, "url": url}
	if change != nil {
		change(hdr)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: hmacKey}, &jose.SignerOptions{ExtraHeaders: hdr})
	if err != nil {
		t.Fatal(err)
	}
	pub := jwk.Public()
	j, err := signer.Sign(mustJSON(t, pub))
	if err != nil {
		t.Fatal(err)
	}
	return json.RawMessage(j.FullSerialize())
}

// policyFront is a front with a fake WFE that makes account 257 (site
// prefix 1) or returns existingID, serves a directory and nonces, and
// counts what reaches it.
type policyFront struct {
	f       *Front
	srv     *httptest.Server
	store   *fakeStore
	reached []string
	mu      sync.Mutex
	nextID  string
}

func newPolicyFront(t *testing.T, c Config) *policyFront {
	t.Helper()
	pf := &policyFront{store: newFakeStore(), nextID: "257"}
	wfe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Replay-Nonce", "wfe-nonce")
		if r.Method == http.MethodHead {
			return
		}
		pf.mu.Lock()
		pf.reached = append(pf.reached, r.URL.Path)
		id := pf.nextID
		pf.mu.Unlock()
		switch r.URL.Path {
		case directoryPath:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"newAccount":"https://`+r.Host+`/acme/new-acct","meta":{"termsOfService":"https://x/tos","website":"https://x"}}`)
		case newAccountPath:
			w.Header().Set("Location", "https://"+r.Host+"/acme/acct/"+id)
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"status":"valid"}`)
		default:
			w.WriteHeader(http.StatusCreated)
		}
	}))
	t.Cleanup(wfe.Close)
	dir := t.TempDir()
	own, _ := issuer(t, dir, "a-E1")
	c.Upstream, c.Issuers, c.SitePrefix = wfe.URL, []string{own}, 1
	f, err := NewWithStore(&c, pf.store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	pf.f = f
	pf.srv = httptest.NewTLSServer(f)
	t.Cleanup(pf.srv.Close)
	return pf
}

type answer struct {
	status   int
	Type     string `json:"type"`
	Detail   string `json:"detail"`
	Sub      []subproblem
	location string
	nonce    string
	body     string
}

func (pf *policyFront) do(t *testing.T, method, path, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, pf.srv.URL+path, strings.NewReader(body))
	req.Host = host
	req.Header.Set("Content-Type", "application/jose+json")
	resp, err := pf.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, location: resp.Header.Get("Location"), nonce: resp.Header.Get("Replay-Nonce"), body: string(b)}
	var doc struct {
		Type        string       `json:"type"`
		Detail      string       `json:"detail"`
		Subproblems []subproblem `json:"subproblems"`
	}
	json.Unmarshal(b, &doc)
	a.Type, a.Detail, a.Sub = doc.Type, doc.Detail, doc.Subproblems
	return a
}

func (pf *policyFront) reachedWFE() int {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	n := len(pf.reached)
	pf.reached = nil
	return n
}

const acctURL = "https://" + host + newAccountPath

func TestEABOnNewAccount(t *testing.T) {
	pf := newPolicyFront(t, Config{EABRequired: true})
	hmacKey := []byte("0123456789abcdef0123456789abcdef")
	pf.store.keys["kid-good"] = &Key{KID: "kid-good", HMAC: hmacKey}
	pf.store.keys["kid-revoked"] = &Key{KID: "kid-revoked", HMAC: hmacKey, Revoked: true}
	other := newAccount(t)
	registered := newAccount(t)
	pf.store.registered[registered.digest(t)] = true
	probe := newAccount(t)
	pf.f.policy.exempt[probe.digest(t)] = true

	type tc struct {
		name    string
		acct    account
		payload func(a account) map[string]any
		status  int
		typ     string
		reason  string
		detail  string
	}
	withEAB := func(kid string, key []byte, url string, jwk *jose.JSONWebKey, change func(map[jose.HeaderKey]any)) func(a account) map[string]any {
		return func(a account) map[string]any {
			k := a.jwk
			if jwk != nil {
				k = *jwk
			}
			return map[string]any{"termsOfServiceAgreed": true, "externalAccountBinding": eab(t, kid, key, url, k, change)}
		}
	}
	plain := func(a account) map[string]any { return map[string]any{"termsOfServiceAgreed": true} }
	for _, c := range []tc{
		{"no binding", newAccount(t), plain, 403, probExternalAccountRequired, ReasonEABRequired, "--eab-kid"},
		{"wrong HMAC key", newAccount(t), withEAB("kid-good", []byte("another key another key another!"), acctURL, nil, nil), 403, probUnauthorized, ReasonEABBadMAC, "MAC does not verify"},
		{"wrong url", newAccount(t), withEAB("kid-good", hmacKey, "https://"+host+"/acme/new-order", nil, nil), 400, probMalformed, ReasonEABMalformed, "is not the newAccount URL"},
		{"payload another key", newAccount(t), withEAB("kid-good", hmacKey, acctURL, &other.jwk, nil), 400, probMalformed, ReasonEABMalformed, "not the account's public key"},
		{"nonce in binding", newAccount(t), withEAB("kid-good", hmacKey, acctURL, nil, func(h map[jose.HeaderKey]any) { h["nonce"] = "x" }), 400, probMalformed, ReasonEABMalformed, "nonce"},
		{"unknown kid", newAccount(t), withEAB("kid-nobody", hmacKey, acctURL, nil, nil), 403, probUnauthorized, ReasonEABUnknown, `"kid-nobody" is not known`},
		{"revoked kid", newAccount(t), withEAB("kid-revoked", hmacKey, acctURL, nil, nil), 403, probUnauthorized, ReasonKIDRevoked, "revoked"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := pf.f.policy.refused[c.reason].Load()
			a := pf.do(t, http.MethodPost, newAccountPath, c.acct.signed(t, acctURL, "", c.payload(c.acct)))
			if a.status != c.status || a.Type != c.typ || !strings.Contains(a.Detail, c.detail) || a.nonce != "wfe-nonce" {
				t.Errorf("HTTP %d %s %q nonce %q; want %d %s containing %q", a.status, a.Type, a.Detail, a.nonce, c.status, c.typ, c.detail)
			}
			if n := pf.reachedWFE(); n != 0 {
				t.Errorf("a refused newAccount reached the WFE")
			}
			if got := pf.f.policy.refused[c.reason].Load(); got != before+1 {
				t.Errorf("refused{reason=%s} %d -> %d", c.reason, before, got)
			}
		})
	}

	// Passed: a valid binding (and the new account is bound), a lookup,
	// a key registered here before EAB was on (even with a stale binding),
	// the probes' keys.
	good := newAccount(t)
	for _, c := range []struct {
		name string
		acct account
		body map[string]any
	}{
		{"valid binding", good, withEAB("kid-good", hmacKey, acctURL, nil, nil)(good)},
		{"onlyReturnExisting", newAccount(t), map[string]any{"onlyReturnExisting": true}},
		{"registered key", registered, plain(registered)},
		{"registered key, revoked binding", registered, withEAB("kid-revoked", hmacKey, acctURL, nil, nil)(registered)},
		{"probe key", probe, plain(probe)},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := pf.do(t, http.MethodPost, newAccountPath, c.acct.signed(t, acctURL, "", c.body))
			if a.status != http.StatusCreated || pf.reachedWFE() != 1 {
				t.Errorf("HTTP %d %s: want the WFE's 201", a.status, a.body)
			}
		})
	}
	if len(pf.store.bindings) != 1 || pf.store.bindings[257] != "kid-good" {
		t.Errorf("bindings %v, want 257 -> kid-good only", pf.store.bindings)
	}

	// An account another site made (a key that moved with replication)
	// is bound at its own site, never here.
	pf.nextID = "258"
	moved := newAccount(t)
	if a := pf.do(t, http.MethodPost, newAccountPath, moved.signed(t, acctURL, "", withEAB("kid-good", hmacKey, acctURL, nil, nil)(moved))); a.status != 201 || len(pf.store.bindings) != 1 {
		t.Errorf("account of another site: HTTP %d, bindings %v", a.status, pf.store.bindings)
	}

	// A binding that cannot be stored: the client is told to retry, and
	// learns no account URL.
	pf.nextID = "385"
	pf.store.bindErr = errors.New("db down")
	late := newAccount(t)
	a := pf.do(t, http.MethodPost, newAccountPath, late.signed(t, acctURL, "", withEAB("kid-good", hmacKey, acctURL, nil, nil)(late)))
	if a.status != http.StatusServiceUnavailable || a.Type != probServerInternal || a.location != "" || a.nonce != "wfe-nonce" {
		t.Errorf("unbindable account: HTTP %d %s location %q nonce %q", a.status, a.Type, a.location, a.nonce)
	}
	pf.store.bindErr = nil
	pf.reachedWFE()

	// The database not answering refuses; it never waves a key through.
	pf.store.err = errors.New("connection refused")
	a = pf.do(t, http.MethodPost, newAccountPath, newAccount(t).signed(t, acctURL, "", map[string]any{}))
	if a.status != http.StatusServiceUnavailable || pf.reachedWFE() != 0 {
		t.Errorf("store down: HTTP %d, want 503 and nothing at the WFE", a.status)
	}
}

// Without eab.required a newAccount without a binding is passed without
// a database lookup; one with a binding is checked and bound.
func TestEABOptional(t *testing.T) {
	pf := newPolicyFront(t, Config{})
	pf.store.keys["k"] = &Key{KID: "k", HMAC: []byte("secret-secret-secret-secret-1234")}
	a := newAccount(t)
	if got := pf.do(t, http.MethodPost, newAccountPath, a.signed(t, acctURL, "", map[string]any{"termsOfServiceAgreed": true})); got.status != 201 || pf.store.queries != 0 {
		t.Errorf("HTTP %d after %d queries", got.status, pf.store.queries)
	}
	b := newAccount(t)
	body := map[string]any{"externalAccountBinding": eab(t, "k", []byte("wrong-wrong-wrong-wrong-wrong-12"), acctURL, b.jwk, nil)}
	if got := pf.do(t, http.MethodPost, newAccountPath, b.signed(t, acctURL, "", body)); got.status != 403 || got.Type != probUnauthorized {
		t.Errorf("bad binding when optional: HTTP %d %s", got.status, got.Type)
	}
	body = map[string]any{"externalAccountBinding": eab(t, "k", []byte("secret-secret-secret-secret-1234"), acctURL, b.jwk, nil)}
	if got := pf.do(t, http.MethodPost, newAccountPath, b.signed(t, acctURL, "", body)); got.status != 201 || pf.store.bindings[257] != "k" {
		t.Errorf("good binding when optional: HTTP %d, bindings %v", got.status, pf.store.bindings)
	}
}

func orderBody(t *testing.T, a account, accountID int64, names ...string) string {
	var ids []map[string]string
	for _, n := range names {
		typ := "dns"
		if strings.Contains(n, ":") || n[0] >= '0' && n[0] <= '9' {
			typ = "ip"
		}
		ids = append(ids, map[string]string{"type": typ, "value": n})
	}
	return a.signed(t, "https://"+host+newOrderPath, fmt.Sprintf("https://%s/acme/acct/%d", host, accountID), map[string]any{"identifiers": ids})
}

func TestOrderScopes(t *testing.T) {
	pf := newPolicyFront(t, Config{EABRequired: true, AllowedNames: []string{"corp.internal", "*.lab.home.arpa"}})
	pf.store.keys["payments"] = &Key{KID: "payments", Scope: []string{"payments.corp.internal"}}
	pf.store.keys["wide"] = &Key{KID: "wide"}
	pf.store.keys["gone"] = &Key{KID: "gone", Revoked: true}
	pf.store.bindings[257] = "payments"
	pf.store.bindings[385] = "wide"
	pf.store.bindings[513] = "gone"
	pf.store.bindings[641] = "never-arrived"
	a := newAccount(t)
	for _, c := range []struct {
		name   string
		id     int64
		names  []string
		status int
		reason string
		detail string
	}{
		{"in scope", 257, []string{"web.payments.corp.internal", "payments.corp.internal", "*.payments.corp.internal"}, 201, "", ""},
		{"out of the key's scope", 257, []string{"api.payments.corp.internal", "web.corp.internal"}, 400, ReasonOutOfScope,
			`dns "web.corp.internal" is outside the scope of this account's key "payments" (payments.corp.internal)`},
		{"ip identifier", 257, []string{"10.0.0.1"}, 400, ReasonNotAllowed, `ip "10.0.0.1" is outside the names this CA issues for`},
		{"no key scope: the cluster's", 385, []string{"web.corp.internal", "x.lab.home.arpa"}, 201, "", ""},
		{"outside the cluster", 385, []string{"www.example.com"}, 400, ReasonNotAllowed, `dns "www.example.com" is outside the names this CA issues for (corp.internal, lab.home.arpa)`},
		{"unbound (before EAB)", 99, []string{"a.corp.internal"}, 201, "", ""},
		{"unbound, outside the cluster", 99, []string{"a.example"}, 400, ReasonNotAllowed, "a.example"},
		{"revoked key", 513, []string{"a.corp.internal"}, 403, ReasonKIDRevoked, `account 513 was registered with external account key "gone", which was revoked`},
		{"binding without its key", 641, []string{"a.corp.internal"}, 403, ReasonKIDRevoked, "never-arrived"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := int64(0)
			if c.reason != "" {
				before = pf.f.policy.refused[c.reason].Load()
			}
			got := pf.do(t, http.MethodPost, newOrderPath, orderBody(t, a, c.id, c.names...))
			if got.status != c.status || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("HTTP %d %s %q; want %d with %q", got.status, got.Type, got.Detail, c.status, c.detail)
			}
			reached := pf.reachedWFE()
			if c.reason == "" {
				if reached != 1 {
					t.Errorf("an allowed order did not reach the WFE")
				}
				return
			}
			if reached != 0 || pf.f.policy.refused[c.reason].Load() != before+1 {
				t.Errorf("refused order reached the WFE (%d) or was not counted", reached)
			}
			if c.status == 400 && (got.Type != probRejectedIdentifier || len(got.Sub) == 0 || got.Sub[0].Type != probRejectedIdentifier) {
				t.Errorf("want rejectedIdentifier with subproblems, got %s %+v", got.Type, got.Sub)
			}
		})
	}
	// A revoked key also stops the finalization of an order made before.
	got := pf.do(t, http.MethodPost, finalizePrefix+"513/77", a.signed(t, "https://"+host+finalizePrefix+"513/77", "https://"+host+"/acme/acct/513", map[string]any{"csr": "x"}))
	if got.status != 403 || got.Type != probUnauthorized || pf.reachedWFE() != 0 {
		t.Errorf("finalize of a revoked key's account: HTTP %d %s", got.status, got.Type)
	}
	if got := pf.do(t, http.MethodPost, finalizePrefix+"257/78", a.signed(t, "https://"+host+finalizePrefix+"257/78", "https://"+host+"/acme/acct/257", map[string]any{"csr": "x"})); got.status != 201 {
		t.Errorf("finalize of a valid account: HTTP %d", got.status)
	}
}

func TestDirectoryRewrite(t *testing.T) {
	for _, required := range []bool{true, false} {
		pf := newPolicyFront(t, Config{EABRequired: required})
		got := pf.do(t, http.MethodGet, directoryPath, "")
		var dir struct {
			NewAccount string         `json:"newAccount"`
			Meta       map[string]any `json:"meta"`
		}
		if err := json.Unmarshal([]byte(got.body), &dir); err != nil {
			t.Fatalf("directory %q: %v", got.body, err)
		}
		if v, ok := dir.Meta["externalAccountRequired"]; (ok && v == true) != required || dir.Meta["termsOfService"] != "https://x/tos" ||
			dir.NewAccount != "https://"+host+newAccountPath {
			t.Errorf("required=%v: directory %s", required, got.body)
		}
	}
	// The meta object is made when the WFE has none.
	out, err := rewriteDirectory([]byte(`{"newNonce":"n"}`))
	if err != nil || !strings.Contains(string(out), `"externalAccountRequired": true`) {
		t.Errorf("rewriteDirectory without meta: %s %v", out, err)
	}
}

// The front's checks cost: parsing the JWS, one or two lookups (here a
// map; on a site, MariaDB over the service network) and the HMAC.
func BenchmarkEABNewAccount(b *testing.B) {
	p, _ := newPolicy(&Config{EABRequired: true}, newFakeStore())
	store := p.store.(*fakeStore)
	hmacKey := []byte("0123456789abcdef0123456789abcdef")
	store.keys["k"] = &Key{KID: "k", HMAC: hmacKey}
	a := newAccount(b)
	body := []byte(a.signed(b, acctURL, "", map[string]any{"externalAccountBinding": eab(b, "k", hmacKey, acctURL, a.jwk, nil)}))
	b.ResetTimer()
	for range b.N {
		if kid, ref := p.newAccount(context.Background(), host, body); kid != "k" || ref != nil {
			b.Fatal(ref)
		}
	}
}

func BenchmarkScopeNewOrder(b *testing.B) {
	p, _ := newPolicy(&Config{AllowedNames: []string{"corp.internal"}}, newFakeStore())
	store := p.store.(*fakeStore)
	store.keys["k"] = &Key{KID: "k", Scope: []string{"payments.corp.internal"}}
	store.bindings[257] = "k"
	a := newAccount(b)
	body := []byte(a.signed(b, "https://"+host+newOrderPath, "https://"+host+"/acme/acct/257",
		map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "web.payments.corp.internal"}}}))
	b.ResetTimer()
	for range b.N {
		if ref := p.newOrder(context.Background(), body); ref != nil {
			b.Fatal(ref.detail)
		}
	}
}
