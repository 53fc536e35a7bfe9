package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/testenv"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) ca {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return ca{c, key}
}

func (c ca) leaf(t *testing.T, name string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fake records what reached "Boulder".
type fake struct {
	mu    sync.Mutex
	calls []string
	err   error
	hold  chan struct{}
}

func (f *fake) note(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return f.err
}
func (f *fake) Revoke(_ context.Context, serial, reason string) error {
	return f.note("revoke " + serial + " " + reason)
}
func (f *fake) BlockKey(_ context.Context, h, c string) error { return f.note("block " + h) }
func (f *fake) PublishCRLs(context.Context) error             { return f.note("publish") }

// Backup writes "part one", then fails with f.err, or waits for f.hold
// (when set) and writes " part two".
func (f *fake) Backup(ctx context.Context, w io.Writer) error {
	f.note("backup")
	io.WriteString(w, "part one")
	if f.err != nil {
		return f.err
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, err := io.WriteString(w, " part two")
	return err
}

// agentForTest serves an agent of site "b" (serial prefix 0x02) on a
// loopback port and returns its address and the site's CA.
func agentForTest(t *testing.T, b Backend) (string, ca) {
	t.Helper()
	return agentWith(t, b, func(*Config) {})
}

// agentWith is agentForTest with its config changed by edit.
func agentWith(t *testing.T, b Backend, edit func(*Config)) (string, ca) {
	t.Helper()
	dir := t.TempDir()
	site := newCA(t, "b internal gRPC CA")
	server := site.leaf(t, ServerName)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", site.cert.Raw)
	writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", server.Certificate[0])
	kder, _ := x509.MarshalECPrivateKey(server.PrivateKey.(*ecdsa.PrivateKey))
	writePEM(t, filepath.Join(dir, "key.pem"), "EC PRIVATE KEY", kder)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	c := &Config{Site: "b", Listen: addr, CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
		ClientCAFile: filepath.Join(dir, "ca.pem"), ClientNames: []string{ControllerName}, SerialPrefix: 2}
	edit(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, c, b, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(t, "the agent listening", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, site
}

func clientWith(site ca, certs ...tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(site.cert)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: ServerName, Certificates: certs}}}
}

func post(hc *http.Client, addr, path, body string) (int, Answer, error) {
	resp, err := hc.Post("https://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, Answer{}, err
	}
	defer resp.Body.Close()
	var a Answer
	json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a, nil
}

const ownSerial = "02aabbccddeeff00112233445566778899aa"

// Who may call the agent: only a certificate of the site's CA naming
// controller.cairn. A stranger without one, a controller certificate of
// another CA, and a certificate of one of the site's own services (a
// stolen WFE key) are refused in the handshake; nothing reaches Boulder.
func TestAgentServesOnlyTheController(t *testing.T) {
	f := &fake{}
	addr, site := agentForTest(t, f)
	other := newCA(t, "another site's CA")
	cases := []struct {
		who string
		hc  *http.Client
		ok  bool
	}{
		{"no client certificate", clientWith(site), false},
		{"controller.cairn of another CA", clientWith(site, other.leaf(t, ControllerName)), false},
		{"wfe.boulder of the site's CA", clientWith(site, site.leaf(t, "wfe.boulder")), false},
		{"admin.boulder of the site's CA", clientWith(site, site.leaf(t, "admin.boulder")), false},
		{"controller.cairn of the site's CA", clientWith(site, site.leaf(t, ControllerName)), true},
	}
	for _, c := range cases {
		status, a, err := post(c.hc, addr, "/v1/revoke", `{"serial":"`+ownSerial+`","reason":"superseded"}`)
		if c.ok != (err == nil && status == http.StatusOK) {
			t.Errorf("%s: status %d %+v, err %v", c.who, status, a, err)
		}
	}
	if len(f.calls) != 1 || f.calls[0] != "revoke "+ownSerial+" superseded" {
		t.Errorf("reached Boulder: %q, want the controller's one revocation", f.calls)
	}
}

// What the controller may ask is checked before Boulder sees it: only
// this site's serials, known reasons, a key hash, no unknown fields; and
// there is nothing else to call (no order, no finalize, no account).
func TestAgentRefusesWhatIsNotItsToDo(t *testing.T) {
	f := &fake{}
	addr, site := agentForTest(t, f)
	hc := clientWith(site, site.leaf(t, ControllerName))
	for _, c := range []struct {
		path, body string
		status     int
		says       string
	}{
		{"/v1/revoke", `{"serial":"01aabbccddeeff00112233445566778899aa","reason":"superseded"}`, 403, "not this site's prefix"},
		{"/v1/revoke", `{"serial":"02AABBCCDDEEFF00112233445566778899AA","reason":"superseded"}`, 403, "lower-case"},
		{"/v1/revoke", `{"serial":"02aa","reason":"superseded"}`, 403, "36 lower-case hex"},
		{"/v1/revoke", `{"serial":"` + ownSerial + `","reason":"caCompromise"}`, 400, "use one of"},
		{"/v1/revoke", `{"serial":"` + ownSerial + `","reason":"superseded","extra":1}`, 400, "not a request"},
		{"/v1/block-key", `{"spkiHash":"abc"}`, 400, "64 hex digits"},
		{"/v1/block-key", `{"spkiHash":"` + strings.Repeat("ab", 32) + `","comment":"a\nb"}`, 400, "one line"},
		{"/acme/new-order", `{}`, 404, ""},
		{"/v1/finalize", `{}`, 404, ""},
	} {
		status, a, err := post(hc, addr, c.path, c.body)
		if err != nil || status != c.status || !strings.Contains(a.Error, c.says) {
			t.Errorf("%s %s: %d %+v %v, want %d %q", c.path, c.body, status, a, err, c.status, c.says)
		}
	}
	if len(f.calls) != 0 {
		t.Errorf("reached Boulder: %q", f.calls)
	}
	// Boulder's answers come back as such.
	f.err = ErrAlreadyRevoked
	if status, a, _ := post(hc, addr, "/v1/revoke", `{"serial":"`+ownSerial+`","reason":"keyCompromise"}`); status != 200 || a.Result != "alreadyRevoked" {
		t.Errorf("already revoked: %d %+v", status, a)
	}
	f.err = errors.New("rpc error: code = Unavailable")
	if status, a, _ := post(hc, addr, "/v1/publish-crls", `{}`); status != http.StatusBadGateway || !strings.Contains(a.Error, "Unavailable") {
		t.Errorf("Boulder down: %d %+v", status, a)
	}
}

// A stranger on the management network opening connections by the
// hundred, with no certificate: each is refused in the handshake or reset
// over the source's cap, and the controller is served meanwhile.
func TestAgentStrangerFlood(t *testing.T) {
	f := &fake{}
	addr, site := agentForTest(t, f)
	var wg sync.WaitGroup
	var served int
	var mu sync.Mutex
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.78.1")}, Timeout: time.Second}
			for range 20 {
				c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(2 * time.Second))
				_, werr := c.Write([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"))
				n, _ := c.Read(make([]byte, 64))
				if werr == nil && n > 0 {
					mu.Lock()
					served++
					mu.Unlock()
				}
				c.Close()
			}
		}()
	}
	hc := clientWith(site, site.leaf(t, ControllerName))
	for range 10 {
		if status, a, err := post(hc, addr, "/v1/publish-crls", `{}`); err != nil || status != 200 {
			t.Fatalf("the controller during the flood: %d %+v %v", status, a, err)
		}
	}
	wg.Wait()
	if served > 0 {
		t.Errorf("%d of 400 connections without a certificate got an HTTP answer", served)
	}
	if got := len(f.calls); got != 10 {
		t.Errorf("%d calls reached Boulder, want the controller's 10", got)
	}
}

// A backup is the site's whole database: only the controller gets one,
// only when the cluster's backups are on, one at a time, and a stream
// cut short is told from a whole one.
func TestAgentBackup(t *testing.T) {
	backup := func(hc *http.Client, addr string) (int, string, error, error) {
		resp, err := hc.Post("https://"+addr+"/v1/backup", "", nil)
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), BackupComplete(resp), nil
	}
	off := &fake{}
	addr, site := agentForTest(t, off)
	if status, body, _, err := backup(clientWith(site, site.leaf(t, ControllerName)), addr); err != nil || status != http.StatusForbidden || !strings.Contains(body, "backup.off") {
		t.Errorf("backups off: %d %s %v", status, body, err)
	}
	if len(off.calls) != 0 {
		t.Errorf("backups off reached the database: %q", off.calls)
	}

	f := &fake{hold: make(chan struct{})}
	addr, site = agentWith(t, f, func(c *Config) { c.Backup = true })
	ctrl := clientWith(site, site.leaf(t, ControllerName))
	for who, hc := range map[string]*http.Client{"no certificate": clientWith(site), "the site's SA": clientWith(site, site.leaf(t, "sa.boulder"))} {
		if status, _, _, err := backup(hc, addr); err == nil {
			t.Errorf("%s got a backup answer: HTTP %d", who, status)
		}
	}
	type got struct {
		status   int
		body     string
		complete error
	}
	first := make(chan got, 1)
	go func() {
		status, body, complete, _ := backup(ctrl, addr)
		first <- got{status, body, complete}
	}()
	testenv.WaitFor(t, "the first backup running", 5*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.calls) == 1
	})
	if status, body, _, err := backup(ctrl, addr); err != nil || status != http.StatusConflict {
		t.Errorf("a second backup while one runs: %d %s %v", status, body, err)
	}
	close(f.hold)
	if g := <-first; g.status != 200 || g.body != "part one part two" || g.complete != nil {
		t.Errorf("the controller's backup: %+v", g)
	}
	f.err = errors.New("mariadb-backup --backup: exit status 1: disk full")
	status, body, complete, err := backup(ctrl, addr)
	if err != nil || status != 200 || body != "part one" || complete == nil || !strings.Contains(complete.Error(), "disk full") {
		t.Errorf("a backup failing half-way: %d %q, complete: %v, %v", status, body, complete, err)
	}
}
