package failover_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
	"github.com/cairn-pki/cairn/monitoring"
	"github.com/cairn-pki/cairn/revocation"
	"github.com/cairn-pki/cairn/site"
)

// Fast policy for tests: 3 deep successes over 3 s make a site healthy; 15 s hold-down.
const fastPolicy = "failover:\n  upAfter: 3\n  stablePeriod: 3s\n  holdDown: 15s\n"

func status(t testing.TB, spec *cluster.Spec) failover.Status {
	t.Helper()
	resp, err := http.Get("http://" + spec.Failover.Listen + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st failover.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

var waitFor = testenv.WaitFor

// answers is what every authoritative server says the ACME name is.
func answers(spec *cluster.Spec) []string {
	var out []string
	for _, s := range spec.DNS.Servers {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(spec.ACME.Name), dns.TypeA)
		r, err := dns.Exchange(m, s.Address)
		if err != nil || len(r.Answer) == 0 {
			out = append(out, "?")
			continue
		}
		out = append(out, r.Answer[0].(*dns.A).A.String())
	}
	return out
}

func allAnswer(spec *cluster.Spec, site string) bool {
	s, _ := spec.SiteByName(site)
	for _, a := range answers(spec) {
		if a != s.Address {
			return false
		}
	}
	return true
}

// decided waits until the controller has made n more decisions.
func decided(t *testing.T, spec *cluster.Spec, n int64) {
	t.Helper()
	base := status(t, spec).Decisions
	waitFor(t, fmt.Sprintf("%d more decisions", n), 30*time.Second, func() bool { return status(t, spec).Decisions >= base+n })
}

func epoch(t *testing.T, spec *cluster.Spec) acmedns.Epoch {
	a, err := acmedns.FromSpec(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := a.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cur.Epoch
}

func pidOf(t *testing.T, l *lab.Lab, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
	return pid
}

func TestLabFailsOverByItself(t *testing.T) {
	spec := labtest.SpecWith(t, labtest.BlockFailover, fastPolicy, "a", "b", "c")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAllHealthy(t, spec, 60*time.Second)
	if st := status(t, spec); st.Active != "a" || !st.Leading || st.Leader != st.Controller {
		t.Fatalf("active %s (want a), leader %q, leading %v (the lab's controller leads its embedded etcd)", st.Active, st.Leader, st.Leading)
	}
	// Each site's release, as its front reports it, is what its bundle runs.
	lst, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every site's release on the controller", 30*time.Second, func() bool {
		st := status(t, spec)
		for i, s := range st.Sites {
			if s.Release == nil || s.Release.Boulder != boulderbin.Version || s.Release.Bundle != lst.Sites[i].Generation || s.Release.Bundle == "" {
				return false
			}
		}
		return true
	})

	// SIGKILL site a's WFE: the name moves to b on every authoritative server.
	siteDir := func(s string) string { return filepath.Join(spec.Dir, "sites", s) }
	syscall.Kill(pidOf(t, l, filepath.Join(siteDir("a"), "var", "pids", "wfe.pid")), syscall.SIGKILL)
	d := waitFor(t, "the name on b", 30*time.Second, func() bool { return allAnswer(spec, "b") })
	t.Logf("hard down (SIGKILL wfe): every authoritative server answers b %.1f s after the kill", d.Seconds())
	st := status(t, spec)
	if len(st.Moves) != 1 || st.Moves[0].To != "b" || !strings.Contains(st.Moves[0].Reason, "down") {
		t.Fatalf("moves: %+v", st.Moves)
	}

	// Stop b's SA while its directory still answers: after the hold-down
	// the name moves on to c.
	if err := l.StopComponent("b", "sa"); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, "the name on c", 60*time.Second, func() bool { return allAnswer(spec, "c") })
	t.Logf("deep failure (b's SA stopped): the name is on c %.1f s later (includes the rest of the hold-down)", d.Seconds())
	e := epoch(t, spec)
	if e.Site != "c" || e.N != 2 {
		t.Fatalf("epoch %+v", e)
	}
	// Every metric the shipped dashboard names, once the controller has
	// moved the name (propagation is measured per move).
	dashboardMetricsExist(t, spec)

	// Restart the controller right after the move: it converges on what
	// DNS says and makes no second move.
	cb := filepath.Join(spec.Dir, "cluster", "var", "pids", "controller.pid")
	old := pidOf(t, l, cb)
	syscall.Kill(old, syscall.SIGKILL)
	waitFor(t, "the old controller to die", 10*time.Second, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", old))
		return err != nil || strings.Contains(string(b), ") Z ")
	})
	// Its leader thread turns zombie before the other threads have closed
	// its sockets: until the listener is gone, the new controller's
	// readiness check would find the old one.
	waitFor(t, "the old controller's listener to close", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", spec.Failover.Listen, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if err := l.StartComponent(ctx, "cluster", "controller"); err != nil {
		t.Fatal(err)
	}
	// It has judged every site, then decided five more times: a second
	// move would have been made by now.
	waitFor(t, "the restarted controller to judge every site", 60*time.Second, func() bool {
		for _, s := range status(t, spec).Sites {
			if s.State == failover.Unknown {
				return false
			}
		}
		return true
	})
	decided(t, spec, 5)
	if e2 := epoch(t, spec); e2.N != e.N {
		t.Fatalf("the restarted controller moved again: epoch %d -> %d (%s)", e.N, e2.N, e2.Reason)
	}
	if st := status(t, spec); st.Active != "c" || len(st.Moves) != 1 || st.Moves[0].Epoch != e.N {
		t.Fatalf("restarted controller: active %s, moves %+v", st.Active, st.Moves)
	}

	// The status page, rendered by Chromium at a desktop's and a phone's
	// width, shows every site, the active one, why a and b fail (step, ACME
	// problem), the latency charts, availability and the moves.
	if _, err := exec.LookPath("chromium"); err == nil || os.Getenv("CI") != "" {
		start := time.Now()
		resp, err := http.Get("http://" + spec.Failover.Listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("status page: %d bytes, served in %v", len(page), time.Since(start).Round(time.Millisecond))
		for _, width := range []string{"1280,900", "390,844"} {
			dom := chromium(t, "--window-size="+width, "--dump-dom", "http://"+spec.Failover.Listen+"/")
			for _, want := range []string{">a<", ">b<", "c ◀ active", "healthy", "down", `id="moves"`, `id="site-a"`, `id="site-b"`,
				"fails at step", `class="problem"`, `<svg class="latency"`, "<polyline", `<rect class="down"`, `id="availability"`, "lost, retry 30s"} {
				if !strings.Contains(dom, want) {
					t.Errorf("status page at %s lacks %q", width, want)
				}
			}
			shot := filepath.Join(t.TempDir(), "status.png")
			chromium(t, "--screenshot="+shot, "--window-size="+width, "http://"+spec.Failover.Listen+"/")
			if st, err := os.Stat(shot); err != nil || st.Size() < 5000 {
				t.Errorf("screenshot at %s: %v %v", width, st, err)
			}
			if dir := os.Getenv("CAIRN_SCREENSHOT_DIR"); dir != "" {
				b, _ := os.ReadFile(shot)
				os.WriteFile(filepath.Join(dir, "failover-status-"+strings.Split(width, ",")[0]+".png"), b, 0o644)
			}
		}
	}

	// All sites down: DNS stays on c and the alert is raised.
	if err := l.StopComponent("c", "wfe"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the no-healthy-site alert", 30*time.Second, func() bool { return status(t, spec).Alert })
	decided(t, spec, 5)
	if !allAnswer(spec, "c") {
		t.Fatalf("DNS changed with every site down: %v", answers(spec))
	}
	resp, err := http.Get("http://" + spec.Failover.Listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Whole lines: each metric's HELP text also starts "<name> 1 …".
	if !strings.Contains(string(body), "\ncairn_failover_no_healthy_site 1\n") {
		t.Error("alert metric not set")
	}
	// The controller restarted above leads once its killed predecessor's
	// etcd session has expired (failover.etcd.sessionTTL): wait for that.
	waitFor(t, "the leadership metric to be 1 on the lab's only controller", spec.Failover.Etcd.SessionTTL.Duration+20*time.Second, func() bool {
		resp, err := http.Get("http://" + spec.Failover.Listen + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "\ncairn_failover_leader 1\n")
	})
	if e3 := epoch(t, spec); e3.N != e.N {
		t.Errorf("epoch changed with every site down: %+v", e3)
	}
}

func chromium(t *testing.T, args ...string) string { t.Helper(); return testenv.Chromium(t, args...) }

// A lab whose cairn.yaml selects PowerDNS as the cluster DNS: PowerDNS is
// the primary (the controller writes through its API, fenced through
// etcd; clients' DNS-01 arrives as RFC 2136 under a Lua policy), Knot the
// secondary; the name fails over end to end.
func TestLabWithPowerDNSFailsOver(t *testing.T) {
	spec := labtest.SpecWithDNS(t, labtest.BlockPowerDNS, cluster.DNSProviderPowerDNS, fastPolicy, "a", "b")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	// Healthy needs deep probes: issuance proves DNS-01 through PowerDNS.
	waitAllHealthy(t, spec, 90*time.Second)
	// The clients' key may not touch the epoch record (the Lua policy).
	clientKey, err := rfc2136.ReadKey(spec.Path(spec.DNS.TSIG.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cl := rfc2136.Client{Server: spec.PrimaryDNS().String(), Key: clientKey}
	if err := cl.SetTXT(ctx, spec.ACME.Zone, true, spec.EpochName(), "forged", 10); err == nil {
		t.Fatal("the clients' key wrote the epoch record")
	}
	if err := cl.SetTXT(ctx, spec.ACME.Zone, true, "_acme-challenge.x."+spec.ACME.Zone, "ok", 10); err != nil {
		t.Fatalf("the clients' key may write DNS-01 records: %v", err)
	}

	siteDir := func(s string) string { return filepath.Join(spec.Dir, "sites", s) }
	syscall.Kill(pidOf(t, l, filepath.Join(siteDir("a"), "var", "pids", "wfe.pid")), syscall.SIGKILL)
	d := waitFor(t, "the name on b at PowerDNS and Knot", 30*time.Second, func() bool { return allAnswer(spec, "b") })
	t.Logf("PowerDNS: every authoritative server answers b %.1f s after the kill", d.Seconds())
	st := status(t, spec)
	if len(st.Moves) != 1 || st.Moves[0].To != "b" || st.Moves[0].Cause != failover.CauseDown {
		t.Fatalf("moves: %+v", st.Moves)
	}
	for _, p := range st.Moves[0].Propagation {
		if !p.Done {
			t.Errorf("propagation: %+v", p)
		}
	}
	if e := epoch(t, spec); e.N != 1 || e.Site != "b" {
		t.Fatalf("epoch %+v", e)
	}
}

// A revocation for a site that is down: journaled in the controller's
// etcd, the site may not become active again before the serial is in its
// CRL; once it is back the revocation is applied and published, and
// `cairn revoke status` says when the serial appeared.
func TestLabRevokesAtADeadSite(t *testing.T) {
	// CRLs probed (and archived) every 5 s: the rebuild at the end needs
	// the controller's copy of b's newest CRLs.
	spec := labtest.SpecWith(t, labtest.BlockFailover, fastPolicy+"  probes:\n    crl: 5s\n", "a", "b")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	sum, err := l.Up(ctx, lab.UpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitAllHealthy(t, spec, 60*time.Second)
	certFile := issueAt(t, spec, sum, 1)
	_, viaACME, viaACMEKey := issueWithKey(t, spec, sum, 1, "revoke-via-acme")
	atA := goClientAt(t, spec, sum, 0) // where the ACME name points
	// No waiting out Retry-After (60 s) on a 503: one answer is enough here.
	atA.ACME().RetryBackoff = func(n int, _ *http.Request, resp *http.Response) time.Duration {
		if (resp != nil && resp.StatusCode == http.StatusServiceUnavailable) || n > 5 {
			return -1
		}
		return time.Duration(n) * 100 * time.Millisecond
	}

	// Site a's CRL front has copied b's CRL for this certificate's shard.
	cert := labtest.ReadCert(t, certFile)
	crlURL := cert.CRLDistributionPoints[0]
	mirrored := filepath.Join(spec.Dir, "sites", "a", "var", "crl-mirror", filepath.FromSlash(crlURL[strings.Index(crlURL[len("http://"):], "/")+len("http://")+1:]))
	waitFor(t, "a's copy of b's CRL", 90*time.Second, func() bool { _, err := os.Stat(mirrored); return err == nil })

	// Site b entirely down.
	b, err := site.ReadBundle(filepath.Join(spec.Dir, "sites", "b"))
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b.Processes) - 1; i >= 0; i-- {
		if err := l.StopComponent("b", b.Processes[i].Name); err != nil {
			t.Fatal(err)
		}
	}
	cairn := func(args ...string) string {
		out, err := exec.Command(l.Cairn, append([]string{"-f", spec.File}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("cairn %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := cairn("revoke", "--cert", certFile, "--reason", "keyCompromise"); !strings.Contains(out, "pending at site b") {
		t.Fatalf("revoke with b down: %s", out)
	}
	waitFor(t, "b blocked", 10*time.Second, func() bool { return status(t, spec).Sites[1].Blocked != "" })
	waitFor(t, "cairn_revocations_pending{site=b} 1", 15*time.Second, func() bool {
		resp, err := http.Get("http://" + spec.Failover.Listen + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `cairn_revocations_pending{site="b"} 1`)
	})
	// keyCompromise: the key is blocked at a (live) at once, b when it returns.
	var pending []revocation.Entry
	json.Unmarshal([]byte(cairn("-o", "json", "revoke", "status")), &pending)
	if len(pending) != 1 || pending[0].KeyBlocked["a"].IsZero() || !pending[0].KeyBlocked["b"].IsZero() {
		t.Fatalf("key blocks with b down: %+v", pending)
	}
	// b's CRL still downloads from its URL: crl.b lists every front, and
	// a's serves its copy (signature checked against b's issuer).
	crl, from := fetchCRLVia(t, sum, crlURL)
	issuer := labtest.ReadCert(t, filepath.Join(spec.Dir, "sites", "b", "pki", "b-e1.cert.pem"))
	if err := crl.CheckSignatureFrom(issuer); err != nil || time.Now().After(crl.NextUpdate) {
		t.Fatalf("b's CRL from %s while b is down: %v (nextUpdate %s)", from, err, crl.NextUpdate)
	}
	t.Logf("b down: its CRL %s downloaded from %s", crlURL, from)
	// Through ACME at a: b's certificate cannot be revoked while b is
	// down, and the client is told so (not 404 "unrecognized issuer").
	err = atA.ACME().RevokeCert(ctx, viaACMEKey, viaACME, acme.CRLReasonKeyCompromise)
	if err == nil || !strings.Contains(err.Error(), "NOT revoked") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("ACME revocation of b's certificate at a while b is down: %v", err)
	}
	if err := cairnJSON(l, spec, "failover", "move", "--to", "b"); err == nil {
		t.Error("an operator move to b while its revocation is pending was accepted")
	}

	// b back: applied, published, in the CRL; the gate lifts.
	back := time.Now()
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	var entries []revocation.Entry
	d := waitFor(t, "the serial in b's CRL", 5*time.Minute, func() bool {
		if err := json.Unmarshal([]byte(cairn("-o", "json", "revoke", "status")), &entries); err != nil {
			t.Fatal(err)
		}
		return len(entries) == 1 && entries[0].State() == "in-crl" && len(entries[0].KeyBlocked) == 2
	})
	t.Logf("b back → serial in b's published CRL: %.1f s (revoke status: revoked %s, in CRL %s)", d.Seconds(),
		entries[0].AppliedAt.Sub(back).Round(100*time.Millisecond), entries[0].InCRLAt.Sub(back).Round(100*time.Millisecond))
	if !entries[0].Deferred || entries[0].Site != "b" || entries[0].Reason != "keyCompromise" {
		t.Errorf("entry %+v", entries[0])
	}
	waitFor(t, "b no longer blocked", 15*time.Second, func() bool { return status(t, spec).Sites[1].Blocked == "" })
	// Through ACME at a again, b up: a's front passes the request to b
	// unchanged, and b's WFE redeems a's nonce at a's nonce service
	// (every WFE reaches every site's): Go's x/crypto/acme revokes b's
	// certificate through the ACME name, and so does a client that signs
	// with the certificate's key, on its first request, with a's nonce.
	if err := atA.ACME().RevokeCert(ctx, viaACMEKey, viaACME, acme.CRLReasonKeyCompromise); err != nil {
		t.Fatalf("x/crypto/acme revoking b's certificate at a, b up: %v", err)
	}
	// A client whose name moved between two requests: a nonce from a is
	// good at b (b's WFE started anew), and one from b at a once a's WFE
	// connected to b's nonce service again (its gRPC connection backed
	// off while b was down); until then a's front answers badNonce,
	// never Boulder's 500 (docs/revocation.md). Waited for, bounded by
	// gRPC's longest backoff, and the time logged.
	if status, body := nonceFromAt(t, spec, sum, 0, 1); status != http.StatusBadRequest || !strings.Contains(body, "accountDoesNotExist") {
		t.Errorf("a nonce of site a spent at site b: HTTP %d %s, want accountDoesNotExist (not badNonce)", status, body)
	}
	d = waitFor(t, "a nonce of b good at a (accountDoesNotExist)", 150*time.Second, func() bool {
		status, body := nonceFromAt(t, spec, sum, 1, 0)
		if status != http.StatusBadRequest || !strings.Contains(body, "accountDoesNotExist") && !strings.Contains(body, "badNonce") {
			t.Fatalf("a nonce of b spent at a just after b's return: HTTP %d %s, want accountDoesNotExist or badNonce", status, body)
		}
		return strings.Contains(body, "accountDoesNotExist")
	})
	t.Logf("a nonce of b accepted at a %.1f s after b's nonces were first spent there (b back %.1f s before)", d.Seconds(), time.Since(back).Seconds())
	_, second, secondKey := issueWithKey(t, spec, sum, 1, "revoke-via-acme-2")
	status, body, tries := revokeAsRFCClient(t, spec, sum, second, secondKey)
	if status != http.StatusOK || tries != 1 {
		t.Fatalf("RFC 8555 client revoking b's certificate at a with a's nonce: HTTP %d after %d requests %s", status, tries, body)
	}
	rebuildLostSite(t, l, spec, sum, []string{revocation.Serial(cert), revocation.Serial(labtest.ParseCert(t, viaACME)), revocation.Serial(labtest.ParseCert(t, second))})
}

// cairnJSON runs a cairn command and returns its error.
func cairnJSON(l *lab.Lab, spec *cluster.Spec, args ...string) error {
	return exec.Command(l.Cairn, append([]string{"-f", spec.File}, args...)...).Run()
}

// issueAt issues a certificate at site i (addressed directly) with the Go
// client and returns its PEM file.
func issueAt(t *testing.T, spec *cluster.Spec, sum *lab.Summary, i int) string {
	path, _, _ := issueWithKey(t, spec, sum, i, "revoke-me")
	return path
}

// goClientAt is the Go ACME client bound to site i (its address, the ACME
// name as TLS server name).
func goClientAt(t *testing.T, spec *cluster.Spec, sum *lab.Summary, i int) *acmeclient.Client {
	t.Helper()
	key, err := rfc2136.ReadKey(sum.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(sum.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	s := spec.Sites[i]
	c, err := acmeclient.New(acmeclient.Options{DirectoryURL: "https://" + spec.ACME.Name + "/directory", Roots: pool, ServerName: spec.ACME.Name,
		DialAddr: net.JoinHostPort(s.Address, strconv.Itoa(spec.ACME.HTTPSPort)),
		DNS:      acmeclient.DNSUpdater{Server: sum.DNS, Zone: spec.ACME.Zone, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// issueWithKey issues a certificate for name at site i and returns its PEM
// file, DER and private key.
func issueWithKey(t *testing.T, spec *cluster.Spec, sum *lab.Summary, i int, name string) (string, []byte, crypto.Signer) {
	t.Helper()
	c := goClientAt(t, spec, sum, i)
	if _, err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	chain, key, _, err := c.Issue(context.Background(), []string{name + "." + spec.ACME.Zone})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, chain[0], key
}

func waitAllHealthy(t *testing.T, spec *cluster.Spec, timeout time.Duration) {
	t.Helper()
	waitFor(t, "every site healthy", timeout, func() bool {
		for _, s := range status(t, spec).Sites {
			if s.State != failover.Healthy {
				return false
			}
		}
		return true
	})
}

// fetchCRLVia fetches a CRL URL as a relying party would: its host
// resolved through the lab's DNS (every address tried in turn).
func fetchCRLVia(t *testing.T, sum *lab.Summary, rawURL string) (*x509.RevocationList, string) {
	t.Helper()
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, sum.DNS)
	}}
	var from string
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{Resolver: res, Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
		if err == nil {
			from = c.RemoteAddr().String()
		}
		return c, err
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		t.Fatalf("GET %s from %s: HTTP %d: %v", rawURL, from, resp.StatusCode, err)
	}
	return crl, from
}

// revokeAsRFCClient sends revokeCert for der to site a (where the ACME
// name points), JWS-signed with the certificate's key, and retries once
// with the nonce of a badNonce answer, as RFC 8555 §6.5 says clients do.
func revokeAsRFCClient(t *testing.T, spec *cluster.Spec, sum *lab.Summary, der []byte, key crypto.Signer) (status int, body string, tries int) {
	t.Helper()
	hc := httpsAt(spec, sum, 0)
	base := "https://" + spec.ACME.Name
	resp, err := hc.Head(base + "/acme/new-nonce")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	nonce := resp.Header.Get("Replay-Nonce")
	payload, _ := json.Marshal(map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(der), "reason": 1})
	for try := 0; try < 2; try++ {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, &jose.SignerOptions{EmbedJWK: true,
			ExtraHeaders: map[jose.HeaderKey]any{"nonce": nonce, "url": base + "/acme/revoke-cert"}})
		if err != nil {
			t.Fatal(err)
		}
		sig, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Post(base+"/acme/revoke-cert", "application/jose+json", strings.NewReader(sig.FullSerialize()))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "badNonce") {
			return resp.StatusCode, string(b), try + 1
		}
		nonce = resp.Header.Get("Replay-Nonce")
	}
	return 0, "badNonce twice", 2
}

// httpsAt is an HTTPS client of site i's front for the ACME name.
func httpsAt(spec *cluster.Spec, sum *lab.Summary, i int) *http.Client {
	rootPEM, _ := os.ReadFile(sum.RootCert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	addr := net.JoinHostPort(spec.Sites[i].Address, strconv.Itoa(spec.ACME.HTTPSPort))
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: spec.ACME.Name},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
}

// nonceFromAt takes a nonce from site from and spends it on a newAccount
// lookup (onlyReturnExisting, a new key) at site at, as a client does
// whose name moved between the two requests; it returns the answer.
func nonceFromAt(t *testing.T, spec *cluster.Spec, sum *lab.Summary, from, at int) (int, string) {
	t.Helper()
	base := "https://" + spec.ACME.Name
	resp, err := httpsAt(spec, sum, from).Head(base + "/acme/new-nonce")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, &jose.SignerOptions{EmbedJWK: true,
		ExtraHeaders: map[jose.HeaderKey]any{"nonce": resp.Header.Get("Replay-Nonce"), "url": base + "/acme/new-acct"}})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign([]byte(`{"onlyReturnExisting":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = httpsAt(spec, sum, at).Post(base+"/acme/new-acct", "application/jose+json", strings.NewReader(sig.FullSerialize()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dashboardMetricsExist: every metric the shipped Grafana dashboard names
// is served by the running controller (availability within one export).
func dashboardMetricsExist(t *testing.T, spec *cluster.Spec) {
	t.Helper()
	m, err := monitoring.DashboardModel()
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		resp, err := http.Get("http://" + spec.Failover.Listen + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = nil
		for _, name := range m.Metrics() {
			if !strings.Contains(string(body), "\n# TYPE "+name+" ") {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return
		}
	}
	t.Errorf("dashboard metrics the controller does not serve: %v", missing)
}
