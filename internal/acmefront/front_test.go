package acmefront

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func issuer(t *testing.T, dir, name string) (file string, ski []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file = filepath.Join(dir, name+".pem")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return file, cert.SubjectKeyId
}

func jws(payload map[string]any) string {
	p, _ := json.Marshal(payload)
	b, _ := json.Marshal(map[string]string{"protected": "e30", "payload": base64.RawURLEncoding.EncodeToString(p), "signature": "c2ln"})
	return string(b)
}

func certID(aki []byte) string {
	return base64.RawURLEncoding.EncodeToString(aki) + "." + base64.RawURLEncoding.EncodeToString([]byte{0x02, 0x11})
}

// Only a replaces naming another site's issuer is refused, as
// alreadyReplaced with its status, a fresh nonce and the directory link;
// everything else reaches the WFE unchanged, with the client's Host.
func TestFrontRefusesOnlyForeignReplaces(t *testing.T) {
	dir := t.TempDir()
	ownFile, ownSKI := issuer(t, dir, "b-E1")
	_, foreignSKI := issuer(t, dir, "a-E1")
	var got []string
	wfe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && r.URL.Path == "/acme/new-nonce" {
			w.Header().Set("Replay-Nonce", "nonce-"+r.Host)
			return
		}
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.Host+" "+r.Header.Get("X-Forwarded-Proto")+" "+r.Header.Get("X-Real-IP")+" "+string(body))
		w.WriteHeader(http.StatusCreated)
	}))
	defer wfe.Close()
	f, err := New(&Config{Upstream: wfe.URL, Issuers: []string{ownFile}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(f)
	defer front.Close()
	post := func(body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, front.URL+newOrderPath, strings.NewReader(body))
		req.Host = "acme.lab.home.arpa"
		req.Header.Set("Content-Type", "application/jose+json")
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	resp := post(jws(map[string]any{"identifiers": []any{}, "replaces": certID(foreignSKI)}))
	var prob struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	json.NewDecoder(resp.Body).Decode(&prob)
	if resp.StatusCode != http.StatusConflict || prob.Type != "urn:ietf:params:acme:error:alreadyReplaced" || prob.Status != 409 ||
		resp.Header.Get("Replay-Nonce") != "nonce-acme.lab.home.arpa" || resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(resp.Header.Get("Link"), `<https://acme.lab.home.arpa/directory>;rel="index"`) {
		t.Errorf("foreign replaces: HTTP %d %+v headers %v", resp.StatusCode, prob, resp.Header)
	}
	if len(got) != 0 || f.Foreign.Load() != 1 {
		t.Errorf("a refused order reached the WFE (%q) or was not counted (%d)", got, f.Foreign.Load())
	}

	for _, body := range []string{
		jws(map[string]any{"identifiers": []any{}, "replaces": certID(ownSKI)}), // own certificate: the WFE judges it
		jws(map[string]any{"identifiers": []any{}}),                             // no ARI
		jws(map[string]any{"replaces": "not base64!.x"}),                        // malformed: the WFE answers it
		"not json",
	} {
		got = nil
		if resp := post(body); resp.StatusCode != http.StatusCreated || len(got) != 1 || got[0] != "acme.lab.home.arpa https 127.0.0.1 "+body {
			t.Errorf("%.40s: HTTP %d, WFE saw %q", body, resp.StatusCode, got)
		}
	}
}

// With the WFE gone the client's connection is cut, as if nothing
// listened: not a 502 that probes would count as a soft HTTP error.
func TestFrontCutsConnectionsWhenTheWFEIsDown(t *testing.T) {
	dir := t.TempDir()
	ownFile, _ := issuer(t, dir, "b-E1")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	f, err := New(&Config{Upstream: dead.URL, Issuers: []string{ownFile}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(f)
	defer front.Close()
	front.Config.ErrorLog = slog.NewLogLogger(slog.NewTextHandler(io.Discard, nil).WithAttrs(nil), slog.LevelDebug)
	resp, err := front.Client().Get(front.URL + "/directory")
	if err == nil {
		t.Fatalf("got HTTP %d, want a cut connection", resp.StatusCode)
	}
}

func TestNewRefusesAFrontWithoutIssuers(t *testing.T) {
	if _, err := New(&Config{Upstream: "http://127.0.0.1:1"}, slog.Default()); err == nil || !strings.Contains(err.Error(), "issuers") {
		t.Errorf("err %v", err)
	}
}

// leafOf makes a certificate whose AKI is ski (as if issued by it).
func leafOf(t *testing.T, ski []byte) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x02aa), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		AuthorityKeyId: ski}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// A revokeCert of another site's certificate goes to that site's front
// (TLS checked against the cluster root, the client's Host kept) and its
// answer comes back; with that site down the client gets 503
// serverInternal with Retry-After and a nonce, never the WFE's 404.
func TestFrontPassesForeignRevocationsToTheirSite(t *testing.T) {
	dir := t.TempDir()
	ownFile, ownSKI := issuer(t, dir, "a-E1")
	peerIssuer, peerSKI := issuer(t, dir, "b-E1")
	var wfeSaw, peerSaw []string
	wfe := nonceWFE(t, &wfeSaw, http.StatusOK)
	peer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Replay-Nonce", "bbbbbbbb-fresh")
			return
		}
		b, _ := io.ReadAll(r.Body)
		peerSaw = append(peerSaw, r.Host+" "+r.URL.Path+" "+string(b))
		w.Header().Set("Replay-Nonce", "b-nonce")
		w.WriteHeader(http.StatusOK)
	}))
	rootFile := filepath.Join(dir, "root.pem")
	os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: peer.Certificate().Raw}), 0o644)
	f, err := New(&Config{Upstream: wfe.URL, Issuers: []string{ownFile}, RootFile: rootFile,
		Peers: []Peer{{Site: "b", Addr: peer.Listener.Addr().String(), Issuers: []string{peerIssuer}}}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(f)
	defer front.Close()
	revoke := func(der []byte, nonce string) *http.Response {
		p, _ := json.Marshal(map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(der), "reason": 1})
		h, _ := json.Marshal(map[string]string{"nonce": nonce})
		b, _ := json.Marshal(map[string]string{"protected": base64.RawURLEncoding.EncodeToString(h), "payload": base64.RawURLEncoding.EncodeToString(p), "signature": "c2ln"})
		body := string(b)
		req, _ := http.NewRequest(http.MethodPost, front.URL+revokePath, strings.NewReader(body))
		req.Host = "example.com" // the name in httptest's certificate
		req.Header.Set("Content-Type", "application/jose+json")
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// With a nonce of this site, unchanged (the issuing site's WFE redeems
	// it here), with the client's Host; the answer comes back.
	if resp := revoke(leafOf(t, peerSKI), "aaaaaaaa-old"); resp.StatusCode != 200 || resp.Header.Get("Replay-Nonce") != "b-nonce" || len(peerSaw) != 1 ||
		!strings.HasPrefix(peerSaw[0], "example.com "+revokePath+" {") || !strings.Contains(peerSaw[0], `"protected":"`+base64.RawURLEncoding.EncodeToString([]byte(`{"nonce":"aaaaaaaa-old"}`))) || len(wfeSaw) != 0 {
		t.Fatalf("foreign revocation: HTTP %d nonce %q, peer saw %q, own WFE saw %q", resp.StatusCode, resp.Header.Get("Replay-Nonce"), peerSaw, wfeSaw)
	}
	var prob struct {
		Type, Detail string
	}
	if resp := revoke(leafOf(t, ownSKI), "aaaaaaaa-x"); resp.StatusCode != 200 || len(wfeSaw) != 1 || len(peerSaw) != 1 {
		t.Fatalf("own revocation: HTTP %d, own WFE saw %q, peer %q", resp.StatusCode, wfeSaw, peerSaw)
	}
	peer.Close()
	resp := revoke(leafOf(t, peerSKI), "aaaaaaaa-y")
	json.NewDecoder(resp.Body).Decode(&prob)
	if resp.StatusCode != http.StatusServiceUnavailable || prob.Type != "urn:ietf:params:acme:error:serverInternal" || !strings.Contains(prob.Detail, "NOT revoked") ||
		resp.Header.Get("Retry-After") == "" || resp.Header.Get("Replay-Nonce") != "aaaaaaaa-fresh" {
		t.Fatalf("peer down: HTTP %d %+v %v", resp.StatusCode, prob, resp.Header)
	}
}

// The directory names the site's release (for the controller's probes);
// other answers do not.
func TestFrontNamesItsReleaseOnTheDirectory(t *testing.T) {
	own, _ := issuer(t, t.TempDir(), "a-E1")
	wfe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
	defer wfe.Close()
	f, err := New(&Config{Upstream: wfe.URL, Issuers: []string{own}, Release: &Release{Site: "a", Boulder: "v0.20260921.0", Bundle: "0123abcd4567"}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(f)
	defer front.Close()
	for path, want := range map[string]string{"/directory": "site=a; boulder=v0.20260921.0; bundle=0123abcd4567", "/acme/new-nonce": ""} {
		resp, err := http.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get(ReleaseHeader); got != want {
			t.Errorf("%s: %s %q, want %q", path, ReleaseHeader, got, want)
		}
	}
}

// Once told to close connections, the front answers as before but ends
// every keep-alive connection after its answer: a client that kept one
// opens a new connection (and resolves the ACME name again) instead of
// losing a request to the restart.
func TestFrontClosesKeepAliveConnectionsWhenDrained(t *testing.T) {
	own, _ := issuer(t, t.TempDir(), "a-E1")
	wfe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
	defer wfe.Close()
	f, err := New(&Config{Upstream: wfe.URL, Issuers: []string{own}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(f)
	defer front.Close()
	get := func() *http.Response {
		resp, err := http.Get(front.URL + "/directory")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := get(); r.Close || r.StatusCode != http.StatusOK {
		t.Fatalf("before: close %v status %d", r.Close, r.StatusCode)
	}
	f.CloseConnections()
	if r := get(); !r.Close || r.StatusCode != http.StatusOK {
		t.Fatalf("after: close %v status %d (want Connection: close and the answer)", r.Close, r.StatusCode)
	}
}

// An ARI renewal-info request for another site's certificate is passed to
// that site's front (the client's Host and path kept, marked as
// forwarded) and its answer relayed, Retry-After included; one already
// forwarded is never passed on again; with that site down the client
// gets 503 with Retry-After (RFC 9773 clients retry), never Boulder's 404.
func TestFrontPassesForeignRenewalInfoToItsSite(t *testing.T) {
	dir := t.TempDir()
	ownFile, ownSKI := issuer(t, dir, "a-E1")
	peerIssuer, peerSKI := issuer(t, dir, "b-E1")
	var wfeSaw, peerSaw []string
	wfe := nonceWFE(t, &wfeSaw, http.StatusNotFound)
	peer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peerSaw = append(peerSaw, r.Method+" "+r.Host+" "+r.URL.Path+" by="+r.Header.Get(forwardedHeader))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "21600")
		w.Write([]byte(`{"suggestedWindow":{"start":"2026-12-06T00:00:00Z","end":"2026-12-07T00:00:00Z"}}`))
	}))
	rootFile := filepath.Join(dir, "root.pem")
	os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: peer.Certificate().Raw}), 0o644)
	f, err := New(&Config{Upstream: wfe.URL, Issuers: []string{ownFile}, RootFile: rootFile, Release: &Release{Site: "a"},
		Peers: []Peer{{Site: "b", Addr: peer.Listener.Addr().String(), Issuers: []string{peerIssuer}}}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(f)
	defer front.Close()
	certID := func(ski []byte) string {
		return base64.RawURLEncoding.EncodeToString(ski) + "." + base64.RawURLEncoding.EncodeToString([]byte{0x02, 0xaa})
	}
	get := func(id string, hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, front.URL+renewalInfoPath+id, nil)
		req.Host = "example.com"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := get(certID(peerSKI))
	if resp.StatusCode != 200 || resp.Header.Get("Retry-After") != "21600" || !strings.Contains(body, "suggestedWindow") ||
		len(peerSaw) != 1 || peerSaw[0] != "GET example.com "+renewalInfoPath+certID(peerSKI)+" by=a" || len(wfeSaw) != 0 {
		t.Fatalf("foreign renewal-info: HTTP %d %q, peer saw %q, own WFE saw %q", resp.StatusCode, body, peerSaw, wfeSaw)
	}
	if resp, _ := get(certID(ownSKI)); resp.StatusCode != 404 || len(wfeSaw) != 1 || len(peerSaw) != 1 {
		t.Fatalf("own renewal-info: HTTP %d, own WFE saw %q, peer %q", resp.StatusCode, wfeSaw, peerSaw)
	}
	for _, bad := range []string{"no-dot", "!!." + "AqoA", certID(peerSKI) + "x.y"} {
		if resp, _ := get(bad); resp.StatusCode != 404 || len(peerSaw) != 1 {
			t.Fatalf("malformed ID %q: HTTP %d, peer saw %q (the WFE answers what the front cannot parse)", bad, resp.StatusCode, peerSaw)
		}
	}
	if resp, _ := get(certID(peerSKI), forwardedHeader, "b"); resp.StatusCode != 404 || len(peerSaw) != 1 {
		t.Fatalf("already forwarded: HTTP %d, peer saw %q (must go to the own WFE, never on again)", resp.StatusCode, peerSaw)
	}
	peer.Close()
	resp, body = get(certID(peerSKI))
	var prob struct{ Type, Detail string }
	json.Unmarshal([]byte(body), &prob)
	// Retry-After 1: a client retrying honours it before it falls back.
	if resp.StatusCode != http.StatusServiceUnavailable || prob.Type != "urn:ietf:params:acme:error:serverInternal" || !strings.Contains(prob.Detail, "site b") ||
		resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("peer down: HTTP %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if got := f.ariForwarded.Load(); got != 2 {
		t.Errorf("renewal-info forwarded counter %d, want 2", got)
	}
}

// nonceWFE is a WFE that hands out the nonce "aaaaaaaa-fresh" (prefix
// aaaaaaaa) and answers every other request with status, noting its path.
func nonceWFE(t *testing.T, saw *[]string, status int) *httptest.Server {
	wfe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Replay-Nonce", "aaaaaaaa-fresh")
			return
		}
		*saw = append(*saw, r.URL.Path)
		w.WriteHeader(status)
	}))
	t.Cleanup(wfe.Close)
	return wfe
}

// A request signed with another site's nonce that the WFE could not
// redeem there (500 "Unable to validate JWS": that site's nonce service
// unreachable) is answered badNonce, which clients retry with the
// answer's nonce; with this site's nonce, or any other 500, the WFE's
// answer passes unchanged.
func TestFrontTurnsAnUnredeemablePeerNonceIntoBadNonce(t *testing.T) {
	own, _ := issuer(t, t.TempDir(), "a-E1")
	answer := `{"type":"urn:ietf:params:acme:error:serverInternal","detail":"Unable to validate JWS","status":500}`
	wfe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Replay-Nonce", "aaaaaaaa-fresh")
		if r.Method == http.MethodHead {
			return
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(answer))
	}))
	defer wfe.Close()
	f, err := New(&Config{Upstream: wfe.URL, Issuers: []string{own}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(f)
	defer front.Close()
	post := func(nonce string) (int, string, string) {
		h, _ := json.Marshal(map[string]string{"nonce": nonce})
		b, _ := json.Marshal(map[string]string{"protected": base64.RawURLEncoding.EncodeToString(h), "payload": "", "signature": "c2ln"})
		resp, err := http.Post(front.URL+"/acme/new-order", "application/jose+json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header.Get("Replay-Nonce")
	}
	if status, body, nonce := post("bbbbbbbb-old"); status != http.StatusBadRequest || !strings.Contains(body, "urn:ietf:params:acme:error:badNonce") || nonce != "aaaaaaaa-fresh" {
		t.Errorf("another site's nonce, unredeemable: HTTP %d %s nonce %q, want badNonce with this site's nonce", status, body, nonce)
	}
	if status, body, _ := post("aaaaaaaa-old"); status != http.StatusInternalServerError || body != answer {
		t.Errorf("this site's nonce: HTTP %d %s, want the WFE's 500 unchanged", status, body)
	}
	answer = `{"type":"urn:ietf:params:acme:error:serverInternal","detail":"Error creating new order","status":500}`
	if status, body, _ := post("bbbbbbbb-old"); status != http.StatusInternalServerError || body != answer {
		t.Errorf("another site's nonce, another 500: HTTP %d %s, want it unchanged", status, body)
	}
}
