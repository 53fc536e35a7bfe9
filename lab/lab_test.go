package lab

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/site"
)

var labTools = append(labtest.Tools, "lego", "certbot", "unshare")

// testSpec is a lab spec whose site intermediates are name-constrained to
// the cluster zone (policy.allowedNames): every certificate the tests get
// verifies through them (checkFromSite: Go's verifier enforces the
// constraints).
func testSpec(t testing.TB, sites ...string) *cluster.Spec {
	testenv.Integration(t, labTools...)
	return labtest.SpecWith(t, labtest.BlockLab, "policy:\n  allowedNames: [t.home.arpa]\n", sites...)
}

// upLab starts a lab and stops it when the test ends.
func upLab(t testing.TB, spec *cluster.Spec) (*Lab, *Summary) {
	t.Helper()
	l := &Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	t.Cleanup(func() { l.Down(context.Background()) })
	sum, err := l.Up(ctx, UpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l, sum
}

func rootPool(t testing.TB, sum *Summary) (*x509.CertPool, *x509.Certificate) {
	b, err := os.ReadFile(sum.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return pool, root
}

func goClient(t testing.TB, spec *cluster.Spec, sum *Summary, siteIdx int) *acmeclient.Client {
	t.Helper()
	return labtest.ACMEClient(t, spec, siteIdx, sum.RootCert, sum.ClientKey, sum.DNS)
}

// legoEnv is the environment lego's rfc2136 provider needs.
func legoEnv(t testing.TB, spec *cluster.Spec, sum *Summary) []string {
	key, err := rfc2136.ReadKey(sum.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	return acmecli.LegoEnv(os.Environ(), sum.RootCert, sum.DNS, spec.ACME.Zone, key)
}

// lego is lego against dir, its state in path.
func lego(spec *cluster.Spec, sum *Summary, dir, path, domain string) acmecli.Lego {
	return acmecli.Lego{Server: dir, Email: "ops@" + spec.ACME.Zone, Path: path, Resolver: sum.DNS, Domain: domain}
}

// withLabResolver runs argv in a private mount namespace whose
// /etc/resolv.conf points at the lab's DNS, as a client of the ACME name.
func withLabResolver(t testing.TB, sum *Summary, argv []string) []string {
	host, _, _ := net.SplitHostPort(sum.DNS)
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, acmecli.ResolvConf(host), 0o644)
	return acmecli.WithResolver(resolv, argv)
}

func run(t testing.TB, env []string, argv []string) (string, error) { return labtest.Run(env, argv) }

func readPEMCert(t testing.TB, path string) *x509.Certificate { return labtest.ReadCert(t, path) }

// checkFromSite verifies the certificate chains to the root through one of
// the site's intermediates and carries the site's serial prefix.
func checkFromSite(t *testing.T, l *Lab, spec *cluster.Spec, sum *Summary, siteIdx int, cert *x509.Certificate, who string) {
	t.Helper()
	s := spec.Sites[siteIdx]
	pool, _ := rootPool(t, sum)
	inter := x509.NewCertPool()
	matches, _ := filepath.Glob(filepath.Join(l.siteDir(s.Name), "pki", s.Name+"-*.cert.pem"))
	for _, m := range matches {
		inter.AddCert(readPEMCert(t, m))
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
	if err != nil {
		t.Errorf("%s: certificate from site %s does not chain to the root through the site's intermediates: %v", who, s.Name, err)
	}
	for _, c := range chains {
		if len(spec.Policy.AllowedNames) > 0 && (len(c) != 3 || !slices.Equal(c[1].PermittedDNSDomains, spec.Policy.AllowedNames)) {
			t.Errorf("%s: issued by %s, not an intermediate constrained to %v", who, c[1].Subject, spec.Policy.AllowedNames)
		}
	}
	if got := cert.SerialNumber.Bytes()[0]; got != s.SerialPrefix.Value() {
		t.Errorf("%s: serial %x from site %s does not start with %s", who, cert.SerialNumber, s.Name, s.SerialPrefix)
	}
}

// nameMoves describes every move and its reason when the controller has
// moved the ACME name away from want, or returns "".
func nameMoves(t *testing.T, spec *cluster.Spec, want string) string {
	t.Helper()
	st, err := (&failover.Client{Spec: spec, HTTP: &http.Client{Timeout: 3 * time.Second}}).Status(context.Background())
	if err != nil {
		t.Fatalf("the controller's status: %v", err)
	}
	if st.Active == want {
		return ""
	}
	var moves []string
	for _, m := range st.Moves {
		moves = append(moves, fmt.Sprintf("%s %s→%s (%s: %s)", m.At.Format(time.TimeOnly), m.From, m.To, m.Cause, m.Reason))
	}
	var sites []string
	for _, s := range st.Sites {
		sites = append(sites, fmt.Sprintf("%s %s since %s: %s", s.Name, s.State, s.Since.Format(time.TimeOnly), s.Reason))
	}
	return fmt.Sprintf("the ACME name points at %q, not %s; moves: %s; sites: %s", st.Active, want,
		strings.Join(moves, "; "), strings.Join(sites, "; "))
}

// checkThroughName: lego and certbot through the ACME name get their
// certificates from the site it points at, the best-priority one (a).
func checkThroughName(t *testing.T, l *Lab, spec *cluster.Spec, sum *Summary) {
	t.Helper()
	if moved := nameMoves(t, spec, spec.Sites[0].Name); moved != "" {
		t.Fatal(moved)
	}
	nameDir := "https://" + spec.ACME.Name + "/directory"
	legoPath := filepath.Join(t.TempDir(), "lego")
	name := "lego-name." + spec.ACME.Zone
	out, err := run(t, legoEnv(t, spec, sum), withLabResolver(t, sum, lego(spec, sum, nameDir, legoPath, name).Args("run")))
	if err != nil {
		t.Fatalf("lego through the ACME name: %v\n%s", err, out)
	}
	checkFromSite(t, l, spec, sum, 0, readPEMCert(t, filepath.Join(legoPath, "certificates", name+".crt")), "lego via name")
	cbDir := t.TempDir()
	out, err = run(t, acmecli.CertbotEnv(os.Environ(), sum.RootCert), withLabResolver(t, sum, certbotArgs(sum, nameDir, cbDir, "certbot-name."+spec.ACME.Zone)))
	if err != nil {
		t.Fatalf("certbot through the ACME name: %v\n%s", err, out)
	}
	checkFromSite(t, l, spec, sum, 0, readPEMCert(t, filepath.Join(cbDir, "live", "certbot-name."+spec.ACME.Zone, "cert.pem")), "certbot via name")
}

func TestLabEndToEnd(t *testing.T) {
	spec := testSpec(t, "a", "b")
	l, sum := upLab(t, spec)
	ctx := context.Background()

	st, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Sites {
		if !s.DirectoryOK {
			t.Fatalf("site %s directory: %s", s.Name, s.DirectoryError)
		}
		for _, p := range s.Processes {
			if !p.Up {
				t.Errorf("site %s: %s is down", s.Name, p.Name)
			}
		}
	}

	checkPrometheus(t, st)
	checkExec(t, spec)
	checkHeal(t, l)
	checkThroughName(t, l, spec, sum)
	checkFrontUnderAbuse(t, l, spec, sum)
	checkNothingIssuesThroughTheFront(t, l, spec)
	checkNonceServiceAnswersSitesOnly(t, l, spec)

	// The health-probe account is exempted from per-account limits at every
	// site (overrides in the SA database, read back with Boulder's admin tool).
	targets, err := healthcheck.SiteTargets(spec)
	if err != nil {
		t.Fatal(err)
	}
	adminBin, err := boulderbin.Ensure(ctx, io.Discard, "admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		id, err := healthcheck.RegisterProbeAccount(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		dump := filepath.Join(t.TempDir(), "overrides.csv")
		out, err := exec.Command(adminBin["admin"], "-config", filepath.Join(l.siteDir(tg.Site), "etc", "admin.json"),
			"dump-limit-overrides", "-file", dump).CombinedOutput()
		if err != nil {
			t.Fatalf("admin dump-limit-overrides: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(dump)
		for _, o := range site.ProbeOverrides() {
			if !strings.Contains(string(b), fmt.Sprintf("%s,%d,%d,", o.Limit, id, o.Count)) {
				t.Errorf("site %s: no %s override for probe account %d:\n%s", tg.Site, o.Limit, id, b)
			}
		}
	}

	// The cluster DNS keys are scoped: clients may not move the ACME name,
	// the controller may not write clients' challenge records.
	clientKey, _ := rfc2136.ReadKey(sum.ClientKey)
	ctlKey, _ := rfc2136.ReadKey(spec.Path(spec.DNS.TSIG.ControllerKeyFile))
	asUpdater := func(k rfc2136.Key) acmeclient.DNSUpdater {
		return acmeclient.DNSUpdater{Server: sum.DNS, Zone: spec.ACME.Zone, Key: k}
	}
	if err := asUpdater(clientKey).Update(ctx, true, spec.EpochName(), "forged"); err == nil {
		t.Error("the clients' key could write the controller's epoch record")
	}
	if err := asUpdater(ctlKey).Update(ctx, true, "_acme-challenge.x."+spec.ACME.Zone, "forged"); err == nil {
		t.Error("the controller's key could write a challenge record")
	}
	if err := asUpdater(clientKey).Update(ctx, true, "_acme-challenge.x."+spec.ACME.Zone, "ok"); err != nil {
		t.Errorf("the clients' key cannot write a challenge record: %v", err)
	}

	// (d) Account IDs are disjoint: ID mod 128 is the site's serial prefix.
	accounts := map[int]int64{}
	var beforeRotation []byte
	var beforeClient *acmeclient.Client
	var revokeByCLI *x509.Certificate
	for i := range spec.Sites {
		c := goClient(t, spec, sum, i)
		acct, err := c.Register(ctx)
		if err != nil {
			t.Fatalf("site %s: register: %v", spec.Sites[i].Name, err)
		}
		id, err := strconv.ParseInt(acct.URI[strings.LastIndex(acct.URI, "/")+1:], 10, 64)
		if err != nil {
			t.Fatalf("account URI %s", acct.URI)
		}
		accounts[i] = id
		if site.AccountIDSite(id) != int(spec.Sites[i].SerialPrefix.Value()) {
			t.Errorf("site %s account ID %d: mod 128 = %d, want %d", spec.Sites[i].Name, id, id%128, spec.Sites[i].SerialPrefix.Value())
		}
		chain, _, _, err := c.Issue(ctx, []string{fmt.Sprintf("go%d.%s", i, spec.ACME.Zone)})
		if err != nil {
			t.Fatalf("site %s: Go client issuance: %v", spec.Sites[i].Name, err)
		}
		cert, _ := x509.ParseCertificate(chain[0])
		checkFromSite(t, l, spec, sum, i, cert, "go client")
		if i == 1 {
			beforeRotation, beforeClient = chain[0], c
		}
		if i == 0 {
			revokeByCLI = cert
		}
	}
	if accounts[0]%128 == accounts[1]%128 {
		t.Errorf("accounts at a and b share a residue: %v", accounts)
	}

	// (a, b) lego and certbot from every site directly, and through the ACME name.
	var revokeMe string
	for i, s := range spec.Sites {
		dir := "https://" + s.Address + "/directory"
		legoPath := filepath.Join(t.TempDir(), "lego")
		name := fmt.Sprintf("lego-%s.%s", s.Name, spec.ACME.Zone)
		out, err := run(t, legoEnv(t, spec, sum), lego(spec, sum, dir, legoPath, name).Args("run"))
		if err != nil {
			t.Fatalf("lego from site %s: %v\n%s", s.Name, err, out)
		}
		certFile := filepath.Join(legoPath, "certificates", name+".crt")
		checkFromSite(t, l, spec, sum, i, readPEMCert(t, certFile), "lego")
		if i == 0 {
			revokeMe = legoPath
		}

		cbName := fmt.Sprintf("certbot-%s.%s", s.Name, spec.ACME.Zone)
		cbDir := t.TempDir()
		out, err = run(t, acmecli.CertbotEnv(os.Environ(), sum.RootCert), certbotArgs(sum, dir, cbDir, cbName))
		if err != nil {
			t.Fatalf("certbot from site %s: %v\n%s", s.Name, err, out)
		}
		checkFromSite(t, l, spec, sum, i, readPEMCert(t, filepath.Join(cbDir, "live", cbName, "cert.pem")), "certbot")
	}

	// (c) A revocation through lego appears in the site's CRL at the URL in
	// the certificate.
	lname := "lego-a." + spec.ACME.Zone
	cert := readPEMCert(t, filepath.Join(revokeMe, "certificates", lname+".crt"))
	out, err := run(t, legoEnv(t, spec, sum), lego(spec, sum, "https://"+spec.Sites[0].Address+"/directory", revokeMe, lname).Args("revoke", "--reason", "4"))
	if err != nil {
		t.Fatalf("lego revoke: %v\n%s", err, out)
	}
	if err := l.UpdateCRLs(ctx, spec.Sites[0].Name); err != nil {
		t.Fatal(err)
	}
	if len(cert.CRLDistributionPoints) != 1 {
		t.Fatalf("certificate CRL DPs: %v", cert.CRLDistributionPoints)
	}
	crl := waitInCRL(t, sum, cert)
	issuerMatches, _ := filepath.Glob(filepath.Join(l.siteDir("a"), "pki", "a-e1.cert.pem"))
	if err := crl.CheckSignatureFrom(readPEMCert(t, issuerMatches[0])); err != nil {
		t.Errorf("CRL signature: %v", err)
	}

	// (g) `cairn revoke --cert` finds the issuing site from the serial
	// prefix and revokes there; the serial is in that site's CRL.
	pemFile := filepath.Join(t.TempDir(), "go-a.pem")
	os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: revokeByCLI.Raw}), 0o644)
	if out, err := exec.Command(l.Cairn, "-f", spec.File, "revoke", "--cert", pemFile, "--reason", "keyCompromise").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "at site a") {
		t.Fatalf("cairn revoke: %v\n%s", err, out)
	}
	if err := l.UpdateCRLs(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitInCRL(t, sum, revokeByCLI)

	// (f) After `cairn pki rotate b`, a certificate b issued with the
	// previous generation can still be revoked (the WFE knows every live
	// generation, not only the current one).
	rotateSite(t, l, "b")
	if err := beforeClient.Revoke(ctx, beforeRotation, acme.CRLReasonSuperseded); err != nil {
		t.Errorf("revoking a certificate of b's previous generation: %v", err)
	}

	// (e) After down nothing of the lab remains.
	bundles, _ := l.bundles()
	cb, _ := site.ReadClusterBundle(l.clusterDir())
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, spec, bundles, cb)
}

func certbotArgs(sum *Summary, dir, cbDir, name string) []string {
	host, _, _ := net.SplitHostPort(sum.DNS)
	return acmecli.Certbot{Server: dir, Dir: cbDir, Domain: name, DNSHost: host, KeyFile: sum.ClientKey}.Certonly()
}

// fetchCRL resolves the CRL URL's host through the lab DNS and fetches it.
func fetchCRL(t *testing.T, sum *Summary, rawURL string) *x509.RevocationList {
	t.Helper()
	host := strings.Split(strings.TrimPrefix(rawURL, "http://"), "/")[0]
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), dns.TypeA)
	r, err := dns.Exchange(m, sum.DNS)
	if err != nil || len(r.Answer) == 0 {
		t.Fatalf("resolve %s at %s: %v %v", host, sum.DNS, err, r)
	}
	ip := r.Answer[0].(*dns.A).A.String()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(ip, "80"))
	}}}
	resp, err := client.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", rawURL, resp.StatusCode, body)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func assertNothingLeft(t *testing.T, spec *cluster.Spec, bundles []*site.Bundle, cb *site.ClusterBundle) {
	t.Helper()
	var all []hostrun.Proc
	for _, b := range bundles {
		for _, p := range b.Processes {
			all = append(all, hostrun.Proc{Process: p, Root: b.Root})
		}
	}
	for _, p := range cb.All() {
		all = append(all, hostrun.Proc{Process: p, Root: cb.Root})
	}
	for _, p := range all {
		if _, up := p.Running(); up {
			t.Errorf("%s still running after down", p.Name)
		}
		if c, err := net.DialTimeout("tcp", p.Listen, 300*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("something still listens on %s (%s) after down", p.Listen, p.Name)
		}
	}
	aliases := cb.BindAddresses
	for _, b := range bundles {
		aliases = append(aliases, b.BindAddresses...)
	}
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range aliases {
		for _, a := range ifAddrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
				t.Errorf("loopback alias %s remains after down", ip)
			}
		}
	}
	out, _ := exec.Command("pgrep", "-f", spec.Dir).Output()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("processes mentioning %s remain: %s", spec.Dir, s)
	}
}

func TestSupervisorRestartsCrashedProcesses(t *testing.T) {
	spec := testSpec(t, "a")
	l := &Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, UpOptions{Restart: true}); err != nil {
		t.Fatal(err)
	}
	b, _ := site.ReadBundle(l.siteDir("a"))
	var nonce hostrun.Proc
	for _, p := range b.Processes {
		if p.Name == "nonce" {
			nonce = hostrun.Proc{Process: p, Root: b.Root}
		}
	}
	pid, up := nonce.Running()
	if !up {
		t.Fatal("nonce not running")
	}
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if newPID, up := nonce.Running(); up && newPID != pid {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(l.supervisorProc().LogFile())
			t.Fatalf("the supervisor did not restart the killed nonce service; supervisor log: %s", hostrun.LastLines(log, 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Ready again: its readiness address accepts connections.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(nonce.Ready, "tcp:"), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if _, up := nonce.Running(); !up || time.Now().After(deadline) {
			t.Fatalf("nonce not ready again: %v", err)
		}
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if _, up := l.supervisorProc().Running(); up {
		t.Error("supervisor still running after down")
	}
	if _, up := nonce.Running(); up {
		t.Error("nonce restarted after down")
	}
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// rotateSite makes a new intermediate generation for site, renders again
// and restarts its WFE (the component whose chains change).
func rotateSite(t *testing.T, l *Lab, siteName string) {
	t.Helper()
	ctx := context.Background()
	bins, err := boulderbin.Ensure(ctx, io.Discard, "ceremony")
	if err != nil {
		t.Fatal(err)
	}
	pki, unlock, err := intermediates.Open(l.Spec, intermediates.Options{Ceremony: bins["ceremony"], Log: io.Discard, Signer: labtest.CairnBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	gen, err := pki.Rotate(ctx, siteName)
	unlock()
	if err != nil || gen != 2 {
		t.Fatalf("rotate %s: generation %d, %v", siteName, gen, err)
	}
	if _, err := l.Up(ctx, UpOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.StopComponent(siteName, "wfe"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartComponent(ctx, siteName, "wfe"); err != nil {
		t.Fatal(err)
	}
}

// waitInCRL fetches cert's CRL through its distribution point until it
// lists cert: crl.<site> names every site's CRL front, and another site's
// front serves its copy of this site's CRL for up to 10 s before fetching
// it again (internal/httpfront, fetchEvery).
func waitInCRL(t *testing.T, sum *Summary, cert *x509.Certificate) *x509.RevocationList {
	t.Helper()
	var crl *x509.RevocationList
	testenv.WaitFor(t, fmt.Sprintf("serial %x in the CRL at %s", cert.SerialNumber, cert.CRLDistributionPoints[0]), 30*time.Second, func() bool {
		crl = fetchCRL(t, sum, cert.CRLDistributionPoints[0])
		return inCRL(crl, cert)
	})
	return crl
}

func inCRL(crl *x509.RevocationList, cert *x509.Certificate) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

// checkPrometheus: the lab's Prometheus runs, lists in status, has cairn's
// rules loaded and scrapes the controller and every Boulder component.
func checkPrometheus(t *testing.T, st *Status) {
	t.Helper()
	var prom *ProcStatus
	for i, p := range st.Cluster {
		if p.Name == site.PrometheusProcess {
			prom = &st.Cluster[i]
		}
	}
	if prom == nil || !prom.Up || st.PrometheusURL == "" {
		t.Fatalf("lab status: no running Prometheus (%+v, %q)", prom, st.PrometheusURL)
	}
	get := func(path string, v any) error {
		resp, err := http.Get(st.PrometheusURL + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(v)
	}
	var rules struct {
		Data struct{ Groups []struct{ Name string } }
	}
	if err := get("api/v1/rules", &rules); err != nil || len(rules.Data.Groups) < 3 {
		t.Errorf("Prometheus rules: %+v (%v)", rules, err)
	}
	var down []string
	deadline := time.Now().Add(45 * time.Second)
	for {
		var targets struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string
					Health    string
					LastError string
				}
			}
		}
		if err := get("api/v1/targets", &targets); err != nil {
			t.Fatal(err)
		}
		down = nil
		jobs := map[string]int{}
		for _, tg := range targets.Data.ActiveTargets {
			jobs[tg.Labels["job"]]++
			if tg.Health != "up" {
				down = append(down, tg.Labels["job"]+" "+tg.Labels["site"]+"/"+tg.Labels["component"]+": "+tg.Health+" "+tg.LastError)
			}
		}
		if len(down) == 0 && jobs["cairn-controller"] == 1 && jobs["boulder"] == 13*len(st.Sites) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("Prometheus targets %v, not up: %v", jobs, down)
			return
		}
		time.Sleep(time.Second)
	}
}

// checkExec: lego run by `cairn lab exec` issues through the ACME name.
func checkExec(t *testing.T, spec *cluster.Spec) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(labtest.CairnBinary(t), "-f", spec.File, "lab", "exec", "--", "lego", "--server", "https://"+spec.ACME.Name+"/directory",
		"--accept-tos", "--email", "ops@"+spec.ACME.Zone, "--path", dir, "--dns", "rfc2136", "--domains", "exec."+spec.ACME.Zone, "run")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("cairn lab exec -- lego through %s: %v\n%s", spec.ACME.Name, err, out)
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "certificates", "exec."+spec.ACME.Zone+".crt")); err != nil {
		t.Errorf("lab exec lego: %v", err)
	}
}

// checkHeal: with site b's SA and nonce service dead, lab status marks
// them DOWN; lab up starts exactly those and returns once b serves again
// (its WFE's connections to them were backing off).
func checkHeal(t *testing.T, l *Lab) {
	t.Helper()
	ctx := context.Background()
	pids := func(st *Status) map[string]ProcStatus {
		m := map[string]ProcStatus{}
		for _, p := range st.Cluster {
			m["cluster/"+p.Name] = p
		}
		for _, s := range st.Sites {
			for _, p := range s.Processes {
				m[s.Name+"/"+p.Name] = p
			}
		}
		return m
	}
	before, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]bool{"b/sa": true, "b/nonce": true}
	for name := range dead {
		if err := l.StopComponent("b", strings.TrimPrefix(name, "b/")); err != nil {
			t.Fatal(err)
		}
	}
	st, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range pids(st) {
		if p.Up == dead[name] {
			t.Errorf("lab status with b's sa and nonce dead: %s up=%v", name, p.Up)
		}
	}
	start := time.Now()
	if _, err := l.Up(ctx, UpOptions{}); err != nil {
		t.Fatalf("lab up on a lab with dead components: %v", err)
	}
	t.Logf("lab up healed b's sa and nonce in %.1f s", time.Since(start).Seconds())
	after, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := pids(before)
	for name, p := range pids(after) {
		switch {
		case !p.Up:
			t.Errorf("after lab up, %s is down", name)
		case dead[name] && p.PID == old[name].PID:
			t.Errorf("%s: not restarted", name)
		case !dead[name] && p.PID != old[name].PID:
			t.Errorf("%s: restarted (pid %d -> %d) though it was running", name, old[name].PID, p.PID)
		}
	}
	for _, s := range after.Sites {
		if !s.DirectoryOK {
			t.Errorf("after lab up, site %s directory: %s", s.Name, s.DirectoryError)
		}
	}
}
