package intermediates

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// newTestPKI writes a lab spec for sites into a temp dir and opens it.
func newTestPKI(t *testing.T, sites []string, edit func(*cluster.Spec)) (*PKI, *cluster.Spec) {
	t.Helper()
	p, spec, _ := newRecordedPKI(t, sites, edit)
	return p, spec
}

// newRecordedPKI is newTestPKI that records every command the PKI starts;
// when the test ends, no PIN or SO PIN below the spec's directory may
// be in any of their command lines or environments.
func newRecordedPKI(t *testing.T, sites []string, edit func(*cluster.Spec)) (*PKI, *cluster.Spec, *commands) {
	t.Helper()
	testenv.Integration(t, "softhsm2-util", "openssl")
	bins := testenv.Boulder(t, "ceremony")
	spec := cluster.Default(sites)
	spec.Dir = t.TempDir()
	if edit != nil {
		edit(spec)
	}
	if errs := spec.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	rec := &commands{}
	p, unlock, err := Open(spec, Options{Ceremony: bins["ceremony"], Signer: testExecutable(t), Run: rec.run})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	t.Cleanup(func() {
		for file, pin := range secretsIn(t, spec.Dir) {
			if where := rec.find(pin); where != "" {
				t.Errorf("the secret in %s is in %s", file, where)
			}
		}
	})
	return p, spec, rec
}

// tokensIn lists the labels of the initialised tokens in tok's SoftHSM
// directory, through `cairn pki token` (this test binary).
func tokensIn(t *testing.T, p *PKI, tok token) []string {
	t.Helper()
	out, err := p.inChild(context.Background(), tok, "token", TokenRequest{Module: tok.module, Label: tok.label})
	if err != nil {
		t.Fatal(err)
	}
	var r TokenReply
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r.Tokens
}

// secretsIn reads every PIN and SO PIN file below dir.
func secretsIn(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".pin") || strings.HasSuffix(path, ".so-pin")) {
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshot hashes every file below dir except ceremony records and state.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(path, "/ceremonies/") || strings.HasSuffix(path, ".lock") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[path] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func opensslVerify(t *testing.T, p *PKI, cert string) error {
	t.Helper()
	out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", p.RootCertFile(), "-CRLfile", p.rootCRL(), cert).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s", strings.TrimSpace(string(out)))
	}
	return nil
}

func TestInitRevokeRotate(t *testing.T) {
	p, spec, rec := newRecordedPKI(t, []string{"a", "b", "c"}, nil)
	ctx := context.Background()
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	root, _ := ReadCert(p.RootCertFile())
	pool := x509.NewCertPool()
	pool.AddCert(root)
	count := map[string]int{}
	for _, c := range st.Certificates {
		count[c.Role]++
		cert, _ := ReadCert(c.CertFile)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not chain: %v", c.CertFile, err)
		}
		if c.Role == RoleIntermediate {
			if !strings.Contains(c.Subject, " "+c.Site+" ") || len(cert.PolicyIdentifiers) != 1 || cert.PolicyIdentifiers[0].String() != "2.23.140.1.2.1" {
				t.Errorf("%s: subject %q, policies %v", c.CertFile, c.Subject, cert.PolicyIdentifiers)
			}
			if len(cert.CRLDistributionPoints) != 1 || cert.CRLDistributionPoints[0] != spec.PKI.BaseURL+"root.crl" {
				t.Errorf("%s: CRL DP %v", c.CertFile, cert.CRLDistributionPoints)
			}
			if err := opensslVerify(t, p, c.CertFile); err != nil {
				t.Errorf("openssl: %v", err)
			}
		}
	}
	if count[RoleRoot] != 1 || count[RoleIntermediate] != 6 || count[RoleInfrastructure] != 1 || len(st.Warnings) != 0 {
		t.Fatalf("status: %v, warnings %v", count, st.Warnings)
	}

	// Again: nothing changes, no key is replaced.
	before := snapshot(t, p.dir)
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, p.dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("second Init changed files")
	}

	// A site's token directory holds its own token only.
	for _, s := range spec.Sites {
		if got := tokensIn(t, p, p.siteToken(s)); len(got) != 1 || got[0] != s.HSM.Label {
			t.Errorf("site %s tokens: %q", s.Name, got)
		}
	}

	// The PKI made a PIN and an SO PIN for every token and started both
	// kinds of children; newRecordedPKI checks, when the test ends, that
	// none of those PINs was on their command lines.
	if pins, want := secretsIn(t, spec.Dir), 2*(len(spec.Sites)+2); len(pins) != want {
		t.Errorf("%d PIN and SO PIN files, want %d: %v", len(pins), want, pins)
	}
	for _, prog := range []string{p.opts.Ceremony, p.opts.Signer} {
		if rec.count(prog) == 0 {
			t.Errorf("no %s command recorded", prog)
		}
	}

	n, err := p.RevokeSite(ctx, "b", "keyCompromise")
	if err != nil || n != 2 {
		t.Fatalf("RevokeSite = %d, %v", n, err)
	}
	for _, s := range spec.Sites {
		for _, k := range p.siteKeys(s, 1) {
			err := opensslVerify(t, p, k.cert())
			if s.Name == "b" && (err == nil || !strings.Contains(err.Error(), "certificate revoked")) {
				t.Errorf("%s verifies after revoke-site b: %v", k.label, err)
			}
			if s.Name != "b" && err != nil {
				t.Errorf("%s fails after revoke-site b: %v", k.label, err)
			}
		}
	}
	if n, err := p.RevokeSite(ctx, "b", ""); n != 0 || err != nil {
		t.Errorf("second RevokeSite = %d, %v", n, err)
	}
	if _, err := p.RevokeSite(ctx, "a", "privilegeWithdrawn"); err == nil {
		t.Error("reason not allowed for CA certificates accepted")
	}

	gen, err := p.Rotate(ctx, "b")
	if err != nil || gen != 2 {
		t.Fatalf("Rotate = %d, %v", gen, err)
	}
	st, _ = p.Status()
	var current, old int
	for _, c := range st.Certificates {
		if c.Site != "b" {
			continue
		}
		if c.Current {
			current++
			if c.Revoked || !strings.HasSuffix(strings.Split(c.Subject, ",")[0], "2") {
				t.Errorf("new generation: %+v", c)
			}
			if err := opensslVerify(t, p, c.CertFile); err != nil {
				t.Errorf("rotated %s: %v", c.KeyLabel, err)
			}
		} else if c.Revoked {
			old++
		}
	}
	if current != 2 || old != 2 {
		t.Errorf("site b: %d current, %d old revoked", current, old)
	}
}

func TestPINFileReadableByOthersIsRefused(t *testing.T) {
	p, spec := newTestPKI(t, []string{"a"}, nil)
	ctx := context.Background()
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	pin := spec.Path(spec.Sites[0].HSM.PINFile)
	if err := os.Chmod(pin, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Rotate(ctx, "a"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Rotate with a world-readable PIN: %v", err)
	}
}

func TestFailedCeremonyLeavesNothingHalfWritten(t *testing.T) {
	p, _ := newTestPKI(t, []string{"a"}, nil)
	p.opts.Ceremony = "/bin/false"
	if err := p.Init(context.Background()); err == nil {
		t.Fatal("Init succeeded with a failing ceremony")
	}
	err := filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".staging") || strings.HasSuffix(path, ".pem") {
			t.Errorf("left behind: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The pkcs11 backend finds existing tokens by label through the module
// itself; SoftHSM stands in for a real HSM here.
func TestPKCS11BackendWithExistingTokens(t *testing.T) {
	testenv.Integration(t, "softhsm2-util")
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	os.MkdirAll(filepath.Join(dir, "tokens"), 0o700)
	os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
	t.Setenv("SOFTHSM2_CONF", conf)
	for _, label := range []string{"hsm-root", "hsm-infra", "hsm-x"} {
		pin := filepath.Join(dir, label+".pin")
		os.WriteFile(pin, []byte("1234"+label+"\n"), 0o600)
		if _, err := EnsureToken(TokenRequest{Module: cluster.DefaultSoftHSMLib, Label: label, PINFile: pin, SOPINFile: filepath.Join(dir, label+".so-pin")}); err != nil {
			t.Fatalf("init token: %v", err)
		}
	}
	p, _ := newTestPKI(t, []string{"x"}, func(s *cluster.Spec) {
		s.PKI.HSM = cluster.HSM{Backend: cluster.BackendPKCS11, Module: cluster.DefaultSoftHSMLib,
			Root:           cluster.Token{Label: "hsm-root", PINFile: filepath.Join(dir, "hsm-root.pin")},
			Infrastructure: cluster.Token{Label: "hsm-infra", PINFile: filepath.Join(dir, "hsm-infra.pin")}}
		s.Sites[0].HSM = cluster.Token{Label: "hsm-x", PINFile: filepath.Join(dir, "hsm-x.pin")}
	})
	if err := p.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status()
	if err != nil || len(st.Certificates) != 4 || len(st.Warnings) != 0 {
		t.Fatalf("status %+v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(p.rootDir(), "softhsm")); err == nil {
		t.Error("pkcs11 backend created a SoftHSM directory")
	}

	p.spec.Sites[0].HSM.Label = "no-such-token"
	p.state.Generations["x"] = 0
	if _, err := p.Rotate(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), `no token labelled "no-such-token"`) {
		t.Fatalf("missing token: %v", err)
	}
}

// With policy.allowedNames every site intermediate carries critical name
// constraints (the zone permitted, every IP excluded), signed by the root
// in its token; a certificate signed directly with a site's HSM key for a
// name outside them, or for an IP address, fails openssl verify with a
// name-constraints error, one inside passes. The infrastructure
// intermediate stays unconstrained. A changed policy is a status warning
// until the site is rotated, and rotation constrains the new generation.
func TestNameConstrainedIntermediates(t *testing.T) {
	p, spec := newTestPKI(t, []string{"a"}, func(s *cluster.Spec) { s.Policy.AllowedNames = []string{s.ACME.Zone} })
	ctx := context.Background()
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status()
	if err != nil || len(st.Warnings) != 0 {
		t.Fatalf("status: %v %v", err, st.Warnings)
	}
	ncOID := asn1.ObjectIdentifier{2, 5, 29, 30}
	for _, c := range st.Certificates {
		cert, _ := ReadCert(c.CertFile)
		critical := slices.ContainsFunc(cert.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(ncOID) && e.Critical })
		switch c.Role {
		case RoleIntermediate:
			if !critical || !slices.Equal(cert.PermittedDNSDomains, spec.Policy.AllowedNames) || len(cert.ExcludedIPRanges) != 2 ||
				!cert.MaxPathLenZero || len(cert.ExtKeyUsage) != 1 || len(cert.Policies) != 1 || cert.Subject.Organization[0] != spec.PKI.Organization {
				t.Errorf("%s: constraints %v (critical %v), excluded IPs %v, profile %+v", c.KeyLabel, cert.PermittedDNSDomains, critical, cert.ExcludedIPRanges, cert.Subject)
			}
			if err := opensslVerify(t, p, c.CertFile); err != nil {
				t.Errorf("openssl: %v", err)
			}
		case RoleInfrastructure:
			if critical || len(cert.PermittedDNSDomains) != 0 {
				t.Errorf("the infrastructure intermediate is constrained")
			}
		}
	}

	// Leaves signed with site a's ECDSA key, in its token.
	k := p.siteKeys(spec.Sites[0], 1)[0]
	issuer, _ := ReadCert(k.cert())
	slot, pin, err := p.open(ctx, k.tok)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(name string, dns []string, ips []string) string {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, _ := x509.MarshalPKIXPublicKey(key.Public())
		der, err := p.signInChild(ctx, k.tok, SignRequest{Module: k.tok.module, Slot: slot, PIN: pin, Label: k.label, Issuer: issuer.Raw, Pub: pub,
			Serial: "1234" + fmt.Sprint(len(name)), CommonName: dns[0], DNSNames: dns, IPs: ips, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".pem")
		os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
		return path
	}
	verify := func(path string) error {
		out, err := exec.Command("openssl", "verify", "-CAfile", p.RootCertFile(), "-untrusted", k.cert(), path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s", strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := verify(leaf("inside", []string{"web." + spec.ACME.Zone}, nil)); err != nil {
		t.Errorf("a name inside the constraints: %v", err)
	}
	for name, sans := range map[string][]string{"outside": {"www.example.com"}, "mixed": {"web." + spec.ACME.Zone, "www.example.com"}} {
		if err := verify(leaf(name, sans, nil)); err == nil || !strings.Contains(err.Error(), "subtree violation") {
			t.Errorf("%s %v: %v, want a name-constraints error", name, sans, err)
		}
	}
	if err := verify(leaf("ip", []string{"web." + spec.ACME.Zone}, []string{"10.1.2.3"})); err == nil || !strings.Contains(err.Error(), "subtree violation") {
		t.Errorf("an IP address SAN: %v, want a name-constraints error", err)
	}

	// The policy changes: a warning until the site is rotated.
	spec.Policy.AllowedNames = []string{"home.arpa"}
	if st, _ := p.Status(); !slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, "cairn pki rotate a") }) {
		t.Errorf("no warning after the policy changed: %v", st.Warnings)
	}
	if _, err := p.Rotate(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if st, _ := p.Status(); len(st.Warnings) != 0 {
		t.Errorf("after rotation: %v", st.Warnings)
	}
	for _, k := range p.siteKeys(spec.Sites[0], 2) {
		if c, _ := ReadCert(k.cert()); !slices.Equal(c.PermittedDNSDomains, []string{"home.arpa"}) {
			t.Errorf("rotated %s constrained to %v", k.label, c.PermittedDNSDomains)
		}
	}
}
