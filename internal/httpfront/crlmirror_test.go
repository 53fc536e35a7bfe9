package httpfront

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// issuerFor makes a self-signed CRL issuer.
func issuerFor(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "b E1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// crlDER is a CRL of number n naming the shard URL url in its IDP.
func crlDER(t *testing.T, issuer *x509.Certificate, key *ecdsa.PrivateKey, n int64, url string) []byte {
	t.Helper()
	type gn struct {
		URI string `asn1:"tag:6,ia5"`
	}
	type dpName struct {
		FullName []gn `asn1:"tag:0"`
	}
	type idp struct {
		DP dpName `asn1:"tag:0"`
	}
	v, err := asn1.Marshal(idp{DP: dpName{FullName: []gn{{URI: url}}}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: idpOID, Critical: true, Value: v}}}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// mirrorWithPeer is site a's mirror (own issuer NameID 1) with one peer
// (issuers NameID 7) serving served by path; issuer is stored under
// issuerID; asked, when given, records each request and its copy-only
// header.
func mirrorWithPeer(t *testing.T, issuer *x509.Certificate, issuerID int, served map[string][]byte, asked *[]string) (*CRLMirror, *httptest.Server) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "issuers"), 0o755)
	os.WriteFile(filepath.Join(dir, "issuers", fmt.Sprintf("%d.der", issuerID)), issuer.Raw, 0o644)
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if asked != nil {
			*asked = append(*asked, r.URL.Path+" copy-only="+r.Header.Get(copyOnlyHeader))
		}
		if b, ok := served[r.URL.Path]; ok {
			w.Write(b)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(peer.Close)
	return &CRLMirror{Dir: filepath.Join(dir, "mirror"), Bucket: "crls", Issuers: filepath.Join(dir, "issuers"), Own: []int64{1}, Shards: 2,
		Peers: []Peer{{URL: peer.URL, NameIDs: []int64{7}}}}, peer
}

// The mirror copies a peer's valid CRLs, never rolls a number back, refuses
// a CRL signed by another key or naming another shard, and its front
// serves the owner's fresh CRL while the owner answers, its copy after.
func TestCRLMirror(t *testing.T) {
	issuer, key := issuerFor(t)
	_, otherKey := issuerFor(t)
	served := map[string][]byte{}
	m, peer := mirrorWithPeer(t, issuer, 7, served, nil)
	url := func(shard int) string { return fmt.Sprintf("http://crl.b.lab.home.arpa/crls/7/%d.crl", shard) }
	served["/crls/7/1.crl"] = crlDER(t, issuer, key, 5, url(1))
	served["/crls/7/2.crl"] = crlDER(t, issuer, otherKey, 5, url(2)) // not its issuer's signature
	ctx := context.Background()
	n, err := m.Once(ctx, http.DefaultClient)
	if n != 1 || err == nil {
		t.Fatalf("first copy: %d written, %v (want 1 and the bad signature reported)", n, err)
	}
	number := func() int64 {
		b, err := os.ReadFile(filepath.Join(m.Dir, "crls", "7", "1.crl"))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseRevocationList(b)
		return c.Number.Int64()
	}
	served["/crls/7/1.crl"] = crlDER(t, issuer, key, 4, url(1)) // older
	delete(served, "/crls/7/2.crl")
	if m.Once(ctx, http.DefaultClient); number() != 5 {
		t.Fatalf("rolled back to %d", number())
	}
	served["/crls/7/1.crl"] = crlDER(t, issuer, key, 6, url(2)) // names shard 2
	if m.Once(ctx, http.DefaultClient); number() != 5 {
		t.Fatalf("took another shard's CRL: %d", number())
	}
	served["/crls/7/1.crl"] = crlDER(t, issuer, key, 6, url(1))
	m.Once(ctx, http.DefaultClient)
	if number() != 6 {
		t.Fatalf("newer not copied: %d", number())
	}

	// The front: fresh from the owner, then the copy once the owner is gone.
	front := httptest.NewServer(m.handler(http.NotFoundHandler()))
	defer front.Close()
	get := func() int64 {
		resp, err := http.Get(front.URL + "/crls/7/1.crl")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		c, err := x509.ParseRevocationList(b)
		if err != nil {
			t.Fatalf("front: %d %q", resp.StatusCode, b)
		}
		return c.Number.Int64()
	}
	served["/crls/7/1.crl"] = crlDER(t, issuer, key, 8, url(1))
	if got := get(); got != 8 || number() != 8 {
		t.Fatalf("owner up: served %d, copy %d (want 8 and 8)", got, number())
	}
	peer.Close()
	if got := get(); got != 8 {
		t.Fatalf("owner down: served %d, want the copy (8)", got)
	}
}

// A site on a new disk, before it published again: its own store has no
// CRL for a shard, so its front serves a peer's copy (checked against its
// own issuer; asked at most once per fetchEvery, then kept) instead of a
// 404; it asks with the copy-only header, and answers a request carrying
// that header from its own store alone, so two fronts never ask each
// other back and forth.
func TestOwnCRLFromPeersCopy(t *testing.T) {
	issuer, key := issuerFor(t)
	_, otherKey := issuerFor(t)
	copies := map[string][]byte{}
	var asked []string
	m, _ := mirrorWithPeer(t, issuer, 1, copies, &asked)
	front := httptest.NewServer(m.handler(http.NotFoundHandler()))
	defer front.Close()
	get := func(path string, copyOnly bool) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, front.URL+path, nil)
		if copyOnly {
			req.Header.Set(copyOnlyHeader, "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	good := crlDER(t, issuer, key, 5, "http://crl.a.lab.home.arpa/crls/1/1.crl")
	copies["/crls/1/1.crl"] = good
	copies["/crls/1/2.crl"] = crlDER(t, issuer, otherKey, 5, "http://crl.a.lab.home.arpa/crls/1/2.crl")
	if status, b := get("/crls/1/1.crl", false); status != 200 || string(b) != string(good) {
		t.Errorf("own shard missing from the store: HTTP %d, want the peer's copy", status)
	}
	if status, _ := get("/crls/1/2.crl", false); status != 404 {
		t.Errorf("own shard whose only copy is signed by another key: HTTP %d, want 404", status)
	}
	delete(copies, "/crls/1/1.crl")
	if status, b := get("/crls/1/1.crl", false); status != 200 || string(b) != string(good) {
		t.Errorf("asked again within fetchEvery: HTTP %d, want the kept copy", status)
	}
	if status, _ := get("/crls/1/1.crl", true); status != 404 {
		t.Errorf("a front's copy-only request for an own shard: HTTP %d, want its own store's answer (404)", status)
	}
	want := []string{"/crls/1/1.crl copy-only=1", "/crls/1/2.crl copy-only=1"}
	if fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Errorf("the peer was asked %q, want %q", asked, want)
	}
}
