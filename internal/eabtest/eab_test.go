// Package eabtest proves External Account Binding and name scopes on a
// two-site lab with real clients (certbot, lego), real MariaDB
// replication and the real ACME fronts (docs/authority.md).
package eabtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/acmefront"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
	"github.com/cairn-pki/cairn/site"
)

// env is the running lab and what the test's clients need.
type env struct {
	t    *testing.T
	spec *cluster.Spec
	l    *lab.Lab
	sum  *lab.Summary
	pool *x509.CertPool
	tsig rfc2136.Key
}

func (e *env) cairn(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(e.l.Cairn, append([]string{"-f", e.spec.File}, args...)...)
	var o, se strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &se
	err = cmd.Run()
	return o.String(), se.String(), err
}

// eabKey is a key as `cairn accounts eab create` prints it once.
type eabKey struct{ kid, hmac string }

func (e *env) createKey(label string, scope ...string) eabKey {
	e.t.Helper()
	args := []string{"accounts", "eab", "create", "--label", label}
	for _, s := range scope {
		args = append(args, "--scope", s)
	}
	out, errOut, err := e.cairn(args...)
	if err != nil {
		e.t.Fatalf("eab create: %v\n%s%s", err, out, errOut)
	}
	var k eabKey
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "kid: "); ok {
			k.kid = v
		} else if v, ok := strings.CutPrefix(line, "hmac: "); ok {
			k.hmac = v
		}
	}
	if k.kid == "" || k.hmac == "" || strings.Contains(errOut, k.hmac) {
		e.t.Fatalf("eab create printed %q (stderr %q): want kid and hmac on stdout only", out, errOut)
	}
	e.t.Logf("eab create --label %s: kid %s\n%s", label, k.kid, strings.TrimSpace(errOut))
	return k
}

// sql runs a query at a site's database and returns its rows.
func (e *env) sql(siteName, q string) string {
	e.t.Helper()
	out, err := e.l.SiteSQL(context.Background(), siteName, q)
	if err != nil {
		e.t.Fatalf("site %s: %s: %v", siteName, q, err)
	}
	return strings.TrimSpace(string(out))
}

// goClient is the Go ACME client (x/crypto/acme) with key, talking to
// site i directly (the ACME name as TLS name).
func (e *env) goClient(i int, key *ecdsa.PrivateKey) *acmeclient.Client {
	e.t.Helper()
	s := e.spec.Sites[i]
	c, err := acmeclient.New(acmeclient.Options{
		DirectoryURL: "https://" + e.spec.ACME.Name + "/directory", Roots: e.pool, ServerName: e.spec.ACME.Name, Key: key,
		DialAddr: net.JoinHostPort(s.Address, strconv.Itoa(e.spec.ACME.HTTPSPort)),
		DNS:      acmeclient.DNSUpdater{Server: e.sum.DNS, Zone: e.spec.ACME.Zone, Key: e.tsig},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	return c
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// registerWithEAB registers key's account at site i with the key k.
func (e *env) registerWithEAB(i int, key *ecdsa.PrivateKey, k eabKey) (*acmeclient.Client, int64) {
	e.t.Helper()
	c := e.goClient(i, key)
	hmacKey, err := base64.RawURLEncoding.DecodeString(k.hmac)
	if err != nil {
		e.t.Fatal(err)
	}
	acct, err := c.ACME().Register(context.Background(), &acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KID: k.kid, Key: hmacKey}}, acme.AcceptTOS)
	if err != nil {
		e.t.Fatalf("register with EAB %s at %s: %v", k.kid, e.spec.Sites[i].Name, err)
	}
	id, _ := strconv.ParseInt(acct.URI[strings.LastIndex(acct.URI, "/")+1:], 10, 64)
	return c, id
}

// problem is the ACME error of err (its type's last part), or "".
func problem(err error) (typ, detail string) {
	var ae *acme.Error
	if errors.As(err, &ae) {
		return strings.TrimPrefix(ae.ProblemType, "urn:ietf:params:acme:error:"), ae.Detail
	}
	return "", ""
}

// order asks for names and returns the ACME problem type ("" when the
// order was made).
func order(c *acmeclient.Client, names ...string) (string, string) {
	_, err := c.ACME().AuthorizeOrder(context.Background(), acme.DomainIDs(names...))
	if err == nil {
		return "", ""
	}
	typ, detail := problem(err)
	if typ == "" {
		return "error", err.Error()
	}
	return typ, detail
}

func (e *env) waitBinding(siteName, kid string) time.Duration {
	return testenv.WaitFor(e.t, "the binding of "+kid+" at site "+siteName, 30*time.Second, func() bool {
		return e.sql(siteName, "SELECT COUNT(*) FROM cairn.eab_bindings WHERE kid = '"+kid+"'") != "0"
	})
}

func (e *env) run(env []string, argv []string) (string, error) { return labtest.Run(env, argv) }

// viaName runs argv resolving the ACME name through the lab's DNS.
func (e *env) viaName(argv []string) []string {
	host, _, _ := net.SplitHostPort(e.sum.DNS)
	resolv := filepath.Join(e.t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, acmecli.ResolvConf(host), 0o644)
	return acmecli.WithResolver(resolv, argv)
}

func (e *env) certbot(dir, name string) acmecli.Certbot {
	host, _, _ := net.SplitHostPort(e.sum.DNS)
	return acmecli.Certbot{Server: "https://" + e.spec.ACME.Name + "/directory", Dir: dir, Domain: name, DNSHost: host, KeyFile: e.sum.ClientKey}
}

func (e *env) lego(path, name string) acmecli.Lego {
	return acmecli.Lego{Server: "https://" + e.spec.ACME.Name + "/directory", Email: "ops@" + e.spec.ACME.Zone, Path: path, Resolver: e.sum.DNS, Domain: name}
}

// serialSite is the site whose serial prefix starts the certificate.
func (e *env) serialSite(certFile string) string {
	c := labtest.ReadCert(e.t, certFile)
	for _, s := range e.spec.Sites {
		if c.SerialNumber.Bytes()[0] == s.SerialPrefix.Value() {
			return s.Name
		}
	}
	return "?"
}

// resolves is the ACME name's address at the lab's primary.
func (e *env) resolves() string {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(e.spec.ACME.Name), dns.TypeA)
	r, err := dns.Exchange(m, e.sum.DNS)
	if err != nil || len(r.Answer) == 0 {
		return ""
	}
	if a, ok := r.Answer[0].(*dns.A); ok {
		return a.A.String()
	}
	return ""
}

func TestEABAndNameScopes(t *testing.T) {
	testenv.Integration(t, append(labtest.Tools, "certbot", "lego", "unshare")...)
	// The cluster issues under its zone only; EAB is required. The
	// failover policy is the tests' (b healthy within seconds).
	spec := labtest.SpecWith(t, labtest.BlockEAB, "eab:\n  required: true\npolicy:\n  allowedNames: [t.home.arpa]\n"+
		"failover:\n  upAfter: 3\n  stablePeriod: 3s\n  holdDown: 15s\n", "a", "b")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	t.Cleanup(func() { l.Down(context.Background()) })
	sum, err := l.Up(ctx, lab.UpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, spec: spec, l: l, sum: sum, pool: x509.NewCertPool()}
	e.pool.AddCert(labtest.ReadCert(t, sum.RootCert))
	if e.tsig, err = rfc2136.ReadKey(sum.ClientKey); err != nil {
		t.Fatal(err)
	}
	zone := spec.ACME.Zone
	base := os.Environ()

	// The directory tells clients EAB is required, at every site.
	for i := range spec.Sites {
		var dir struct {
			Meta struct {
				ExternalAccountRequired bool `json:"externalAccountRequired"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(e.fetch(i, "/directory"), &dir); err != nil || !dir.Meta.ExternalAccountRequired {
			t.Fatalf("site %s directory: externalAccountRequired not set (%v)", spec.Sites[i].Name, err)
		}
	}

	// Without a binding: certbot and lego stop with a clear message (they
	// read the directory), and a client that does not is refused by the
	// front with externalAccountRequired, at every site.
	out, err := e.run(acmecli.CertbotEnv(base, sum.RootCert), e.viaName(e.certbot(t.TempDir(), "nobody."+zone).Certonly()))
	if err == nil || !strings.Contains(strings.ToLower(out), "external account binding") {
		t.Fatalf("certbot without EAB: %v\n%s", err, out)
	}
	t.Logf("certbot without EAB: %s", lastLine(out, "account binding"))
	out, err = e.run(acmecli.LegoEnv(base, sum.RootCert, sum.DNS, zone, e.tsig), e.viaName(e.lego(filepath.Join(t.TempDir(), "lego"), "nobody."+zone).Args("run")))
	if err == nil || !strings.Contains(strings.ToLower(out), "external account binding") {
		t.Fatalf("lego without EAB: %v\n%s", err, out)
	}
	t.Logf("lego without EAB: %s", lastLine(out, "account binding"))
	for i := range spec.Sites {
		_, err := e.goClient(i, newKey(t)).Register(ctx)
		if typ, _ := problem(err); typ != "externalAccountRequired" {
			t.Errorf("site %s: newAccount without a binding: %v, want externalAccountRequired", spec.Sites[i].Name, err)
		}
	}

	// certbot with a key from `cairn accounts eab create` registers and
	// issues through the ACME name (site a).
	cbKey := e.createKey("certbot-team")
	cbDir := t.TempDir()
	cb := e.certbot(cbDir, "certbot."+zone)
	out, err = e.run(acmecli.CertbotEnv(base, sum.RootCert), e.viaName(append(cb.Certonly(), "--eab-kid", cbKey.kid, "--eab-hmac-key", cbKey.hmac)))
	if err != nil {
		t.Fatalf("certbot with EAB: %v\n%s", err, out)
	}
	cbCert := filepath.Join(cbDir, "live", cb.Domain, "cert.pem")
	if s := e.serialSite(cbCert); s != "a" {
		t.Errorf("certbot's certificate from site %s, want a", s)
	}
	// lego likewise, with its own key.
	legoKey := e.createKey("lego-team")
	legoPath := filepath.Join(t.TempDir(), "lego")
	lg := e.lego(legoPath, "lego."+zone)
	legoEnv := acmecli.LegoEnv(base, sum.RootCert, sum.DNS, zone, e.tsig)
	out, err = e.run(legoEnv, e.viaName(lg.Args("--eab", "--kid", legoKey.kid, "--hmac", legoKey.hmac, "run")))
	if err != nil {
		t.Fatalf("lego with EAB: %v\n%s", err, out)
	}
	if s := e.serialSite(filepath.Join(legoPath, "certificates", lg.Domain+".crt")); s != "a" {
		t.Errorf("lego's certificate from site %s, want a", s)
	}
	// Both accounts are bound, and the bindings reach b.
	for _, k := range []eabKey{cbKey, legoKey} {
		t.Logf("binding of %s at b %s after it was at a", k.kid, e.waitBinding("b", k.kid).Round(time.Millisecond))
	}
	// Account replication judges the four-table filter sound.
	if out, errOut, err := e.cairn("accounts", "status"); err != nil {
		t.Fatalf("accounts status: %v\n%s%s", err, out, errOut)
	}
	var listed []struct {
		KID   string   `json:"kid"`
		At    []string `json:"at"`
		Bound int      `json:"boundAccounts"`
	}
	out, _, err = e.cairn("-o", "json", "accounts", "eab", "list")
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 2 || listed[0].Bound != 1 || !slices.Equal(listed[0].At, []string{"a", "b"}) ||
		strings.Contains(out, cbKey.hmac) {
		t.Fatalf("eab list: %v %s", err, out)
	}

	// A key scoped to payments.<zone>: its account orders there, and is
	// refused web.<zone> at a and at b (once its binding is there), and
	// the cluster refuses names outside allowedNames to everyone.
	payKey := e.createKey("payments", "*.payments."+zone)
	payAcct := newKey(t)
	payA, payID := e.registerWithEAB(0, payAcct, payKey)
	e.waitBinding("b", payKey.kid)
	payB := e.goClient(1, payAcct)
	for i, c := range []*acmeclient.Client{payA, payB} {
		typ, detail := order(c, "web."+zone)
		if typ != "rejectedIdentifier" || !strings.Contains(detail, `"web.`+zone+`"`) || !strings.Contains(detail, "payments."+zone) {
			t.Errorf("site %s: out-of-scope order: %s %q, want rejectedIdentifier naming the identifier and the scope", spec.Sites[i].Name, typ, detail)
		}
		if typ, detail := order(c, "www.example.org"); typ != "rejectedIdentifier" || !strings.Contains(detail, "the names this CA issues for") {
			t.Errorf("site %s: order outside allowedNames: %s %q", spec.Sites[i].Name, typ, detail)
		}
		chain, _, _, err := c.Issue(ctx, []string{fmt.Sprintf("web%d.payments.%s", i, zone)})
		if err != nil {
			t.Fatalf("site %s: in-scope issuance of account %d: %v", spec.Sites[i].Name, payID, err)
		}
		cert, _ := x509.ParseCertificate(chain[0])
		if cert.SerialNumber.Bytes()[0] != spec.Sites[i].SerialPrefix.Value() {
			t.Errorf("in-scope certificate at %s has serial %x", spec.Sites[i].Name, cert.SerialNumber)
		}
	}
	e.checkMetrics("out_of_scope", 2, "not_allowed", 2, "eab_required", 2)

	// kill -9 of every process of the active site a (no operator step):
	// the controller moves the ACME name to b by itself, and certbot renews
	// there with the account bound at a.
	killed := e.killSite("a")
	testenv.WaitFor(t, "the ACME name at b", 3*time.Minute, func() bool { return e.resolves() == spec.Sites[1].Address })
	toMove := time.Since(killed)
	out, err = e.run(acmecli.CertbotEnv(base, sum.RootCert), e.viaName(cb.Renew()))
	if err != nil {
		t.Fatalf("certbot renew at b after a was killed: %v\n%s", err, out)
	}
	toRenewal := time.Since(killed)
	if s := e.serialSite(cbCert); s != "b" {
		t.Errorf("certbot's renewed certificate from site %s, want b", s)
	}
	t.Logf("FIGURE kill -9 of every process of a → the ACME name at b (the primary answers b) %.1f s; → certbot's renewal at b done %.1f s", toMove.Seconds(), toRenewal.Seconds())
	// lego (4.9) wants --eab on every command once the directory requires
	// EAB; with its account stored it does not register again.
	out, err = e.run(legoEnv, e.viaName(lg.Args("--eab", "--kid", legoKey.kid, "--hmac", legoKey.hmac, "run")))
	if err != nil {
		t.Fatalf("lego again at b with its account: %v\n%s", err, out)
	}
	if n := e.sql("b", "SELECT COUNT(*) FROM cairn.eab_bindings WHERE kid = '"+legoKey.kid+"'"); n != "1" {
		t.Errorf("lego's key has %s accounts at b, want its one account (no second registration)", n)
	}
	if s := e.serialSite(filepath.Join(legoPath, "certificates", lg.Domain+".crt")); s != "b" {
		t.Errorf("lego's second certificate from site %s, want b", s)
	}

	// Site a comes back (every process started again, as after a reboot),
	// replication runs again both ways, and its front holds the scoped
	// account to its scope and the cluster's names as b's does.
	e.restartSite("a")
	for i, c := range []*acmeclient.Client{payA, payB} {
		if typ, detail := order(c, "web."+zone); typ != "rejectedIdentifier" || !strings.Contains(detail, "payments."+zone) {
			t.Errorf("site %s after a came back: out-of-scope order: %s %q", spec.Sites[i].Name, typ, detail)
		}
		if typ, _ := order(c, "www.example.org"); typ != "rejectedIdentifier" {
			t.Errorf("site %s after a came back: order outside allowedNames: %s", spec.Sites[i].Name, typ)
		}
	}

	// `eab revoke` at a alone: b learns it by replication (the command
	// waits until b has it and says how long that took); from then on the
	// key's accounts are refused at a and at b.
	out, _, err = e.cairn("-o", "json", "accounts", "eab", "revoke", "--site", "a", cbKey.kid)
	var rev struct {
		Took map[string]float64 `json:"refusedAtMillis"`
	}
	if err != nil || json.Unmarshal([]byte(out), &rev) != nil || len(rev.Took) != 2 {
		t.Fatalf("eab revoke: %v %s", err, out)
	}
	out, err = e.run(acmecli.CertbotEnv(base, sum.RootCert), e.viaName(cb.Renew()))
	if err == nil || !strings.Contains(out, "revoked") {
		t.Fatalf("certbot renew at b after its key was revoked: %v\n%s", err, out)
	}
	t.Logf("certbot renew at b, key revoked: %s", lastLine(out, "revoked"))
	// The revocation figure: five keys revoked at a, each bound account
	// then refused at b.
	var lags []float64
	for i := range 5 {
		k := e.createKey(fmt.Sprintf("revoke-%d", i))
		acct := newKey(t)
		atA, _ := e.registerWithEAB(0, acct, k)
		e.waitBinding("b", k.kid)
		atB := e.goClient(1, acct)
		if typ, _ := order(atB, "x.payments."+zone); typ != "" {
			t.Fatalf("order at b before revocation: %s", typ)
		}
		out, _, err := e.cairn("-o", "json", "accounts", "eab", "revoke", "--site", "a", k.kid)
		if err != nil || json.Unmarshal([]byte(out), &rev) != nil {
			t.Fatalf("eab revoke: %v %s", err, out)
		}
		lags = append(lags, rev.Took["b"])
		for j, c := range []*acmeclient.Client{atA, atB} {
			if typ, detail := order(c, "y.payments."+zone); typ != "unauthorized" || !strings.Contains(detail, "revoked") {
				t.Errorf("site %s: order of a revoked key's account: %s %q", spec.Sites[j].Name, typ, detail)
			}
		}
	}
	slices.Sort(lags)
	t.Logf("FIGURE revocation at a → refused at b (replication, polled every 5 ms): min %.1f ms, p50 %.1f ms, max %.1f ms (5 keys)", lags[0], lags[2], lags[4])
	e.checkMetrics("kid_revoked", 10)

	e.latency(ctx)

	// The HMAC keys were printed once and are in no file of the cluster
	// (configs, logs, secrets): only in the sites' databases, as bytes.
	filepath.WalkDir(spec.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, k := range []eabKey{cbKey, legoKey, payKey} {
			if strings.Contains(string(b), k.hmac) {
				t.Errorf("the HMAC key of %s is in %s", k.kid, p)
			}
		}
		return nil
	})
}

// killSite sends SIGKILL to every process of a site, waits until none
// runs, and returns when it sent the first.
func (e *env) killSite(siteName string) time.Time {
	e.t.Helper()
	b, err := site.ReadBundle(e.l.SiteDir(siteName))
	if err != nil {
		e.t.Fatal(err)
	}
	start := time.Now()
	for _, p := range b.Processes {
		if _, err := e.l.SignalComponent(siteName, p.Name, syscall.SIGKILL); err != nil {
			e.t.Fatalf("kill -9 %s/%s: %v", siteName, p.Name, err)
		}
	}
	testenv.WaitFor(e.t, "every process of "+siteName+" gone", 30*time.Second, func() bool {
		return !slices.ContainsFunc(b.Processes, func(p site.Process) bool { return e.l.ComponentRunning(siteName, p.Name) })
	})
	e.t.Logf("kill -9 of the %d processes of site %s", len(b.Processes), siteName)
	return start
}

// restartSite starts every process of a killed site again, in dependency
// order (its database loaded and its replication connections made), and
// waits until every replication connection runs.
func (e *env) restartSite(siteName string) {
	e.t.Helper()
	b, err := site.ReadBundle(e.l.SiteDir(siteName))
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, p := range b.Processes {
		names = append(names, p.Name)
	}
	start := time.Now()
	if err := e.l.RestartComponents(context.Background(), siteName, names); err != nil {
		e.t.Fatal(err)
	}
	reader, err := accounts.NewMariaDB(e.spec)
	if err != nil {
		e.t.Fatal(err)
	}
	testenv.WaitFor(e.t, "every replication connection running", 2*time.Minute, func() bool {
		st := accounts.Check(context.Background(), e.spec, reader)
		running := len(st.Connections) == len(e.spec.Sites)*(len(e.spec.Sites)-1)
		for _, c := range st.Connections {
			running = running && c.Running
		}
		return running
	})
	e.t.Logf("site %s back: its %d processes started and replication running %.1f s after", siteName, len(names), time.Since(start).Seconds())
}

// fetch GETs path at site i.
func (e *env) fetch(i int, path string) []byte {
	e.t.Helper()
	addr := net.JoinHostPort(e.spec.Sites[i].Address, strconv.Itoa(e.spec.ACME.HTTPSPort))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool, ServerName: e.spec.ACME.Name},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	resp, err := hc.Get("https://" + e.spec.ACME.Name + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// metrics is the /metrics text of each site's front.
func (e *env) metrics() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, s := range e.spec.Sites {
		out[s.Name] = labtest.FrontMetrics(e.t, e.l.SiteDir(s.Name))
	}
	return out
}

// checkMetrics asserts the fronts' refusal counters, summed over the
// sites, are at least the given values (reason, n, …).
func (e *env) checkMetrics(pairs ...any) {
	e.t.Helper()
	sum := map[string]int{}
	for _, text := range e.metrics() {
		for _, r := range acmefront.Reasons {
			sum[r] += int(labtest.Sample(text, `cairn_front_refused_total{reason="`+r+`"} `))
		}
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		reason, want := pairs[i].(string), pairs[i+1].(int)
		if sum[reason] < want {
			e.t.Errorf("cairn_front_refused_total{reason=%q} = %d over the sites, want ≥ %d (all: %v)", reason, sum[reason], want, sum)
		}
	}
}

// checkTimes is what site a's front says its checks took for request
// between two scrapes: the mean, and the bucket bounds under which 50 %
// and 95 % of them ended.
func checkTimes(before, after, request string) string {
	d := func(suffix string) float64 {
		p := "cairn_front_check_seconds" + suffix
		return labtest.Sample(after, p) - labtest.Sample(before, p)
	}
	lbl := `{request="` + request + `"} `
	n := d("_count" + lbl)
	if n == 0 {
		return "none"
	}
	var p50, p95 string
	for _, le := range []string{"0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.025", "0.1", "0.5", "3"} {
		c := d(`_bucket{request="` + request + `",le="` + le + `"} `)
		if p50 == "" && c >= n/2 {
			p50 = le
		}
		if p95 == "" && c >= n*0.95 {
			p95 = le
		}
	}
	return fmt.Sprintf("mean %.2f ms, p50 ≤ %s s, p95 ≤ %s s (n=%.0f)", d("_sum"+lbl)/n*1000, p50, p95, n)
}

// latency measures what the front's checks add: newAccount with a
// binding and newOrder of a scoped account through site a's front (TLS,
// the checks, the WFE), against the same requests sent to a's WFE
// directly (its plain listener: no TLS, no front).
func (e *env) latency(ctx context.Context) {
	const n = 25
	k := e.createKey("latency", "payments."+e.spec.ACME.Zone)
	hmacKey, _ := base64.RawURLEncoding.DecodeString(k.hmac)
	var front acmefront.Config
	b, _ := os.ReadFile(filepath.Join(e.l.SiteDir("a"), "etc", "acme-front.json"))
	json.Unmarshal(b, &front)
	wfe, _ := url.Parse(front.Upstream)
	direct := func(key *ecdsa.PrivateKey) *acme.Client {
		return &acme.Client{Key: key, DirectoryURL: "https://" + e.spec.ACME.Name + "/directory", HTTPClient: &http.Client{Timeout: 30 * time.Second,
			Transport: rewrite{to: wfe.Host, next: http.DefaultTransport}}}
	}
	type series struct{ acct, order []time.Duration }
	var via, plain series
	before := e.metrics()["a"]
	for range n {
		for _, useFront := range []bool{true, false} {
			key := newKey(e.t)
			var c *acme.Client
			var eab *acme.ExternalAccountBinding
			if useFront {
				c = e.goClient(0, key).ACME()
				eab = &acme.ExternalAccountBinding{KID: k.kid, Key: hmacKey}
			} else {
				c = direct(key)
			}
			if _, err := c.Discover(ctx); err != nil { // directory and a first nonce outside the timing
				e.t.Fatal(err)
			}
			t0 := time.Now()
			if _, err := c.Register(ctx, &acme.Account{ExternalAccountBinding: eab}, acme.AcceptTOS); err != nil {
				e.t.Fatalf("register (front %v): %v", useFront, err)
			}
			t1 := time.Now()
			if _, err := c.AuthorizeOrder(ctx, acme.DomainIDs("lat.payments."+e.spec.ACME.Zone)); err != nil {
				e.t.Fatalf("order (front %v): %v", useFront, err)
			}
			t2 := time.Now()
			s := &plain
			if useFront {
				s = &via
			}
			s.acct, s.order = append(s.acct, t1.Sub(t0)), append(s.order, t2.Sub(t1))
		}
	}
	pct := func(d []time.Duration, p int) float64 {
		d = slices.Clone(d)
		slices.Sort(d)
		return float64(d[(len(d)-1)*p/100].Microseconds()) / 1000
	}
	e.t.Logf("FIGURE newAccount (n=%d): through the front with EAB p50 %.1f ms p95 %.1f ms; WFE directly p50 %.1f ms p95 %.1f ms",
		n, pct(via.acct, 50), pct(via.acct, 95), pct(plain.acct, 50), pct(plain.acct, 95))
	e.t.Logf("FIGURE newOrder (n=%d): through the front, scoped account p50 %.1f ms p95 %.1f ms; WFE directly p50 %.1f ms p95 %.1f ms",
		n, pct(via.order, 50), pct(via.order, 95), pct(plain.order, 50), pct(plain.order, 95))
	after := e.metrics()["a"]
	e.t.Logf("FIGURE the front's checks alone (cairn_front_check_seconds at a): newAccount %s; newOrder %s",
		checkTimes(before, after, "newAccount"), checkTimes(before, after, "newOrder"))
}

// rewrite sends every request to the WFE's plain listener with the Host
// and scheme the front would give it.
type rewrite struct {
	to   string
	next http.RoundTripper
}

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = "http", r.to, req.URL.Host
	out.Header.Set("X-Forwarded-Proto", "https")
	return r.next.RoundTrip(out)
}

// lastLine is the last output line containing s (case-insensitive).
func lastLine(out, s string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(strings.ToLower(lines[i]), strings.ToLower(s)) {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}
