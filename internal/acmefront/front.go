// Package acmefront is the HTTPS listener of a site's ACME name: it
// terminates TLS and passes every request to the site's Boulder WFE, with
// one exception. A newOrder whose ARI "replaces" names a certificate of
// another site's issuer (a client renewing after the ACME name moved) is
// answered 409 alreadyReplaced, the one error on which lego, acme.sh and
// certmagic retry the order without "replaces". Boulder alone answers 404
// (unknown issuer), which lego ≥ 4.20 treats as final: every default lego
// renewal after a move would fail. The site never learns, accepts or
// revokes another site's certificates (docs/accounts.md, "ARI").
//
// A revokeCert of another site's certificate (a client whose certificate
// came from a site the ACME name no longer points to) is passed to that
// site's front, unchanged: only the issuing site holds the certificate
// and may list it in its CRLs, and its WFE redeems the client's nonce at
// the site that issued it (Boulder's nonce prefix routing, every site's
// nonce service in its SRV records). When that
// site does not answer, the client gets 503 serverInternal with
// Retry-After, never Boulder's 404 "unrecognized issuer" nor a success no
// CRL will show (docs/revocation.md).
package acmefront

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-pki/cairn/internal/connlimit"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Config is etc/acme-front.json.
type Config struct {
	Listen   string `json:"listen"`   // the site's public address and ACME port
	Upstream string `json:"upstream"` // the WFE's plain-HTTP listener, http://ip:port
	CertFile string `json:"certFile"` // the WFE's HTTPS certificate chain
	KeyFile  string `json:"keyFile"`
	// Issuers are this site's issuing intermediates (PEM files): a
	// "replaces" naming any other issuer is another site's certificate.
	Issuers []string `json:"issuers"`
	// Peers are the other sites' fronts, where a revokeCert of their
	// certificates goes; RootFile verifies their TLS (the ACME name).
	Peers    []Peer `json:"peers,omitempty"`
	RootFile string `json:"rootFile,omitempty"`
	// Release is what the site runs; the directory's response carries it
	// (ReleaseHeader) so the controller's probes see each site's release.
	Release *Release `json:"release,omitempty"`
	// MetricsListen serves /metrics (connections held and refused,
	// accept errors, alreadyReplaced answers) on the site's internal
	// address; "" serves none.
	MetricsListen string `json:"metricsListen,omitempty"`
	// MaxConns and MaxConnsPerSource cap the connections held at once, in
	// total and per client address (0: connlimit's defaults).
	MaxConns          int `json:"maxConns,omitempty"`
	MaxConnsPerSource int `json:"maxConnsPerSource,omitempty"`
	// InternalCerts is the bundle's ipki directory: the expiry of every
	// <name>/cert.pem in it (and of CertFile) is on /metrics, read at
	// each scrape.
	InternalCerts string `json:"internalCerts,omitempty"`
	// Who may get which certificate (policy.go, docs/authority.md).
	// EABRequired: a newAccount of a key not registered here needs an
	// external account binding. AllowedNames: the cluster's
	// policy.allowedNames. ExemptKeys: account-key digests that register
	// without a binding (the health probes'). SitePrefix: this site's
	// serial prefix (its account IDs mod 128). DB: where keys, bindings
	// and accounts are.
	EABRequired  bool      `json:"eabRequired,omitempty"`
	AllowedNames []string  `json:"allowedNames,omitempty"`
	ExemptKeys   []string  `json:"exemptKeys,omitempty"`
	SitePrefix   int       `json:"sitePrefix,omitempty"`
	DB           *DBConfig `json:"db,omitempty"`
}

// Deadlines of the public listener. A stranger holds a connection at most
// HandshakeTimeout before its first request, and at most IdleTimeout
// between requests; a request's headers and body must arrive within
// ReadTimeout; the answer (the WFE's work included) within WriteTimeout.
const (
	HandshakeTimeout = 5 * time.Second // TLS handshake and request headers
	ReadTimeout      = 30 * time.Second
	WriteTimeout     = 90 * time.Second
	IdleTimeout      = 60 * time.Second
	upstreamTimeout  = 75 * time.Second // the WFE's answer headers
	maxHeaderBytes   = 64 << 10
)

// deadlines are the ones Serve uses (tests shorten them).
var deadlines = struct{ handshake, read, write, idle time.Duration }{HandshakeTimeout, ReadTimeout, WriteTimeout, IdleTimeout}

// Release is the Boulder version and bundle generation a site runs.
type Release struct {
	Site    string `json:"site"`
	Boulder string `json:"boulder"`
	Bundle  string `json:"bundle"`
}

// ReleaseHeader is the response header of the directory that names the
// site's release (Release.String).
const ReleaseHeader = "Cairn-Site-Release"

// String is the header's value: "site=a; boulder=v0.20260921.0; bundle=0123abcd4567".
func (r Release) String() string {
	return fmt.Sprintf("site=%s; boulder=%s; bundle=%s", r.Site, r.Boulder, r.Bundle)
}

// ParseRelease reads a ReleaseHeader value (unknown parts are ignored).
func ParseRelease(v string) Release {
	var r Release
	for _, part := range strings.Split(v, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "site":
			r.Site = val
		case "boulder":
			r.Boulder = val
		case "bundle":
			r.Bundle = val
		}
	}
	return r
}

// Peer is another site's front and its issuers.
type Peer struct {
	Site    string   `json:"site"`
	Addr    string   `json:"addr"`    // its public address and ACME port
	Issuers []string `json:"issuers"` // PEM or DER files
}

// maxBody bounds what the front reads of a newOrder (a JWS of a few KiB).
const maxBody = 1 << 20

// newOrderPath and revokePath are Boulder's newOrder and revokeCert
// endpoints.
const (
	newOrderPath    = "/acme/new-order"
	revokePath      = "/acme/revoke-cert"
	renewalInfoPath = "/acme/renewal-info/"
)

// forwardedHeader marks a request one front passed to another: it is
// never passed on again (two fronts that each took an issuer for the
// other's would otherwise bounce it between them).
const forwardedHeader = "Cairn-Forwarded-By"

// Front is the handler; Foreign counts orders answered alreadyReplaced.
type Front struct {
	upstream *url.URL
	proxy    *httputil.ReverseProxy
	own      map[string]bool // authority key IDs (raw bytes as string) of own issuers
	peers    map[string]Peer // authority key ID -> the issuing site's front
	peerTLS  *tls.Config
	client   *http.Client
	log      *slog.Logger
	release  string // ReleaseHeader's value ("" if unknown)
	Foreign  atomic.Int64
	prefix   atomic.Value // this site's nonce prefix (string), learned from its WFE
	// ariForwarded counts renewal-info requests passed to the issuing
	// site; site names this one (forwardedHeader).
	ariForwarded atomic.Int64
	site         string
	// closing: every answer closes its connection (the site is drained
	// for a restart: clients holding keep-alive connections to it
	// reconnect, and resolve the ACME name again, after their next
	// request instead of losing one to the restart).
	closing atomic.Bool
	policy  *policy
	// checks times the policy's checks (database lookups included) by
	// request: what the front adds to newAccount, newOrder and finalize.
	checks *prometheus.HistogramVec
}

// CloseConnections makes every answer from now on close its connection
// (SIGUSR1 to cairn-front acme-front; `cairn upgrade apply` sends it once
// the ACME name moved away from the site, before restarting it).
func (f *Front) CloseConnections() { f.closing.Store(true) }

// Load reads the config and the issuers' key identifiers.
func Load(file string) (*Config, error) {
	var c Config
	if err := fsutil.ReadJSON(file, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// New builds the handler, with the site's database when the config
// names one.
func New(c *Config, log *slog.Logger) (*Front, error) {
	var store Store
	if c.DB != nil {
		s, err := OpenSQLStore(*c.DB)
		if err != nil {
			return nil, err
		}
		store = s
	}
	return NewWithStore(c, store, log)
}

// NewWithStore is New with the keys, bindings and accounts in store.
func NewWithStore(c *Config, store Store, log *slog.Logger) (*Front, error) {
	u, err := url.Parse(c.Upstream)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("upstream %q: want http://ip:port", c.Upstream)
	}
	f := &Front{upstream: u, own: map[string]bool{}, peers: map[string]Peer{}, log: log,
		client: &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	for _, file := range c.Issuers {
		certs, err := readCerts(file)
		if err != nil {
			return nil, fmt.Errorf("issuers: %w", err)
		}
		for _, cert := range certs {
			f.own[string(cert.SubjectKeyId)] = true
		}
	}
	f.site = "front"
	if c.Release != nil {
		f.release, f.site = c.Release.String(), c.Release.Site
	}
	if len(f.own) == 0 {
		return nil, errors.New("issuers: no certificate: the front must know the site's own issuers")
	}
	if err := f.loadPeers(c); err != nil {
		return nil, err
	}
	if f.policy, err = newPolicy(c, store); err != nil {
		return nil, err
	}
	f.checks = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_front_check_seconds",
		Help:    "Time the front's own checks took (EAB, name scopes, revoked keys; database lookups included), by request.",
		Buckets: []float64{0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5, 3}}, []string{"request"})
	f.proxy = &httputil.ReverseProxy{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: upstreamTimeout,
			IdleConnTimeout:       IdleTimeout,
			MaxIdleConnsPerHost:   64,
		},
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // Boulder builds every URL from Host
			r.SetXForwarded()      // X-Forwarded-Proto: https
			if ip, _, err := net.SplitHostPort(r.In.RemoteAddr); err == nil {
				r.Out.Header.Set("X-Real-IP", ip) // per-IP rate limits see the client
			}
		},
		// A dead WFE looks dead: the client's connection is cut, as when
		// nothing listened (probes and failover count it as refused).
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("upstream", "err", err)
			panic(http.ErrAbortHandler)
		},
		ModifyResponse: f.modifyResponse,
	}
	return f, nil
}

// readCerts reads every certificate of a PEM file, or one DER certificate.
func readCerts(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, cert)
	}
	if len(out) == 0 {
		cert, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("%s: neither PEM nor DER certificates: %w", file, err)
		}
		out = append(out, cert)
	}
	return out, nil
}

func (f *Front) loadPeers(c *Config) error {
	if len(c.Peers) == 0 {
		return nil
	}
	pool := x509.NewCertPool()
	if c.RootFile != "" {
		roots, err := readCerts(c.RootFile)
		if err != nil {
			return fmt.Errorf("rootFile: %w", err)
		}
		for _, r := range roots {
			pool.AddCert(r)
		}
	}
	f.peerTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	for _, p := range c.Peers {
		for _, file := range p.Issuers {
			certs, err := readCerts(file)
			if err != nil {
				return fmt.Errorf("peers %s: %w", p.Site, err)
			}
			for _, cert := range certs {
				f.peers[string(cert.SubjectKeyId)] = p
			}
		}
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.closing.Load() {
		w.Header().Set("Connection", "close")
	}
	// A POST's body is read once: the checks below read it, and the
	// answer's (modifyResponse) may need its nonce.
	var body []byte
	if r.Method == http.MethodPost {
		body = readBody(r)
		r = r.WithContext(context.WithValue(r.Context(), postBodyKey{}, body))
	}
	if r.Method == http.MethodPost && r.URL.Path == revokePath && len(f.peers) > 0 && r.Header.Get(forwardedHeader) == "" {
		if aki, ok := revokedAKI(body); ok && !f.own[string(aki)] {
			if p, known := f.peers[string(aki)]; known {
				f.forwardRevocation(w, r, body, p)
				return
			}
		}
	}
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, renewalInfoPath) && len(f.peers) > 0 && r.Header.Get(forwardedHeader) == "" {
		if aki, ok := ariAKI(strings.TrimPrefix(r.URL.Path, renewalInfoPath)); ok && !f.own[string(aki)] {
			if p, known := f.peers[string(aki)]; known {
				f.forwardRenewalInfo(w, r, p)
				return
			}
		}
	}
	if r.Method == http.MethodPost && r.URL.Path == newAccountPath && f.policy.store != nil {
		t0 := time.Now()
		kid, ref := f.policy.newAccount(r.Context(), r.Host, body)
		f.checks.WithLabelValues("newAccount").Observe(time.Since(t0).Seconds())
		if ref != nil {
			f.refuse(w, r, ref)
			return
		}
		if kid != "" {
			r = r.WithContext(context.WithValue(r.Context(), bindKey{}, kid))
		}
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, finalizePrefix) && f.policy.store != nil {
		t0 := time.Now()
		ref := f.policy.finalize(r.Context(), body)
		f.checks.WithLabelValues("finalize").Observe(time.Since(t0).Seconds())
		if ref != nil {
			f.refuse(w, r, ref)
			return
		}
	}
	if r.Method == http.MethodPost && r.URL.Path == newOrderPath {
		t0 := time.Now()
		ref := f.policy.newOrder(r.Context(), body)
		f.checks.WithLabelValues("newOrder").Observe(time.Since(t0).Seconds())
		if ref != nil {
			f.refuse(w, r, ref)
			return
		}
		if len(body) <= maxBody {
			if aki, ok := replacesAKI(body); ok && !f.own[string(aki)] {
				f.log.Info("newOrder replaces another site's certificate: answered alreadyReplaced", "client", r.RemoteAddr)
				f.alreadyReplaced(w, r)
				return
			}
		}
	}
	if f.release != "" && r.Method == http.MethodGet && r.URL.Path == "/directory" {
		w.Header().Set(ReleaseHeader, f.release)
	}
	f.proxy.ServeHTTP(w, r)
}

// readBody reads a request's body (at most maxBody+1 bytes: a longer one
// is the WFE's to refuse) and puts it back for the WFE.
func readBody(r *http.Request) []byte {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	r.Body.Close()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body
}

// postBodyKey carries a POST's body (read once) to its answer.
type postBodyKey struct{}

// foreignNonce reports whether the POST req was signed with another
// site's nonce (its prefix is not this site's).
func (f *Front) foreignNonce(req *http.Request) bool {
	body, _ := req.Context().Value(postBodyKey{}).([]byte)
	n := jwsNonce(body)
	own := f.ownPrefix(req)
	return n != "" && own != "" && !strings.HasPrefix(n, own)
}

// unredeemable turns the WFE's 500 "Unable to validate JWS" for a request
// with another site's nonce into badNonce: the WFE redeems it at the site
// that issued it, and while that site's nonce service is unreachable
// (down, or its gRPC connection backing off after it returned) Boulder
// answers 500, where a client would retry badNonce with the answer's
// nonce (RFC 8555 §6.5) and succeed here. Any other answer passes.
func unredeemable(resp *http.Response) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if err == nil && bytes.Contains(body, []byte("urn:ietf:params:acme:error:serverInternal")) && bytes.Contains(body, []byte("Unable to validate JWS")) {
		replaceWithProblem(resp, http.StatusBadRequest, "urn:ietf:params:acme:error:badNonce",
			"the request's nonce was issued by another site of this CA cluster, which does not answer now: retry with the nonce of this answer")
		return
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
}

// noncePrefixLen is the length of the prefix Boulder's nonce service puts
// on every nonce (it names the service that issued it).
const noncePrefixLen = 8

// ownPrefix is this site's nonce prefix, learned from its WFE once.
func (f *Front) ownPrefix(r *http.Request) string {
	if v := f.prefix.Load(); v != nil {
		return v.(string)
	}
	n, err := f.nonce(r.Context(), r.Host)
	if err != nil || len(n) < noncePrefixLen {
		return ""
	}
	f.prefix.Store(n[:noncePrefixLen])
	return n[:noncePrefixLen]
}

// jwsNonce is the nonce in a flattened JWS's protected header.
func jwsNonce(body []byte) string {
	var j struct {
		Protected string `json:"protected"`
	}
	if json.Unmarshal(body, &j) != nil {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(j.Protected)
	if err != nil {
		return ""
	}
	var h struct {
		Nonce string `json:"nonce"`
	}
	json.Unmarshal(b, &h)
	return h.Nonce
}

// bindKey carries, from a newAccount to its answer, the EAB key to bind
// the account the WFE makes to.
type bindKey struct{}

// refuse answers a request the policy refused, counted by reason.
func (f *Front) refuse(w http.ResponseWriter, r *http.Request, ref *refusal) {
	f.policy.refused[ref.reason].Add(1)
	f.log.Info("refused", "path", r.URL.Path, "reason", ref.reason, "detail", ref.detail, "client", r.RemoteAddr)
	nonce, _ := f.nonce(r.Context(), r.Host)
	writeProblemSub(w, r.Host, nonce, ref.status, ref.typ, ref.detail, ref.sub)
}

// modifyResponse completes what the policy started: it binds a new
// account to its EAB key before the client learns of the account, and
// marks the directory when EAB is required.
func (f *Front) modifyResponse(resp *http.Response) error {
	req := resp.Request
	if resp.StatusCode == http.StatusInternalServerError && req.Method == http.MethodPost && f.foreignNonce(req) {
		unredeemable(resp)
	}
	if kid, ok := req.Context().Value(bindKey{}).(string); ok && (resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK) {
		if id := f.policy.ownAccount(resp.Header.Get("Location")); id != 0 {
			if err := f.policy.store.Bind(req.Context(), id, kid); err != nil {
				// The account exists but is unbound: the client is told
				// to retry, and its retry (an existing key with a valid
				// binding) binds it.
				f.log.Warn("binding a new account to its EAB key", "account", id, "kid", kid, "err", err)
				f.policy.refused[ReasonStoreError].Add(1)
				replaceWithProblem(resp, http.StatusServiceUnavailable, probServerInternal,
					"the account was created but could not be bound to its external account key: send the same request again")
				return nil
			}
			f.log.Info("account bound to its EAB key", "account", id, "kid", kid)
		}
	}
	if f.policy.required && req.Method == http.MethodGet && req.URL.Path == directoryPath && resp.StatusCode == http.StatusOK {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if out, err := rewriteDirectory(body); err == nil {
			body = out
		} else {
			f.log.Warn("directory is not JSON: passed unchanged", "err", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return nil
}

// replaceWithProblem turns the WFE's answer into a problem document; the
// WFE's fresh nonce stays.
func replaceWithProblem(resp *http.Response, status int, typ, detail string) {
	resp.Body.Close()
	b, _ := json.Marshal(map[string]any{"type": typ, "detail": detail, "status": status})
	resp.StatusCode, resp.Status = status, fmt.Sprintf("%d %s", status, http.StatusText(status))
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	for _, h := range []string{"Location", "Link"} {
		resp.Header.Del(h)
	}
	resp.Header.Set("Content-Type", "application/problem+json")
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	if status == http.StatusServiceUnavailable {
		resp.Header.Set("Retry-After", "5")
	}
}

// alreadyReplaced answers RFC 8555 style: a problem document with its
// status, a fresh nonce from the WFE (clients take the next nonce from
// every response), and the directory link.
func (f *Front) alreadyReplaced(w http.ResponseWriter, r *http.Request) {
	f.Foreign.Add(1)
	nonce, err := f.nonce(r.Context(), r.Host)
	if err != nil {
		f.log.Warn("new nonce for alreadyReplaced", "err", err)
		panic(http.ErrAbortHandler)
	}
	writeProblem(w, r.Host, nonce, http.StatusConflict, "urn:ietf:params:acme:error:alreadyReplaced",
		"the certificate named in 'replaces' was issued by another site of this CA cluster (the ACME name moved); order again without 'replaces'")
}

func (f *Front) nonce(ctx context.Context, host string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, f.upstream.JoinPath("/acme/new-nonce").String(), nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		return "", fmt.Errorf("no Replay-Nonce (HTTP %d)", resp.StatusCode)
	}
	return n, nil
}

// jwsPayload is the decoded payload of a flattened JWS.
func jwsPayload(body []byte) ([]byte, bool) {
	var jws struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(body, &jws) != nil {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	return payload, err == nil
}

// revokedAKI reads the authority key identifier of the certificate a
// revokeCert's JWS payload carries; the WFE that gets it checks the rest.
func revokedAKI(body []byte) ([]byte, bool) {
	payload, ok := jwsPayload(body)
	if !ok {
		return nil, false
	}
	var req struct {
		Certificate string `json:"certificate"`
	}
	if json.Unmarshal(payload, &req) != nil {
		return nil, false
	}
	der, err := base64.RawURLEncoding.DecodeString(req.Certificate)
	if err != nil {
		return nil, false
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil || len(cert.AuthorityKeyId) == 0 {
		return nil, false
	}
	return cert.AuthorityKeyId, true
}

// forwardRevocation passes a revokeCert to the issuing site's front, with
// the client's Host (the ACME name: the JWS url names it), and relays the
// answer. An issuing site that does not answer gets the client a 503.
func (f *Front) forwardRevocation(w http.ResponseWriter, r *http.Request, body []byte, p Peer) {
	hc := f.peerClient(r, p)
	// Unchanged, this site's nonce included: the issuing site's WFE
	// redeems it here (every WFE reaches every site's nonce service, and
	// routes a nonce by its prefix to the one that issued it).
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "https://"+r.Host+revokePath, bytes.NewReader(body))
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	f.relay(w, r, hc, req, p, "revokeCert", "it was NOT revoked. Retry later, or ask the CA operator to revoke it (cairn revoke)", 60)
}

// forwardRenewalInfo passes an ARI renewal-info request for another
// site's certificate to the issuing site's front: only that site knows
// the certificate (its window, whether it was revoked: "renew now").
// Boulder alone would answer 404 "not a known issuer", which tells an
// ARI client the certificate is unknown; when the issuing site does not
// answer, the client gets 503 with Retry-After, which RFC 9773 clients
// retry.
func (f *Front) forwardRenewalInfo(w http.ResponseWriter, r *http.Request, p Peer) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "https://"+r.Host+r.URL.Path, nil)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	f.ariForwarded.Add(1)
	// Retry-After 1: clients retry a 503 honouring it (lego v5 five
	// times) before they fall back to their own schedule; 60 s each held
	// a renewal for five minutes while the issuing site was down.
	f.relay(w, r, f.peerClient(r, p), req, p, "renewal-info", "retry later", 1)
}

// relay sends req (a client's request, unchanged) to p's front and
// relays its answer; when p does not answer, the client gets 503 with
// Retry-After (seconds) and what the request did not do.
func (f *Front) relay(w http.ResponseWriter, r *http.Request, hc *http.Client, req *http.Request, p Peer, what, notDone string, retryAfter int) {
	req.Header.Set(forwardedHeader, f.site)
	resp, err := hc.Do(req)
	if err != nil {
		f.log.Warn(what+" of another site's certificate: that site does not answer", "site", p.Site, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		f.problem(w, r, http.StatusServiceUnavailable, "urn:ietf:params:acme:error:serverInternal",
			fmt.Sprintf("the certificate was issued by site %s of this CA cluster, which does not answer: %s", p.Site, notDone))
		return
	}
	defer resp.Body.Close()
	f.log.Info(what+" of another site's certificate passed to it", "site", p.Site, "status", resp.StatusCode)
	for _, h := range []string{"Content-Type", "Replay-Nonce", "Link", "Retry-After", "Cache-Control"} {
		for _, v := range resp.Header.Values(h) {
			w.Header().Add(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, maxBody))
}

// ariAKI reads the authority key identifier of an ARI certificate ID
// (RFC 9773 §4.1: base64url(AKI) "." base64url(serial)); the WFE that
// gets the request checks the rest.
func ariAKI(certID string) ([]byte, bool) {
	enc, serial, ok := strings.Cut(certID, ".")
	if !ok || enc == "" || serial == "" || strings.Contains(serial, ".") {
		return nil, false
	}
	aki, err := base64.RawURLEncoding.DecodeString(enc)
	return aki, err == nil && len(aki) > 0
}

// peerClient reaches p's front over TLS for the client's host name.
func (f *Front) peerClient(r *http.Request, p Peer) *http.Client {
	tc := f.peerTLS.Clone()
	tc.ServerName = hostOnly(r.Host)
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, p.Addr)
		}}}
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// problem answers an RFC 8555 problem document with a fresh nonce from
// this site's WFE.
func (f *Front) problem(w http.ResponseWriter, r *http.Request, status int, typ, detail string) {
	nonce, _ := f.nonce(r.Context(), r.Host)
	writeProblem(w, r.Host, nonce, status, typ, detail)
}

// writeProblem answers an RFC 8555 problem document: its status, the nonce
// (if any: clients take the next one from every response), the directory
// link, and Retry-After on 503.
func writeProblem(w http.ResponseWriter, host, nonce string, status int, typ, detail string) {
	writeProblemSub(w, host, nonce, status, typ, detail, nil)
}

// writeProblemSub is writeProblem with RFC 8555 §6.7.1 subproblems.
func writeProblemSub(w http.ResponseWriter, host, nonce string, status int, typ, detail string, sub []subproblem) {
	if nonce != "" {
		w.Header().Set("Replay-Nonce", nonce)
	}
	w.Header().Set("Link", fmt.Sprintf(`<https://%s/directory>;rel="index"`, host))
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "60")
	}
	w.WriteHeader(status)
	doc := map[string]any{"type": typ, "detail": detail, "status": status}
	if len(sub) > 0 {
		doc["subproblems"] = sub
	}
	json.NewEncoder(w).Encode(doc)
}

// replacesAKI reads the authority key identifier of the certificate a
// newOrder's "replaces" names (RFC 9773: base64url(AKI) "." base64url(serial)),
// from the JWS payload. The signature is the WFE's to check; the front
// only ever refuses, and cannot change what it forwards.
func replacesAKI(body []byte) ([]byte, bool) {
	payload, ok := jwsPayload(body)
	if !ok {
		return nil, false
	}
	var order struct {
		Replaces string `json:"replaces"`
	}
	if json.Unmarshal(payload, &order) != nil || order.Replaces == "" {
		return nil, false
	}
	akiPart, _, ok := strings.Cut(order.Replaces, ".")
	if !ok {
		return nil, false
	}
	aki, err := base64.RawURLEncoding.DecodeString(akiPart)
	if err != nil || len(aki) == 0 {
		return nil, false // malformed: the WFE answers it
	}
	return aki, true
}

// Serve runs the front on c.Listen until ctx ends.
func Serve(ctx context.Context, c *Config, log *slog.Logger) error {
	f, err := New(c, log)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	// ReadHeaderTimeout also bounds the TLS handshake (net/http takes the
	// shortest of its read and write deadlines for it).
	srv := &http.Server{Addr: c.Listen, Handler: f, ReadHeaderTimeout: deadlines.handshake,
		ReadTimeout: deadlines.read, WriteTimeout: deadlines.write, IdleTimeout: deadlines.idle, MaxHeaderBytes: maxHeaderBytes,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	inner, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	// Every connection is the ACME server's, whatever name it asks for:
	// nothing else is reachable on this port (the controller reaches the
	// site through its agent, package agent).
	capped := connlimit.New(inner, c.MaxConns, c.MaxConnsPerSource, log)
	var metrics *connlimit.Server
	if c.MetricsListen != "" {
		var err error
		if metrics, err = connlimit.ServeHTTP(c.MetricsListen, "metricsListen", metricsHandler(f, capped.Stats, *c), log); err != nil {
			capped.Close()
			return err
		}
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for {
			select {
			case <-usr1:
				f.CloseConnections()
				log.Info("closing every connection after its next answer (site drained)")
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if metrics != nil {
					metrics.Shutdown(sctx)
				}
				srv.Shutdown(sctx)
				return
			}
		}
	}()
	log.Info("acme front listening", "addr", c.Listen, "upstream", c.Upstream, "issuers", len(f.own), "metrics", c.MetricsListen)
	if err := srv.ServeTLS(capped, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
