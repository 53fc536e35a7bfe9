package drill

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/revocation"
	"github.com/cairn-pki/cairn/site"
)

// RevocationStep: at At (while the faulted site is down) one of its
// certificates is revoked through `cairn revoke` (the controller's
// journal) and another through ACME at the ACME name, retried until it
// goes through.
type RevocationStep struct {
	At Duration `yaml:"at,omitempty" json:"at"`
}

// RevocationReport is what the revocation checks saw.
type RevocationReport struct {
	// Journaled: the serial revoked with cairn revoke, and when the
	// controller saw it in the faulted site's published CRL.
	Journaled      string     `json:"journaledSerial,omitempty"`
	JournalState   string     `json:"journalState,omitempty"`
	InCRLAt        *time.Time `json:"inCRLAt,omitempty"`
	RestoredAt     time.Time  `json:"restoredAt"`
	MovedBackFirst bool       `json:"movedBackBeforeInCRL"`
	// ACME: the revocation through the ACME name: answers while the site
	// was down, and when it went through.
	ACMEDownAnswers []string   `json:"acmeAnswersWhileDown,omitempty"`
	ACMERevokedAt   *time.Time `json:"acmeRevokedAt,omitempty"`
	// CRL checks (pass.crlsAvailable): openssl verify -crl_check of a valid
	// certificate of the faulted site, with its CRL fetched through its URL
	// as a relying party would, every 5 s while the faults are in place.
	// Each check is a relying party that tries again every 2 s for up to
	// crlPatience (2 s to connect each time): it fails if it gets no CRL
	// in that time. Slowest: the longest a check took to get it; Retried:
	// the checks that needed more than one try.
	CRLChecks    int      `json:"crlChecks"`
	CRLFailures  []string `json:"crlFailures,omitempty"`
	CRLSlowestMS float64  `json:"crlSlowestMs,omitempty"`
	CRLRetried   int      `json:"crlRetried,omitempty"`
	// RealClients: certbot and lego, the faulted site back, each revoking
	// the certificate it got from that site before the fault, through
	// the ACME name (Site: where it pointed, another site: the front
	// passes the request to the issuing one, which redeems the nonce
	// where it was issued).
	RealClients []RealRun `json:"realClientRevocations,omitempty"`
	Errors      []string  `json:"errors,omitempty"`
}

// siteCert is a certificate the faulted site issued before the fault.
type siteCert struct {
	der   []byte
	chain [][]byte
	key   crypto.Signer
}

// issueAtSite issues one certificate at site (addressed directly).
func (r *Runner) issueAtSite(ctx context.Context, w *workload, site, name string) (*siteCert, error) {
	c, err := r.siteClient(w, site, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := c.Register(ictx); err != nil {
		return nil, err
	}
	chain, key, _, err := c.Issue(ictx, []string{name + "." + r.spec.ACME.Zone})
	if err != nil {
		return nil, fmt.Errorf("issue at %s: %w", site, err)
	}
	return &siteCert{der: chain[0], chain: chain, key: key}, nil
}

// revokeJournaled asks the controller to revoke serial (keyCompromise).
func (r *Runner) revokeJournaled(ctx context.Context, cert *siteCert) (revocation.Entry, error) {
	var e revocation.Entry
	c, _ := x509.ParseCertificate(cert.der)
	path := "/api/revoke?serial=" + revocation.Serial(c) + "&reason=keyCompromise"
	err := (&failover.Client{Spec: r.spec, HTTP: &http.Client{Timeout: 40 * time.Second}}).Call(ctx, http.MethodPost, path, &e)
	return e, err
}

// journalEntry reads the controller's journal entry for serial.
func (r *Runner) journalEntry(ctx context.Context, serial string) (revocation.Entry, bool) {
	var es []revocation.Entry
	if err := (&failover.Client{Spec: r.spec, HTTP: &http.Client{Timeout: 5 * time.Second}}).Call(ctx, http.MethodGet, "/api/revocations", &es); err != nil {
		return revocation.Entry{}, false
	}
	for _, e := range es {
		if e.Serial == serial {
			return e, true
		}
	}
	return revocation.Entry{}, false
}

// revokeByACME revokes cert through the ACME name (the active site), as an
// RFC 8555 client does: signed with the certificate's key, retried with
// the nonce of a badNonce answer. It returns the final status and body.
func (r *Runner) revokeByACME(ctx context.Context, w *workload, cert *siteCert) (int, string, error) {
	addrs, err := r.nameAddrs(ctx)
	if err != nil || len(addrs) == 0 {
		return 0, "", fmt.Errorf("resolve the ACME name: %v", err)
	}
	hc := dialingClient(net.JoinHostPort(addrs[0], strconv.Itoa(r.spec.ACME.HTTPSPort)), 20*time.Second,
		&tls.Config{RootCAs: w.roots, ServerName: r.spec.ACME.Name})
	// The URL as the directory gives it (no :443): the JWS url must match.
	base := "https://" + r.spec.ACME.Name
	if r.spec.ACME.HTTPSPort != 443 {
		base = "https://" + net.JoinHostPort(r.spec.ACME.Name, strconv.Itoa(r.spec.ACME.HTTPSPort))
	}
	resp, err := hc.Head(base + "/acme/new-nonce")
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	nonce := resp.Header.Get("Replay-Nonce")
	payload, _ := json.Marshal(map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(cert.der), "reason": 1})
	var status int
	var body string
	for try := 0; try < 3; try++ {
		alg := jose.ES256
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cert.key}, &jose.SignerOptions{EmbedJWK: true,
			ExtraHeaders: map[jose.HeaderKey]any{"nonce": nonce, "url": base + "/acme/revoke-cert"}})
		if err != nil {
			return 0, "", err
		}
		sig, err := signer.Sign(payload)
		if err != nil {
			return 0, "", err
		}
		resp, err := hc.Post(base+"/acme/revoke-cert", "application/jose+json", strings.NewReader(sig.FullSerialize()))
		if err != nil {
			return 0, "", err
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		status, body = resp.StatusCode, string(b)
		if status != http.StatusBadRequest || !strings.Contains(body, "badNonce") {
			break
		}
		nonce = resp.Header.Get("Replay-Nonce")
	}
	return status, body, nil
}

// clusterResolver resolves through the cluster's primary DNS server,
// every address of an answer (a relying party tries each in turn).
func (r *Runner) clusterResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, r.spec.PrimaryDNS().String())
	}}
}

// nameAddrs is the ACME name's answer at the primary.
func (r *Runner) nameAddrs(ctx context.Context) ([]string, error) {
	return r.clusterResolver().LookupHost(ctx, r.spec.ACME.Name)
}

// checkCRL verifies cert with openssl -crl_check against its CRL fetched
// through its URL (the host resolved by the cluster DNS, each address
// tried in turn), as a relying party does.
func (r *Runner) checkCRL(ctx context.Context, cert *siteCert, dir string) error {
	c, err := x509.ParseCertificate(cert.der)
	if err != nil || len(c.CRLDistributionPoints) == 0 {
		return fmt.Errorf("certificate without a CRL URL")
	}
	u, _ := url.Parse(c.CRLDistributionPoints[0])
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second, Resolver: r.clusterResolver()}).DialContext}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	der, _ := io.ReadAll(io.LimitReader(resp.Body, 10<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	pemOf := func(typ string, ders ...[]byte) []byte {
		var b bytes.Buffer
		for _, d := range ders {
			pem.Encode(&b, &pem.Block{Type: typ, Bytes: d})
		}
		return b.Bytes()
	}
	files := map[string][]byte{"cert.pem": pemOf("CERTIFICATE", cert.der), "crl.pem": pemOf("X509 CRL", der),
		"untrusted.pem": pemOf("CERTIFICATE", cert.chain[1:]...)}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	root := r.spec.Path(filepath.Join(r.spec.PKI.Dir, "public", "root.cert.pem"))
	out, err := exec.CommandContext(ctx, "openssl", "verify", "-crl_check", "-CAfile", root, "-untrusted", filepath.Join(dir, "untrusted.pem"),
		"-CRLfile", filepath.Join(dir, "crl.pem"), filepath.Join(dir, "cert.pem")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("openssl verify -crl_check: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// revocationCerts are the faulted site's certificates a revocation drill
// uses: one revoked through the journal, one through ACME, one left valid
// for the CRL checks.
type revocationCerts struct {
	journaled, acme, valid *siteCert
	dir                    string
}

// prepareRevocation issues them at the faulted site before the fault.
func (r *Runner) prepareRevocation(ctx context.Context, s *runState, dir string) error {
	sc := r.Scenario
	if sc.Revocation.At.Duration <= 0 && !sc.Pass.CRLsAvailable {
		return nil
	}
	rc := &revocationCerts{dir: dir}
	var err error
	if rc.valid, err = r.issueAtSite(ctx, s.w, s.target, "crl-check"); err != nil {
		return err
	}
	if err := r.waitMirrored(ctx, s.target, rc.valid); err != nil {
		return err
	}
	if sc.Revocation.At.Duration > 0 {
		if rc.journaled, err = r.issueAtSite(ctx, s.w, s.target, "revoke-journaled"); err != nil {
			return err
		}
		if rc.acme, err = r.issueAtSite(ctx, s.w, s.target, "revoke-acme"); err != nil {
			return err
		}
	}
	s.revocation = rc
	return nil
}

// revokeDuringFault revokes at its time: through the controller's journal
// and through ACME (retried every 5 s; answers recorded).
func (r *Runner) revokeDuringFault(ctx context.Context, s *runState, start time.Time) {
	rc, rep := s.revocation, &s.rep.Revocation
	sleepCtx(ctx, time.Until(start.Add(r.Scenario.Revocation.At.Duration)))
	if ctx.Err() != nil {
		return
	}
	e, err := r.revokeJournaled(ctx, rc.journaled)
	r.mu.Lock()
	if err != nil {
		rep.Errors = append(rep.Errors, "cairn revoke: "+err.Error())
	} else {
		rep.Journaled, rep.JournalState = e.Serial, e.State()
	}
	r.mu.Unlock()
	r.event("revocation-journaled", s.target, e.Serial+" "+e.State())
	for ctx.Err() == nil {
		if r.acmeRevokeOnce(ctx, s) {
			return
		}
		sleepCtx(ctx, 5*time.Second)
	}
}

// acmeRevokeOnce tries the ACME revocation once and reports success.
func (r *Runner) acmeRevokeOnce(ctx context.Context, s *runState) bool {
	status, body, err := r.revokeByACME(ctx, s.w, s.revocation.acme)
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &s.rep.Revocation
	switch {
	case err != nil:
		rep.ACMEDownAnswers = append(rep.ACMEDownAnswers, err.Error())
	case status == http.StatusOK:
		now := time.Now()
		rep.ACMERevokedAt = &now
		return true
	default:
		rep.ACMEDownAnswers = append(rep.ACMEDownAnswers, fmt.Sprintf("HTTP %d %.200s", status, body))
	}
	return false
}

// crlPatience is how long a relying party's check keeps trying to get the
// CRL (a CRL fetch that has not got it by then fails the check): long
// enough for the controller to withdraw a front that black-holes
// connections from the CRL names (docs/revocation.md), far shorter than
// any relying party's cache.
const crlPatience = 30 * time.Second

// checkCRLsDuringFault starts a relying party's check every 5 s.
func (r *Runner) checkCRLsDuringFault(ctx context.Context, s *runState) {
	for ctx.Err() == nil {
		if !s.firstFault.IsZero() {
			start, tries := time.Now(), 0
			var err error
			for {
				tries++
				if err = r.checkCRL(ctx, s.revocation.valid, s.revocation.dir); err == nil || time.Since(start) >= crlPatience {
					break
				}
				if sleepCtx(ctx, 2*time.Second); ctx.Err() != nil {
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
			took := time.Since(start)
			r.mu.Lock()
			rv := &s.rep.Revocation
			rv.CRLChecks++
			if err != nil {
				rv.CRLFailures = append(rv.CRLFailures, fmt.Sprintf("%s no CRL after %d tries in %.0f s: %v", start.UTC().Format(time.TimeOnly), tries, took.Seconds(), err))
			} else {
				rv.CRLSlowestMS = max(rv.CRLSlowestMS, float64(took.Milliseconds()))
				if tries > 1 {
					rv.CRLRetried++
				}
			}
			r.mu.Unlock()
		}
		sleepCtx(ctx, 5*time.Second)
	}
}

// finishRevocation, after the restore: the ACME revocation goes through
// (retried up to a minute), and the journaled serial reaches the faulted
// site's CRL (waited up to two minutes).
func (r *Runner) finishRevocation(ctx context.Context, s *runState) {
	if s.revocation == nil || s.revocation.journaled == nil {
		return
	}
	rep := &s.rep.Revocation
	rep.RestoredAt = time.Now()
	r.mu.Lock()
	for _, e := range r.events {
		if e.Kind == "fault-restored" && e.Site == s.target && e.At.After(s.firstFault) && e.At.Before(rep.RestoredAt) {
			rep.RestoredAt = e.At // the first restore of the faulted site
		}
	}
	r.mu.Unlock()
	for deadline := time.Now().Add(time.Minute); rep.ACMERevokedAt == nil && time.Now().Before(deadline) && ctx.Err() == nil; {
		if !r.acmeRevokeOnce(ctx, s) {
			sleepCtx(ctx, 5*time.Second)
		}
	}
	r.realClientsRevoke(ctx, s)
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; sleepCtx(ctx, 2*time.Second) {
		if e, ok := r.journalEntry(ctx, rep.Journaled); ok {
			rep.JournalState = e.State()
			if !e.InCRLAt.IsZero() {
				t := e.InCRLAt
				rep.InCRLAt = &t
				return
			}
		}
	}
}

// realClientsRevoke: every real client that can revoke (certbot, lego)
// and got its first certificate from the faulted site revokes it now,
// through the ACME name, with its account, as its user would.
func (r *Runner) realClientsRevoke(ctx context.Context, s *runState) {
	for _, rc := range s.ready {
		if len(rc.revoke) == 0 || rc.firstSite != s.target {
			continue
		}
		run := rc.run(ctx, "revoke", 2*time.Minute)
		r.mu.Lock()
		s.rep.Revocation.RealClients = append(s.rep.Revocation.RealClients, run)
		r.mu.Unlock()
		r.event("real-client-revoked", run.Site, fmt.Sprintf("%s ok=%v %s", rc.name, run.OK, run.Detail))
	}
}

// judgeRevocation checks pass.revoked and pass.crlsAvailable.
func (rep *Report) judgeRevocation(sc *Scenario, fail func(string, ...any)) {
	rv := &rep.Revocation
	if sc.Pass.CRLsAvailable {
		switch {
		case rv.CRLChecks == 0:
			fail("no CRL check ran while the faults were in place")
		case len(rv.CRLFailures) > 0:
			fail("%d of %d relying-party CRL checks failed while the site was down: %s", len(rv.CRLFailures), rv.CRLChecks, rv.CRLFailures[0])
		}
	}
	if !sc.Pass.Revoked {
		return
	}
	for _, e := range rv.Errors {
		fail("%s", e)
	}
	if rv.InCRLAt == nil {
		fail("the serial revoked with cairn revoke (%s) never reached %s's published CRL (journal: %s)", rv.Journaled, rep.FaultedSite, rv.JournalState)
	} else {
		for _, e := range rep.Events {
			if e.Kind == "dns-committed" && e.Site == rep.FaultedSite && !e.At.Before(rep.FaultAt) && e.At.Before(*rv.InCRLAt) {
				rv.MovedBackFirst = true
				fail("the name moved back to %s at %s, before the revoked serial was in its CRL (%s)", rep.FaultedSite, e.At.UTC().Format(time.TimeOnly), rv.InCRLAt.UTC().Format(time.TimeOnly))
			}
		}
	}
	if rv.ACMERevokedAt == nil {
		fail("the revocation through ACME never went through (answers: %s)", strings.Join(rv.ACMEDownAnswers, "; "))
	}
	for _, run := range rv.RealClients {
		if !run.OK {
			fail("%s could not revoke its certificate from %s through the ACME name (at %s): %s %s", run.Client, rep.FaultedSite, run.Site, run.Problem, run.Detail)
		}
	}
	for _, a := range rv.ACMEDownAnswers {
		if strings.Contains(a, "HTTP 404") || strings.Contains(a, "unrecognized issuer") || strings.HasPrefix(a, "HTTP 200") {
			fail("a revocation through ACME while the site was down was answered %s", a)
		}
	}
}

func (rv RevocationReport) markdown(b *strings.Builder, faultAt time.Time) {
	if rv.CRLChecks == 0 && rv.Journaled == "" && len(rv.Errors) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## Revocation and CRLs\n\n| check | result |\n|---|---|\n")
	if rv.CRLChecks > 0 {
		fmt.Fprintf(b, "| relying-party `openssl verify -crl_check` while the faults were in place (CRL fetched through its URL, 2 s to connect, tried again every 2 s for up to %s) | %d of %d passed; slowest %.1f s; %d needed more than one try |\n",
			crlPatience, rv.CRLChecks-len(rv.CRLFailures), rv.CRLChecks, rv.CRLSlowestMS/1000, rv.CRLRetried)
	}
	if rv.Journaled != "" {
		inCRL := "never"
		if rv.InCRLAt != nil {
			inCRL = fmt.Sprintf("%.1f s after the restore", rv.InCRLAt.Sub(rv.RestoredAt).Seconds())
			if rv.InCRLAt.Before(rv.RestoredAt) {
				inCRL = "before the restore finished"
			}
		}
		fmt.Fprintf(b, "| `cairn revoke` (journaled) %s: in the site's published CRL | %s |\n| the name moved back before that | %v |\n", rv.Journaled, inCRL, rv.MovedBackFirst)
		acme := "never"
		if rv.ACMERevokedAt != nil {
			acme = fmt.Sprintf("%.1f s after the fault", rv.ACMERevokedAt.Sub(faultAt).Seconds())
		}
		fmt.Fprintf(b, "| revocation through ACME went through | %s |\n", acme)
	}
	for _, run := range rv.RealClients {
		fmt.Fprintf(b, "| %s revokes its certificate from the faulted site through the ACME name (at %s) | %s in %.1f s %s |\n",
			run.Client, run.Site, map[bool]string{true: "revoked", false: "FAILED"}[run.OK], run.End.Sub(run.Start).Seconds(), run.Detail)
	}
	for _, a := range rv.ACMEDownAnswers {
		fmt.Fprintf(b, "\n* ACME answer while down: %s", a)
	}
	for _, f := range rv.CRLFailures {
		fmt.Fprintf(b, "\n* CRL check failed: %s", f)
	}
	for _, e := range rv.Errors {
		fmt.Fprintf(b, "\n* error: %s", e)
	}
	fmt.Fprintln(b)
}

// waitMirrored waits until every other site's CRL front serves a copy of
// the CRL shard cert names (the fronts copy every 30 s), asked over HTTP
// as a relying party would (the lab and provisioned hosts alike): the
// drill then starts from what a cluster that has run for a while has.
func (r *Runner) waitMirrored(ctx context.Context, target string, cert *siteCert) error {
	c, err := x509.ParseCertificate(cert.der)
	if err != nil || len(c.CRLDistributionPoints) == 0 {
		return fmt.Errorf("certificate without a CRL URL")
	}
	u := c.CRLDistributionPoints[0]
	var fronts []string
	for i, s := range r.spec.Sites {
		if p, err := site.NewPlan(r.spec, i); err == nil && s.Name != target && !p.ExternalCRLStore() {
			fronts = append(fronts, site.Addr(p.CRL, site.PortCRLHTTP))
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		missing := ""
		for _, f := range fronts {
			if !servesCRL(ctx, f, u) {
				missing = f
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the CRL front at %s serves no copy of %s's %s after 90 s: are the CRL fronts mirroring?", missing, target, u)
		}
		r.logf("waiting for the other sites' CRL fronts to copy %s", u)
		sleepCtx(ctx, 5*time.Second)
	}
}

// servesCRL says whether the CRL front at addr answers 200 for CRL URL u.
func servesCRL(ctx context.Context, addr, u string) bool {
	client := dialingClient(addr, 10*time.Second, nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// dialingClient is an HTTP client that connects to addr whatever the
// URL's host (one site's front, the name's address), one connection per
// request, each request bounded by timeout.
func dialingClient(addr string, timeout time.Duration, tlsConf *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 3 * time.Second}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConf,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}}}
}
