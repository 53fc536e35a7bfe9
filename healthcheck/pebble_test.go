package healthcheck_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// Pebble's addresses for these tests (127.0.59.0/24: the healthcheck block).
const (
	pebbleHost = "127.0.59.10"
	dnsAddr    = "127.0.59.11:5353"
	toxiAPI    = "127.0.59.12:8474"
	toxiListen = "127.0.59.12:14000"
)

// updateServer is an RFC 2136 endpoint that checks TSIG and accepts every
// update: enough for the issuance probe against Pebble, which (with
// PEBBLE_VA_ALWAYS_VALID) does not look the record up.
func updateServer(t *testing.T, key rfc2136.Key) *sync.Map {
	records := &sync.Map{}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.IsTsig() == nil || w.TsigStatus() != nil {
			m.Rcode = dns.RcodeNotAuth
		} else {
			for _, rr := range r.Ns {
				records.Store(rr.Header().Name, rr.String())
			}
		}
		if r.IsTsig() != nil {
			m.SetTsig(r.Extra[len(r.Extra)-1].(*dns.TSIG).Hdr.Name, dns.HmacSHA256, 300, time.Now().Unix())
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{Addr: dnsAddr, Net: "tcp", Handler: mux, TsigSecret: map[string]string{dns.Fqdn(key.Name): key.Secret},
		MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ListenAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("DNS update server did not start")
	}
	t.Cleanup(func() { srv.Shutdown() })
	return records
}

// startPebble runs Pebble with a test certificate and returns its root.
func startPebble(t *testing.T, env ...string) (*x509.CertPool, string) {
	t.Helper()
	bin := testenv.Tool(t, "pebble")
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebble test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(pebbleHost), net.ParseIP("127.0.59.12")}, DNSNames: []string{"pebble.test"}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": pebbleHost + ":14000", "managementListenAddress": pebbleHost + ":15000",
		"certificate": filepath.Join(dir, "cert.pem"), "privateKey": filepath.Join(dir, "key.pem"),
		"httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false,
		"retryAfter": map[string]int{"authz": 1, "order": 1},
	}}
	b, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, "pebble.json"), b, 0o644)
	cmd := exec.Command(bin, "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), append([]string{"PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1"}, env...)...)
	logf, _ := os.Create(filepath.Join(dir, "pebble.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Both listeners: the management API (its roots, below) may come up
	// after the ACME one.
	for _, port := range []string{"14000", "15000"} {
		testenv.WaitFor(t, "pebble listening on "+port, 10*time.Second, func() bool {
			c, err := net.Dial("tcp", pebbleHost+":"+port)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	roots := x509.NewCertPool()
	roots.AddCert(mustParse(der))
	// The root Pebble issues under, for verifying probe certificates.
	mgmt := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := mgmt.Get("https://" + pebbleHost + ":15000/roots/0")
	if err != nil {
		t.Fatalf("pebble management API: %v", err)
	}
	defer resp.Body.Close()
	issuing, _ := io.ReadAll(resp.Body)
	return roots, string(issuing)
}

func mustParse(der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func pebbleTarget(t *testing.T, roots *x509.CertPool, issuingPEM, dial string) *healthcheck.Target {
	key := rfc2136.Key{Name: "probe-key", Algorithm: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}
	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tg := &healthcheck.Target{
		Site: "pebble", DirectoryURL: "https://" + pebbleHost + ":14000/dir", DialAddr: dial, Roots: roots,
		AccountKey: accountKey, ProbeName: "{rand}.probe.example.com",
		DNS01: &acmeclient.DNSUpdater{Server: dnsAddr, Zone: "example.com", Key: key},
	}
	// Probe certificates chain to Pebble's issuing root, not its TLS root.
	issuing := x509.NewCertPool()
	issuing.AppendCertsFromPEM([]byte(issuingPEM))
	tg.IssuingRoots = issuing
	return tg
}

func TestProbesAgainstPebble(t *testing.T) {
	testenv.Integration(t)
	key := rfc2136.Key{Name: "probe-key", Algorithm: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}
	records := updateServer(t, key)
	roots, issuing := startPebble(t)
	tg := pebbleTarget(t, roots, issuing, "")
	for _, k := range []string{healthcheck.KindTLS, healthcheck.KindDirectory, healthcheck.KindNonce, healthcheck.KindAccount, healthcheck.KindIssuance} {
		if r := run(t, tg, k, 20*time.Second); !r.OK {
			t.Errorf("pebble: %s", describe(r))
		}
	}
	n := 0
	records.Range(func(k, v any) bool { n++; return true })
	if n == 0 {
		t.Error("the issuance probe sent no RFC 2136 update")
	}
	// The account did not exist: the account probe registered it.
	fresh := pebbleTarget(t, roots, issuing, "")
	r := run(t, fresh, healthcheck.KindAccount, 10*time.Second)
	if !r.OK || r.Steps[len(r.Steps)-1].Name != "register" {
		t.Errorf("new key: %s", describe(r))
	}
	// A wrong TSIG secret: the DNS update is refused, classified, at its step.
	bad := pebbleTarget(t, roots, issuing, "")
	bad.DNS01.Key.Secret = base64.StdEncoding.EncodeToString([]byte("wrong wrong wrong wrong wrong!!!"))
	r = run(t, bad, healthcheck.KindIssuance, 10*time.Second)
	if f := r.FailedStep(); r.OK || f == nil || f.Name != "dns-update" || f.ErrorClass != healthcheck.ClassDNS {
		t.Errorf("bad TSIG: %s", describe(r))
	}
}

// Pebble rejecting every nonce: the failure is an ACME problem of type badNonce.
func TestPebbleNonceRejection(t *testing.T) {
	testenv.Integration(t)
	roots, issuing := startPebble(t, "PEBBLE_WFE_NONCEREJECT=100")
	r := run(t, pebbleTarget(t, roots, issuing, ""), healthcheck.KindAccount, 15*time.Second)
	f := r.FailedStep()
	if r.OK || f == nil || f.ErrorClass != healthcheck.ClassACME || healthcheck.ProblemType(f.ACMEProblemType) != "badNonce" {
		t.Fatalf("want an acme badNonce failure: %s", describe(r))
	}
}

// Faults injected with toxiproxy in front of Pebble are classified.
func TestFaultClassesThroughToxiproxy(t *testing.T) {
	testenv.Integration(t)
	roots, issuing := startPebble(t)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	go srv.Listen(toxiAPI)
	t.Cleanup(func() { srv.Shutdown() })
	client := toxiclient.NewClient("http://" + toxiAPI)
	var proxy *toxiclient.Proxy
	var err error
	for range 50 {
		if proxy, err = client.CreateProxy("pebble", toxiListen, pebbleHost+":14000"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	tg := pebbleTarget(t, roots, issuing, toxiListen)
	if r := run(t, tg, healthcheck.KindDirectory, 5*time.Second); !r.OK {
		t.Fatalf("through the proxy: %s", describe(r))
	}
	cases := []struct {
		name  string
		apply func() error
		undo  func() error
		class string
	}{
		{"proxy down (connection refused)", proxy.Disable, proxy.Enable, healthcheck.ClassRefused},
		{"connection reset", func() error {
			_, err := proxy.AddToxic("reset", "reset_peer", "downstream", 1, toxiclient.Attributes{"timeout": 0})
			return err
		}, func() error { return proxy.RemoveToxic("reset") }, healthcheck.ClassRefused},
		{"no answer (timeout)", func() error {
			_, err := proxy.AddToxic("hang", "timeout", "downstream", 1, toxiclient.Attributes{"timeout": 0})
			return err
		}, func() error { return proxy.RemoveToxic("hang") }, healthcheck.ClassTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.apply(); err != nil {
				t.Fatal(err)
			}
			defer tc.undo()
			r := run(t, tg, healthcheck.KindDirectory, 2*time.Second)
			f := r.FailedStep()
			if r.OK || f == nil || f.ErrorClass != tc.class {
				t.Errorf("want class %s: %s", tc.class, describe(r))
			}
		})
	}
	if r := run(t, tg, healthcheck.KindDirectory, 5*time.Second); !r.OK {
		t.Errorf("after the faults: %s", describe(r))
	}
}

// `cairn probe --watch URL` of a CA cairn does not run (Pebble): its
// status page shows the target's probes and availability, and reads at a
// desktop and at a phone's width in headless Chromium.
func TestWatchPageOfAnyCA(t *testing.T) {
	testenv.Integration(t, "chromium")
	startPebble(t)
	// Pebble's TLS certificate, as a root file for --root.
	conn, err := tls.Dial("tcp", pebbleHost+":14000", &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "pebble-tls.pem")
	os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: conn.ConnectionState().PeerCertificates[0].Raw}), 0o644)
	conn.Close()
	addr := "127.0.59.13:9109"
	cmd := exec.Command(labtest.CairnBinary(t), "probe", "--watch", "https://"+pebbleHost+":14000/dir", "--root", root,
		"--history", filepath.Join(dir, "h.db"), "--metrics-addr", addr, "--for", "2m")
	cmd.Dir = dir // no spec here: a URL target needs none
	cmd.Stdout, cmd.Stderr = labtest.Log{T: t}, labtest.Log{T: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var page string
	testenv.WaitFor(t, "the page shows the directory and nonce probes", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page = string(b)
		return strings.Contains(page, `id="site-`+pebbleHost+`:14000"`) && strings.Contains(page, `id="availability"`) &&
			strings.Contains(page, "every probe kind passed its last run")
	})
	start := time.Now()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("status page: %d bytes in %v", len(b), time.Since(start).Round(time.Millisecond))
	for _, width := range []string{"1280,900", "390,844"} {
		dom := testenv.Chromium(t, "--window-size="+width, "--dump-dom", "http://"+addr+"/")
		for _, want := range []string{"cairn probe: https://" + pebbleHost + ":14000/dir", `<table id="availability">`, "<svg"} {
			if !strings.Contains(dom, want) {
				t.Errorf("at %s the page lacks %q", width, want)
			}
		}
		png := filepath.Join(dir, "page-"+strings.Split(width, ",")[0]+".png")
		testenv.Chromium(t, "--window-size="+width, "--screenshot="+png, "http://"+addr+"/")
		if fi, err := os.Stat(png); err != nil || fi.Size() < 5000 {
			t.Errorf("screenshot at %s: %v", width, err)
		}
	}
}
