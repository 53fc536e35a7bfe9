package intermediates

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"sync"
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
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	var der []byte
	err = withSigner(tok, slot, pin, p.infraKey().label, issuer.PublicKey, func(signer crypto.Signer) error {
		der, err = x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sign with infrastructure key in token %q: %w", tok.label, err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuer.Raw})...), nil
}

var softhsmEnv sync.Mutex

// withSigner opens the token in this process for one signing operation and
// closes the module again. For SoftHSM the token's own configuration is put
// in the environment first, since SoftHSM reads it when the module starts.
func withSigner(tok token, slot uint, pin, label string, pub crypto.PublicKey, fn func(crypto.Signer) error) error {
	// SoftHSM reads its configuration only from the process environment
	// when the module initialises, so this is the one place cairn's
	// library changes the environment: one signing at a time.
	softhsmEnv.Lock()
	defer softhsmEnv.Unlock()
	if tok.softhsmDir != "" {
		old, had := os.LookupEnv("SOFTHSM2_CONF")
		os.Setenv("SOFTHSM2_CONF", tok.softhsmConf())
		defer func() {
			if had {
				os.Setenv("SOFTHSM2_CONF", old)
			} else {
				os.Unsetenv("SOFTHSM2_CONF")
			}
		}()
	}
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

// Spec returns the spec the PKI was opened with.
func (p *PKI) Spec() *cluster.Spec { return p.spec }
