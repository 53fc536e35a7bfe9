package intermediates

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/letsencrypt/boulder/issuance"
	"github.com/letsencrypt/boulder/pkcs11helpers"
	"github.com/miekg/pkcs11"

	"github.com/cairn-pki/cairn/cluster"
)

// SiteIssuer is one of a site's intermediates as a site bundle needs it.
type SiteIssuer struct {
	Label      string // key label in the site's token, e.g. "a-e1"
	KeyType    string
	Generation int
	CertFile   string
	NameID     int64
	Current    bool // issues new certificates
	Revoked    bool // listed in the root CRL
	NotAfter   time.Time
}

// SiteIssuers lists the site's intermediates that exist and are not revoked,
// current generation first. Older generations still sign CRLs for what they
// issued.
func (p *PKI) SiteIssuers(site string) ([]SiteIssuer, error) {
	s, ok := p.spec.SiteByName(site)
	if !ok {
		return nil, fmt.Errorf("no site %q in the spec", site)
	}
	cur := p.generation(site)
	var out []SiteIssuer
	for g := cur; g >= 1; g-- {
		for _, k := range p.siteKeys(*s, g) {
			if p.isRevoked(p.rel(k.cert())) {
				continue
			}
			cert, err := ReadCert(k.cert())
			if err != nil {
				if g == cur {
					return nil, fmt.Errorf("site %s: %w (run `cairn pki init`)", site, err)
				}
				continue
			}
			ic, err := issuance.NewCertificate(cert)
			if err != nil {
				return nil, err
			}
			out = append(out, SiteIssuer{Label: k.label, KeyType: k.keyType, Generation: g, CertFile: k.cert(),
				NameID: int64(ic.NameID()), Current: g == cur, NotAfter: cert.NotAfter})
		}
	}
	if len(out) < 2 || !out[0].Current || !out[1].Current {
		return nil, fmt.Errorf("site %s has no valid ECDSA+RSA intermediates of generation %d: run `cairn pki rotate %s`", site, cur, site)
	}
	return out, nil
}

// HSMToken describes the PKCS#11 token of a site for its CA.
type HSMToken struct {
	Module  string
	Label   string
	PINFile string
	// SoftHSMTokenDir is the SoftHSM token directory (softhsm backend only).
	SoftHSMTokenDir string
}

// SiteToken returns the token holding the site's issuing keys.
func (p *PKI) SiteToken(site string) (HSMToken, error) {
	s, ok := p.spec.SiteByName(site)
	if !ok {
		return HSMToken{}, fmt.Errorf("no site %q in the spec", site)
	}
	t := p.siteToken(*s)
	h := HSMToken{Module: t.module, Label: t.label, PINFile: t.pinFile}
	if t.softhsmDir != "" {
		h.SoftHSMTokenDir = t.softhsmDir + "/tokens"
	}
	return h, nil
}

// InfrastructureCert returns the infrastructure intermediate's certificate.
func (p *PKI) InfrastructureCert() (*x509.Certificate, error) { return ReadCert(p.infraKey().cert()) }

// RootCert returns the root certificate.
func (p *PKI) RootCert() (*x509.Certificate, error) { return ReadCert(p.rootCert()) }

// IssueInfrastructureCert has the infrastructure intermediate sign a TLS
// server certificate (e.g. a site's HTTPS certificate for the ACME name)
// for pub, inside the infrastructure token. It returns leaf+intermediate PEM.
func (p *PKI) IssueInfrastructureCert(ctx context.Context, pub crypto.PublicKey, cn string, dnsNames []string, ips []net.IP, validity time.Duration) ([]byte, error) {
	issuer, err := p.InfrastructureCert()
	if err != nil {
		return nil, fmt.Errorf("infrastructure CA: %w (run `cairn pki init`)", err)
	}
	tok := p.infraToken()
	slot, pin, err := p.open(ctx, tok)
	if err != nil {
		return nil, err
	}
	now := p.now()
	notAfter := now.Add(validity)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	// The certificate itself is built by SignRequest.Sign (here or in the
	// signing child).
	req := SignRequest{Module: tok.module, Slot: slot, PIN: pin, Label: p.infraKey().label, Issuer: issuer.Raw,
		Serial: serial.Add(serial, big.NewInt(1)).Text(16), CommonName: cn, DNSNames: dnsNames, NotBefore: now.Add(-time.Hour), NotAfter: notAfter}
	for _, ip := range ips {
		req.IPs = append(req.IPs, ip.String())
	}
	if req.Pub, err = x509.MarshalPKIXPublicKey(pub); err != nil {
		return nil, err
	}
	der, err := p.sign(ctx, tok, req)
	if err != nil {
		return nil, fmt.Errorf("sign with infrastructure key in token %q: %w", tok.label, err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuer.Raw})...), nil
}

// withSigner opens the token in this process for one signing operation and
// closes the module again. A SoftHSM token's configuration must already be
// in this process's environment (signInChild puts it in the child's).
func withSigner(tok token, slot uint, pin, label string, pub crypto.PublicKey, fn func(crypto.Signer) error) error {
	sess, err := pkcs11helpers.Initialize(tok.module, slot, pin)
	if err != nil {
		return err
	}
	if c, ok := sess.Module.(*pkcs11.Ctx); ok {
		defer func() {
			c.Logout(sess.Session)
			c.CloseSession(sess.Session)
			c.Finalize()
			c.Destroy()
		}()
	}
	signer, err := sess.NewSigner(label, pub)
	if err != nil {
		return err
	}
	return fn(signer)
}

// SignRequest is one infrastructure certificate to sign inside a token:
// what `cairn pki sign-infra` reads on its standard input (the PIN never
// appears on a command line).
type SignRequest struct {
	Module     string    `json:"module"`
	Slot       uint      `json:"slot"`
	PIN        string    `json:"pin"`
	Label      string    `json:"label"`
	Issuer     []byte    `json:"issuer"` // DER
	Pub        []byte    `json:"pub"`    // PKIX DER of the subject key
	Serial     string    `json:"serial"` // hex
	CommonName string    `json:"commonName"`
	DNSNames   []string  `json:"dnsNames"`
	IPs        []string  `json:"ips"`
	NotBefore  time.Time `json:"notBefore"`
	NotAfter   time.Time `json:"notAfter"`
	// CA, if set, makes the certificate a name-constrained site
	// intermediate (constrained.go) instead of a server certificate.
	CA *CAProfile `json:"ca,omitempty"`
}

// Sign signs the request's certificate in its token, in this process.
func (req SignRequest) Sign() ([]byte, error) {
	issuer, err := x509.ParseCertificate(req.Issuer)
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(req.Pub)
	if err != nil {
		return nil, err
	}
	serial, ok := new(big.Int).SetString(req.Serial, 16)
	if !ok {
		return nil, fmt.Errorf("serial %q", req.Serial)
	}
	if req.CA != nil {
		return req.signCA(issuer, pub, serial)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: req.CommonName}, NotBefore: req.NotBefore, NotAfter: req.NotAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: req.DNSNames}
	for _, s := range req.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	var der []byte
	err = withSigner(token{module: req.Module}, req.Slot, req.PIN, req.Label, issuer.PublicKey, func(signer crypto.Signer) error {
		der, err = x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer)
		return err
	})
	return der, err
}

// SignFromStdin is `cairn pki sign-infra`: a SignRequest in (JSON), the
// certificate out (DER, base64).
func SignFromStdin(in io.Reader, out io.Writer) error {
	var req SignRequest
	if err := json.NewDecoder(io.LimitReader(in, 1<<20)).Decode(&req); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	der, err := req.Sign()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, base64.StdEncoding.EncodeToString(der))
	return err
}

// sign signs req in tok: in a `cairn pki sign-infra` child for a SoftHSM
// token (its configuration in the child's environment), else here.
func (p *PKI) sign(ctx context.Context, tok token, req SignRequest) ([]byte, error) {
	if tok.softhsmDir != "" {
		return p.signInChild(ctx, tok, req)
	}
	return req.Sign()
}

// signInChild signs in `cairn pki sign-infra`, with the token's SoftHSM
// configuration in the child's environment only.
func (p *PKI) signInChild(ctx context.Context, tok token, req SignRequest) ([]byte, error) {
	out, err := p.inChild(ctx, tok, "sign-infra", req)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(strings.TrimSpace(string(out)))
}

// inChild runs `cairn pki <sub>` (the Signer executable) with req as JSON
// on its standard input, secrets included, and the token's SoftHSM
// configuration in its environment only, and returns its standard output.
// Its command line holds nothing secret.
func (p *PKI) inChild(ctx context.Context, tok token, sub string, req any) ([]byte, error) {
	if p.opts.Signer == "" {
		return nil, fmt.Errorf("a SoftHSM token is used in `cairn pki %s`, which needs the cairn executable (intermediates.Options.Signer)", sub)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, p.opts.Signer, "pki", sub)
	cmd.Env = tok.env()
	cmd.Stdin = bytes.NewReader(b)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := p.run(cmd); err != nil {
		return nil, fmt.Errorf("cairn pki %s: %v: %s", sub, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Spec returns the spec the PKI was opened with.
func (p *PKI) Spec() *cluster.Spec { return p.spec }
