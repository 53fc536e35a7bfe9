package acmefront

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/abusetest"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// serveForTest runs Serve on a free loopback port in front of wfe with a
// self-signed certificate, and returns its address, its metrics address
// and a channel that gets Serve's result.
func serveForTest(t *testing.T, wfe string, maxConns, perSource int) (addr, metrics string, done chan error) {
	t.Helper()
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "acme.test"}, DNSNames: []string{"acme.test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	own, _ := issuer(t, dir, "own")
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	addr, metrics = free(), free()
	c := &Config{Listen: addr, Upstream: wfe, CertFile: certFile, KeyFile: keyFile, Issuers: []string{own},
		MetricsListen: metrics, MaxConns: maxConns, MaxConnsPerSource: perSource}
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- Serve(ctx, c, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() { cancel(); <-done })
	// Both listeners: the metrics one may open after the front's, and a
	// test's first read of /metrics must not race it.
	for _, a := range []string{addr, metrics} {
		testenv.WaitFor(t, "the front listening on "+a, 10*time.Second, func() bool {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	return addr, metrics, done
}

// metric reads one sample of the front's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	v, err := abusetest.Metric(addr, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A stranger's half-open handshakes (to the ACME name and to ra.boulder)
// and slow bodies from two addresses, 6,000 connections in all, while a
// client from a third address gets the directory, nonces and posts: the
// client gets every answer, the attackers are capped and cut at the
// deadlines, and the front never exits.
func TestFrontSurvivesAbuse(t *testing.T) {
	testenv.Integration(t)
	old := deadlines
	deadlines.handshake, deadlines.read = time.Second, 2*time.Second
	t.Cleanup(func() { deadlines = old })
	wfe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Replay-Nonce", "n")
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "{}")
	}))
	defer wfe.Close()
	const perSource = 50
	addr, metrics, done := serveForTest(t, wfe.URL, 1000, perSource)

	hello, err := abusetest.ClientHello("acme.test")
	if err != nil {
		t.Fatal(err)
	}
	helloRA, _ := abusetest.ClientHello("ra.boulder")
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]abusetest.Result, 3)
	attack := func(i int, src string, send func(net.Conn) error, n int64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = abusetest.Attack(ctx, src, addr, send, 2*perSource, n, 15*time.Second)
		}()
	}
	attack(0, "127.0.77.1", abusetest.HalfOpen(hello), 5000)
	attack(1, "127.0.77.2", abusetest.HalfOpen(helloRA), 5000)
	attack(2, "127.0.77.2", abusetest.SlowBody("acme.test", newOrderPath), 1000)

	// The client, from a third address, until the attackers are done.
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: "acme.test", InsecureSkipVerify: true},
		DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.77.3")}}).DialContext}}
	var lat []time.Duration
	var failed []string
	var maxOpen float64
	for i := 0; ; i++ {
		if i%10 == 0 {
			maxOpen = max(maxOpen, metric(t, metrics, "cairn_front_connections_open"))
		}
		select {
		case <-stop:
		default:
			start := time.Now()
			var resp *http.Response
			switch i % 3 {
			case 0:
				resp, err = hc.Get("https://" + addr + "/directory")
			case 1:
				resp, err = hc.Head("https://" + addr + "/acme/new-nonce")
			default:
				resp, err = hc.Post("https://"+addr+newOrderPath, "application/jose+json", strings.NewReader(`{"payload":""}`))
			}
			if err != nil {
				failed = append(failed, err.Error())
			} else {
				resp.Body.Close()
				lat = append(lat, time.Since(start))
			}
			if i%30 == 29 {
				hc.CloseIdleConnections() // new connections too, not one kept alive
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		break
	}
	select {
	case err := <-done:
		t.Fatalf("the front exited during the attack: %v", err)
	default:
	}
	if len(failed) > 0 {
		t.Errorf("the client's requests failed %d times of %d: %s", len(failed), len(failed)+len(lat), failed[0])
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		t.Fatal("the client got no answer")
	}
	t.Logf("client: %d answers, p50 %v, p95 %v", len(lat), lat[len(lat)/2], lat[len(lat)*95/100])
	for _, r := range results {
		t.Log(r)
	}
	// Two sources, each capped, and the client's own connection.
	t.Logf("the front held at most %.0f connections at once", maxOpen)
	if maxOpen > 2*perSource+2 {
		t.Errorf("the front held %.0f connections at once: two sources capped at %d each", maxOpen, perSource)
	}
	// Half-open handshakes cut at the handshake deadline, slow bodies at
	// the read deadline (a second of slack each, and one more for the
	// attacker's own clock when make test saturates the cores: 2.04 s and
	// 3.22 s measured then).
	for i, limit := range []time.Duration{3 * time.Second, 3 * time.Second, 4 * time.Second} {
		if got := results[i].Longest(); got > limit {
			t.Errorf("%s: a connection was held %v, deadline %v", results[i].Source, got, limit)
		}
	}
	if v := metric(t, metrics, `cairn_front_connections_refused_total{cap="per_source"}`); v == 0 {
		t.Error("no connection refused for its source's cap")
	}
	// Back to normal: the front answers and holds nothing (once the
	// client has closed its own kept-alive connection).
	hc.CloseIdleConnections()
	testenv.WaitFor(t, "the attackers' connections released", 10*time.Second, func() bool {
		return metric(t, metrics, "cairn_front_connections_open") == 0
	})
	if resp, err := hc.Get("https://" + addr + "/directory"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
}
