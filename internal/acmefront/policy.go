package acmefront

// Who may get which certificate (docs/authority.md): External Account
// Binding (RFC 8555 §7.3.4) on newAccount, and the cluster's and the
// account key's name scopes on newOrder, decided here before the WFE or
// any RA sees the request. The front never changes what it forwards (the
// client's JWS signature covers it): it refuses, or passes unchanged. It
// does not verify the outer JWS signature: a request it passes is
// verified by the WFE, and a refusal of a forged request harms only its
// sender.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/go-jose/go-jose/v4"

	"github.com/cairn-pki/cairn/internal/namescope"
)

// Boulder's endpoints the policy looks at.
const (
	newAccountPath = "/acme/new-acct"
	finalizePrefix = "/acme/finalize/"
	acctPrefix     = "/acme/acct/"
	directoryPath  = "/directory"
)

// ACME problem types the front answers with.
const (
	probExternalAccountRequired = "urn:ietf:params:acme:error:externalAccountRequired"
	probUnauthorized            = "urn:ietf:params:acme:error:unauthorized"
	probMalformed               = "urn:ietf:params:acme:error:malformed"
	probRejectedIdentifier      = "urn:ietf:params:acme:error:rejectedIdentifier"
	probServerInternal          = "urn:ietf:params:acme:error:serverInternal"
)

// Refusal reasons (cairn_front_refused_total{reason}).
const (
	ReasonEABRequired  = "eab_required"  // newAccount of a new key without a binding
	ReasonEABMalformed = "eab_malformed" // a binding that is not one (alg, url, payload)
	ReasonEABUnknown   = "eab_unknown"   // kid not known at this site
	ReasonEABBadMAC    = "eab_bad_mac"   // the MAC does not verify with the kid's key
	ReasonKIDRevoked   = "kid_revoked"   // newAccount with, or an order of an account bound to, a revoked kid
	ReasonNotAllowed   = "not_allowed"   // an identifier outside policy.allowedNames
	ReasonOutOfScope   = "out_of_scope"  // an identifier outside the account key's scope
	ReasonStoreError   = "store_error"   // the site's database did not answer: refused, never waved through
)

// Reasons are every refusal reason, in the order /metrics lists them.
var Reasons = []string{ReasonEABRequired, ReasonEABMalformed, ReasonEABUnknown, ReasonEABBadMAC, ReasonKIDRevoked,
	ReasonNotAllowed, ReasonOutOfScope, ReasonStoreError}

// Key is an EAB key as the front sees it.
type Key struct {
	KID     string
	HMAC    []byte
	Scope   []string // normalized suffixes; empty: the cluster's allowedNames
	Revoked bool
}

// Binding is the EAB key an account was registered with.
type Binding struct {
	KID      string
	Scope    []string
	Revoked  bool
	KeyKnown bool // false: the binding arrived before its key (replication): refused
}

// Store is where keys, bindings and accounts are (the site's MariaDB;
// a fake in tests).
type Store interface {
	// Key is the key kid, nil when unknown.
	Key(ctx context.Context, kid string) (*Key, error)
	// Registered: an account with this key digest (jwk_sha256) exists.
	Registered(ctx context.Context, digest string) (bool, error)
	// Binding of an account, nil when unbound.
	Binding(ctx context.Context, accountID int64) (*Binding, error)
	// Bind records an account's key; an existing binding stays.
	Bind(ctx context.Context, accountID int64, kid string) error
}

// policy is what the front enforces; nil when the config asks for nothing.
type policy struct {
	store      Store
	required   bool
	allowed    []string        // normalized policy.allowedNames
	exempt     map[string]bool // key digests that register without a binding (the health probes)
	sitePrefix int64           // account IDs this site makes are ≡ prefix (mod 128)
	refused    map[string]*atomic.Int64
}

func newPolicy(c *Config, store Store) (*policy, error) {
	allowed, err := namescope.NormalizeAll(c.AllowedNames)
	if err != nil {
		return nil, fmt.Errorf("allowedNames: %w", err)
	}
	p := &policy{store: store, required: c.EABRequired, allowed: allowed, exempt: map[string]bool{},
		sitePrefix: int64(c.SitePrefix), refused: map[string]*atomic.Int64{}}
	for _, d := range c.ExemptKeys {
		p.exempt[d] = true
	}
	for _, r := range Reasons {
		p.refused[r] = new(atomic.Int64)
	}
	if store == nil && (c.EABRequired || len(allowed) > 0) {
		return nil, errors.New("db: eabRequired and allowedNames need the site's database (db.addr, db.user, db.passwordFile)")
	}
	return p, nil
}

// refusal is an answer the front gives instead of the WFE.
type refusal struct {
	status int
	typ    string
	detail string
	reason string
	sub    []subproblem
}

type subproblem struct {
	Type       string     `json:"type"`
	Detail     string     `json:"detail"`
	Identifier identifier `json:"identifier"`
}

type identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func refuse(status int, typ, reason, format string, args ...any) *refusal {
	return &refusal{status: status, typ: typ, reason: reason, detail: fmt.Sprintf(format, args...)}
}

func storeError(err error) *refusal {
	return refuse(http.StatusServiceUnavailable, probServerInternal, ReasonStoreError,
		"the CA cannot check account bindings right now (its database did not answer); retry later")
}

// outerJWS is the parts of a flattened JWS the policy reads.
type outerJWS struct {
	Alg   string          `json:"alg"`
	KID   string          `json:"kid"`
	JWK   json.RawMessage `json:"jwk"`
	URL   string          `json:"url"`
	Nonce string          `json:"nonce"`
}

// parseJWS decodes a flattened JWS's protected header and payload.
func parseJWS(body []byte) (h outerJWS, payload []byte, ok bool) {
	var j struct {
		Protected string `json:"protected"`
		Payload   string `json:"payload"`
	}
	if json.Unmarshal(body, &j) != nil {
		return h, nil, false
	}
	ph, err := base64.RawURLEncoding.DecodeString(j.Protected)
	if err != nil || json.Unmarshal(ph, &h) != nil {
		return h, nil, false
	}
	payload, err = base64.RawURLEncoding.DecodeString(j.Payload)
	return h, payload, err == nil
}

// publicKeyDER is a JWK's public key as PKIX DER (what Boulder digests).
func publicKeyDER(raw []byte) ([]byte, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	if !k.IsPublic() {
		return nil, errors.New("not a public key")
	}
	return x509.MarshalPKIXPublicKey(k.Key)
}

// keyDigest is Boulder's jwk_sha256 of a PKIX DER key.
func keyDigest(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// newAccount decides a newAccount: nil passes it (with the kid to bind
// once the WFE made the account, or ""), a refusal answers it.
func (p *policy) newAccount(ctx context.Context, host string, body []byte) (bindKID string, _ *refusal) {
	h, payload, ok := parseJWS(body)
	if !ok || len(h.JWK) == 0 {
		return "", nil // not a newAccount the WFE would take: it answers
	}
	var req struct {
		OnlyReturnExisting bool            `json:"onlyReturnExisting"`
		EAB                json.RawMessage `json:"externalAccountBinding"`
	}
	if json.Unmarshal(payload, &req) != nil {
		return "", nil
	}
	// Looking an account up creates nothing.
	if req.OnlyReturnExisting {
		return "", nil
	}
	hasEAB := len(req.EAB) > 0 && !bytes.Equal(req.EAB, []byte("null"))
	if !hasEAB && !p.required {
		return "", nil
	}
	der, err := publicKeyDER(h.JWK)
	if err != nil {
		return "", nil // the WFE refuses the key
	}
	digest := keyDigest(der)
	// A key registered here already gets its own account back: turning
	// EAB on never locks existing accounts out (nor a client that sends
	// its old binding again).
	registered := p.exempt[digest]
	if !registered {
		if registered, err = p.store.Registered(ctx, digest); err != nil {
			return "", storeError(err)
		}
	}
	if !hasEAB {
		if registered {
			return "", nil
		}
		return "", refuse(http.StatusForbidden, probExternalAccountRequired, ReasonEABRequired,
			"this CA requires External Account Binding: register with the key ID and HMAC key your CA operator gave you "+
				"(certbot --eab-kid KID --eab-hmac-key=KEY; lego --eab --kid KID --hmac=KEY)")
	}
	kid, ref := p.verifyEAB(ctx, req.EAB, h.URL, "https://"+host+newAccountPath, der)
	if ref != nil {
		if registered {
			return "", nil // its account exists: nothing is created, nothing bound
		}
		return "", ref
	}
	return kid, nil
}

// macs are the JWS MAC algorithms RFC 8555 §7.3.4 allows.
var macs = map[string]func() hash.Hash{"HS256": sha256.New, "HS384": sha512.New384, "HS512": sha512.New}

// verifyEAB checks an externalAccountBinding (RFC 8555 §7.3.4): a
// flattened JWS with a MAC algorithm, the kid of a known and unrevoked
// key, the newAccount URL, no nonce, the account's key as payload, and a
// MAC that verifies with the kid's key. It returns the kid.
func (p *policy) verifyEAB(ctx context.Context, raw json.RawMessage, outerURL, wantURL string, accountKey []byte) (string, *refusal) {
	malformed := func(format string, args ...any) (string, *refusal) {
		return "", refuse(http.StatusBadRequest, probMalformed, ReasonEABMalformed, "externalAccountBinding: "+format, args...)
	}
	var j struct {
		Protected string `json:"protected"`
		Payload   string `json:"payload"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(raw, &j); err != nil || j.Protected == "" || j.Signature == "" {
		return malformed("not a flattened JWS (protected, payload, signature)")
	}
	ph, err := base64.RawURLEncoding.DecodeString(j.Protected)
	var h outerJWS
	if err != nil || json.Unmarshal(ph, &h) != nil {
		return malformed("its protected header is not base64url JSON")
	}
	newMAC, ok := macs[h.Alg]
	switch {
	case !ok:
		return malformed("alg %q is not a MAC algorithm (HS256, HS384 or HS512)", excerpt(h.Alg))
	case h.KID == "":
		return malformed("no kid")
	case h.Nonce != "":
		return malformed("it must not carry a nonce")
	case h.URL != outerURL || h.URL != wantURL:
		return malformed("url %q is not the newAccount URL %s", excerpt(h.URL), wantURL)
	}
	payload, err := base64.RawURLEncoding.DecodeString(j.Payload)
	if err != nil {
		return malformed("its payload is not base64url")
	}
	if der, err := publicKeyDER(payload); err != nil || !bytes.Equal(der, accountKey) {
		return malformed("its payload is not the account's public key (the jwk of this request)")
	}
	sig, err := base64.RawURLEncoding.DecodeString(j.Signature)
	if err != nil {
		return malformed("its signature is not base64url")
	}
	key, err := p.store.Key(ctx, h.KID)
	if err != nil {
		return "", storeError(err)
	}
	if key == nil {
		return "", refuse(http.StatusForbidden, probUnauthorized, ReasonEABUnknown,
			"externalAccountBinding: key ID %q is not known to this CA (ask your CA operator: cairn accounts eab list)", excerpt(h.KID))
	}
	mac := hmac.New(newMAC, key.HMAC)
	io.WriteString(mac, j.Protected+"."+j.Payload)
	if !hmac.Equal(mac.Sum(nil), sig) {
		return "", refuse(http.StatusForbidden, probUnauthorized, ReasonEABBadMAC,
			"externalAccountBinding: the MAC does not verify with key ID %q (wrong HMAC key?)", h.KID)
	}
	if key.Revoked {
		return "", refuse(http.StatusForbidden, probUnauthorized, ReasonKIDRevoked,
			"externalAccountBinding: key ID %q was revoked", h.KID)
	}
	return key.KID, nil
}

// accountID is the account a KID-signed request names (its URL's last
// segment), or 0.
func accountID(kid string) int64 {
	i := strings.LastIndex(kid, acctPrefix)
	if i < 0 {
		return 0
	}
	id, err := strconv.ParseInt(kid[i+len(acctPrefix):], 10, 64)
	if err != nil || id <= 0 {
		return 0
	}
	return id
}

// binding is the account's binding, refusing when its key was revoked.
func (p *policy) binding(ctx context.Context, h outerJWS) (*Binding, *refusal) {
	id := accountID(h.KID)
	if id == 0 {
		return nil, nil // the WFE answers it
	}
	b, err := p.store.Binding(ctx, id)
	if err != nil {
		return nil, storeError(err)
	}
	if b != nil && (b.Revoked || !b.KeyKnown) {
		return nil, refuse(http.StatusForbidden, probUnauthorized, ReasonKIDRevoked,
			"account %d was registered with external account key %q, which was revoked: it may no longer order certificates (ask your CA operator for a new key and register a new account)", id, b.KID)
	}
	return b, nil
}

// newOrder decides a newOrder: the account's key must not be revoked,
// and every identifier must be inside policy.allowedNames and the key's
// scope.
func (p *policy) newOrder(ctx context.Context, body []byte) *refusal {
	h, payload, ok := parseJWS(body)
	if !ok {
		return nil
	}
	var b *Binding
	if p.store != nil {
		var ref *refusal
		if b, ref = p.binding(ctx, h); ref != nil {
			return ref
		}
	}
	var order struct {
		Identifiers []identifier `json:"identifiers"`
	}
	if json.Unmarshal(payload, &order) != nil {
		return nil
	}
	var ref *refusal
	check := func(scope []string, reason, what string) {
		if len(scope) == 0 || ref != nil {
			return
		}
		var bad []subproblem
		for _, id := range order.Identifiers {
			if id.Type != "dns" || !namescope.Covers(scope, id.Value) {
				bad = append(bad, subproblem{Type: probRejectedIdentifier, Identifier: id,
					Detail: fmt.Sprintf("%s %q is outside %s (%s)", id.Type, excerpt(id.Value), what, namescope.String(scope))})
			}
		}
		if len(bad) > 0 {
			ref = refuse(http.StatusBadRequest, probRejectedIdentifier, reason, "%s", bad[0].Detail)
			if len(bad) > 1 {
				ref.detail += fmt.Sprintf(" (and %d more identifiers)", len(bad)-1)
			}
			ref.sub = bad
		}
	}
	check(p.allowed, ReasonNotAllowed, "the names this CA issues for")
	if b != nil {
		check(b.Scope, ReasonOutOfScope, fmt.Sprintf("the scope of this account's key %q", b.KID))
	}
	return ref
}

// finalize refuses the finalization of an order of an account whose key
// was revoked after it ordered.
func (p *policy) finalize(ctx context.Context, body []byte) *refusal {
	h, _, ok := parseJWS(body)
	if !ok || p.store == nil {
		return nil
	}
	_, ref := p.binding(ctx, h)
	return ref
}

// ownAccount is the account ID in a newAccount's Location when this site
// made it (only those are bound here: a binding replicates from the site
// that owns the account, as the account does).
func (p *policy) ownAccount(location string) int64 {
	id := accountID(location)
	if id == 0 || id%128 != p.sitePrefix {
		return 0
	}
	return id
}

// rewriteDirectory adds meta.externalAccountRequired to the WFE's
// directory (RFC 8555 §7.1.1).
func rewriteDirectory(body []byte) ([]byte, error) {
	var dir map[string]json.RawMessage
	if err := json.Unmarshal(body, &dir); err != nil {
		return nil, err
	}
	meta := map[string]json.RawMessage{}
	if m, ok := dir["meta"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, err
		}
	}
	meta["externalAccountRequired"] = json.RawMessage("true")
	m, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	dir["meta"] = m
	return json.MarshalIndent(dir, "", "  ")
}

// excerpt bounds a client's value in an answer.
func excerpt(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
