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
	"strings"
	"time"

	"github.com/letsencrypt/boulder/core"
	"github.com/letsencrypt/boulder/linter"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/namescope"
)

// Boulder's ceremony tool has no name-constraints field, so a site
// intermediate that must carry them (policy.allowedNames) is made by cairn
// itself: the same profile the ceremony writes (subject, key usages, EKU
// serverAuth, path length 0, AIA and CRL of the root, the DV policy, a
// 17-byte serial, a SKID as Boulder computes it), plus critical
// NameConstraints, linted by Boulder's linter with a throwaway key before
// the root's key signs it — in the root's token, in a `cairn pki
// sign-infra` child like every other signature of this package. No
// unconstrained certificate for the key is ever signed.

// CAProfile is the intermediate part of a SignRequest.
type CAProfile struct {
	Organization string `json:"organization"`
	Country      string `json:"country"`
	CRLURL       string `json:"crlURL"`
	IssuerURL    string `json:"issuerURL"`
	Policy       string `json:"policy"`
	SigAlg       string `json:"sigAlg"` // as signatureAlgorithm names it
	// PermittedDNS are the DNS subtrees leaves may name; every IP address
	// is excluded (cairn issues for DNS identifiers only).
	PermittedDNS []string `json:"permittedDNS"`
}

var sigAlgs = map[string]x509.SignatureAlgorithm{
	"ECDSAWithSHA256": x509.ECDSAWithSHA256, "ECDSAWithSHA384": x509.ECDSAWithSHA384, "SHA256WithRSA": x509.SHA256WithRSA,
}

// caTemplate is the intermediate certificate the request describes.
func (req SignRequest) caTemplate(pub crypto.PublicKey, serial *big.Int) (*x509.Certificate, error) {
	ca := req.CA
	alg, ok := sigAlgs[ca.SigAlg]
	if !ok {
		return nil, fmt.Errorf("signature algorithm %q", ca.SigAlg)
	}
	skid, err := core.GenerateSKID(pub)
	if err != nil {
		return nil, err
	}
	oid, err := x509.ParseOID(ca.Policy)
	if err != nil {
		return nil, err
	}
	_, v4, _ := net.ParseCIDR("0.0.0.0/0")
	_, v6, _ := net.ParseCIDR("::/0")
	return &x509.Certificate{
		SerialNumber: serial, SignatureAlgorithm: alg,
		Subject:   pkix.Name{CommonName: req.CommonName, Organization: []string{ca.Organization}, Country: []string{ca.Country}},
		NotBefore: req.NotBefore, NotAfter: req.NotAfter,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		SubjectKeyId:          skid,
		CRLDistributionPoints: []string{ca.CRLURL}, IssuingCertificateURL: []string{ca.IssuerURL},
		Policies:                    []x509.OID{oid},
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         ca.PermittedDNS,
		ExcludedIPRanges:            []*net.IPNet{v4, v6},
	}, nil
}

// intermediateSerial is the ceremony's: 0x01 and 128 random bits.
func intermediateSerial() (*big.Int, error) {
	b := make([]byte, 17)
	b[0] = 0x01
	if _, err := rand.Read(b[1:]); err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}

// signCA lints the intermediate with a throwaway key, then signs it with
// the token's key.
func (req SignRequest) signCA(issuer *x509.Certificate, pub crypto.PublicKey, serial *big.Int) ([]byte, error) {
	tmpl, err := req.caTemplate(pub, serial)
	if err != nil {
		return nil, err
	}
	var der []byte
	err = withSigner(token{module: req.Module}, req.Slot, req.PIN, req.Label, issuer.PublicKey, func(signer crypto.Signer) error {
		if _, err := linter.Check(tmpl, pub, issuer, signer, linter.Config{}, intermediateSkipLints); err != nil {
			return fmt.Errorf("lint: %w", err)
		}
		der, err = x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer)
		return err
	})
	return der, err
}

// constrained reports whether site intermediates carry name constraints.
func (p *PKI) constrained() bool { return len(p.spec.Policy.AllowedNames) > 0 }

// permittedDNS are policy.allowedNames as name constraints: "*.x" is "x"
// (a constraint permits a name and everything below it).
func (p *PKI) permittedDNS() []string {
	names, err := namescope.NormalizeAll(p.spec.Policy.AllowedNames)
	if err != nil {
		return p.spec.Policy.AllowedNames // cairn validate refuses such a spec
	}
	return names
}

// signConstrainedIntermediate makes k's certificate with the root's key,
// constrained to policy.allowedNames.
func (p *PKI) signConstrainedIntermediate(ctx context.Context, k issuerKey, holder string) error {
	root := p.rootToken()
	slot, pin, err := p.open(ctx, root)
	if err != nil {
		return err
	}
	rootCert, err := ReadCert(p.rootCert())
	if err != nil {
		return err
	}
	pubPEM, err := os.ReadFile(k.pubKey())
	if err != nil {
		return err
	}
	block, _ := pem.Decode(pubPEM)
	if block == nil {
		return fmt.Errorf("%s: no PEM public key", k.pubKey())
	}
	serial, err := intermediateSerial()
	if err != nil {
		return err
	}
	nb, na := validity(p.now(), p.validityDays(k), rootCert.NotAfter)
	notBefore, _ := time.Parse(ceremonyTime, nb)
	notAfter, _ := time.Parse(ceremonyTime, na)
	req := SignRequest{Module: root.module, Slot: slot, PIN: pin, Label: "root", Issuer: rootCert.Raw, Pub: block.Bytes,
		Serial: serial.Text(16), CommonName: k.cn, NotBefore: notBefore, NotAfter: notAfter,
		CA: &CAProfile{Organization: p.spec.PKI.Organization, Country: p.spec.PKI.Country,
			CRLURL: p.spec.PKI.BaseURL + "root.crl", IssuerURL: p.spec.PKI.BaseURL + "root.der", Policy: domainValidatedPolicy,
			SigAlg: signatureAlgorithm(p.spec.PKI.Root.KeyType), PermittedDNS: p.permittedDNS()}}
	der, err := p.sign(ctx, root, req)
	if err != nil {
		return fmt.Errorf("%s: sign %s with name constraints: %w", holder, k.label, err)
	}
	if err := fsutil.WriteFileAtomic(k.cert(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	p.logf("%s: created intermediate %q constrained to %s (%s, key %q in token %q)", holder, k.cn, strings.Join(p.permittedDNS(), ", "), k.keyType, k.label, k.tok.label)
	return nil
}
