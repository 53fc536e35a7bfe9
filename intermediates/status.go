package intermediates

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/letsencrypt/boulder/issuance"
)

// Certificate roles.
const (
	RoleRoot           = "root"
	RoleIntermediate   = "intermediate"
	RoleInfrastructure = "infrastructure"
)

// ExpiryWarningDays is how close to notAfter a certificate gets a warning.
const ExpiryWarningDays = 90

// Status is the state of every certificate of the cluster PKI.
type Status struct {
	RootCRL           string        `json:"rootCRL"`
	RootCRLNumber     int64         `json:"rootCRLNumber"`
	RootCRLNextUpdate time.Time     `json:"rootCRLNextUpdate"`
	Certificates      []Certificate `json:"certificates"`
	Warnings          []string      `json:"warnings"`
}

// Certificate is one certificate of the cluster PKI.
type Certificate struct {
	Role       string    `json:"role"`
	Site       string    `json:"site,omitempty"`
	Generation int       `json:"generation,omitempty"`
	Current    bool      `json:"current"`
	KeyType    string    `json:"keyType"`
	KeyLabel   string    `json:"keyLabel"`
	Token      string    `json:"token"`
	Subject    string    `json:"subject"`
	Serial     string    `json:"serial"`
	NameID     int64     `json:"issuerNameID"`
	CertFile   string    `json:"certFile"`
	NotBefore  time.Time `json:"notBefore"`
	NotAfter   time.Time `json:"notAfter"`
	DaysLeft   int       `json:"daysLeft"`
	Revoked    bool      `json:"revoked"`
	ChainValid bool      `json:"chainValid"`
	ChainError string    `json:"chainError,omitempty"`
	// PermittedDNS: the certificate's name constraints (policy.allowedNames
	// when it was made).
	PermittedDNS []string `json:"permittedDNS,omitempty"`
}

// Status reads every certificate, verifies each chain against the root and
// checks each against the published root CRL. A missing certificate is a
// warning, not an error, so status works on a half-initialised PKI.
func (p *PKI) Status() (*Status, error) {
	st := &Status{RootCRL: p.rootCRL(), Certificates: []Certificate{}, Warnings: []string{}}
	warn := func(format string, args ...any) { st.Warnings = append(st.Warnings, fmt.Sprintf(format, args...)) }
	now := p.now()

	root, err := ReadCert(p.rootCert())
	if err != nil {
		warn("no root certificate (%v): run `cairn pki init`", err)
		return st, nil
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	crl, crlErr := p.readRootCRL(root)
	if crlErr != nil {
		warn("root CRL: %v", crlErr)
	} else {
		st.RootCRLNumber = crl.Number.Int64()
		st.RootCRLNextUpdate = crl.NextUpdate
		if d := crl.NextUpdate.Sub(now); d < 30*24*time.Hour {
			warn("root CRL expires %s (in %d days): sign a new one (cairn pki revoke-site re-signs it)", crl.NextUpdate.Format(time.DateOnly), int(d.Hours()/24))
		}
	}
	revoked := map[string]bool{}
	if crl != nil {
		for _, e := range crl.RevokedCertificateEntries {
			revoked[e.SerialNumber.String()] = true
		}
	}

	for _, e := range p.inventory() {
		cert, err := ReadCert(e.path)
		if err != nil {
			warn("%s %s missing (%s): run `cairn pki init`", e.role, e.label, p.rel(e.path))
			continue
		}
		c := Certificate{
			Role: e.role, Site: e.site, Generation: e.gen, KeyLabel: e.label, Token: e.token,
			KeyType: keyType(cert), Subject: cert.Subject.String(), Serial: fmt.Sprintf("%x", cert.SerialNumber),
			CertFile: e.path, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
			DaysLeft: int(math.Floor(cert.NotAfter.Sub(now).Hours() / 24)),
			Revoked:  revoked[cert.SerialNumber.String()],
			Current:  e.role != RoleIntermediate || e.gen == p.generation(e.site),
		}
		if ic, err := issuance.NewCertificate(cert); err == nil {
			c.NameID = int64(ic.NameID())
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			c.ChainError = err.Error()
			warn("%s %s does not chain to the root: %v", e.role, e.label, err)
		} else {
			c.ChainValid = true
		}
		c.PermittedDNS = cert.PermittedDNSDomains
		if e.role == RoleIntermediate && c.Current && !c.Revoked && !slices.Equal(cert.PermittedDNSDomains, p.permittedDNS()) {
			warn("%s %s is constrained to %v but policy.allowedNames is %v: run `cairn pki rotate %s` (then re-render the site)", e.role, e.label, cert.PermittedDNSDomains, p.permittedDNS(), e.site)
		}
		if c.DaysLeft < ExpiryWarningDays {
			warn("%s %s (%s) expires %s, in %d days", e.role, e.label, c.Subject, cert.NotAfter.Format(time.DateOnly), c.DaysLeft)
		}
		st.Certificates = append(st.Certificates, c)
	}
	for _, s := range p.spec.Sites {
		usable := 0
		for _, c := range st.Certificates {
			if c.Site == s.Name && c.Current && !c.Revoked && c.ChainValid {
				usable++
			}
		}
		if usable < 2 {
			warn("site %s has no valid ECDSA+RSA intermediate pair: run `cairn pki rotate %s`", s.Name, s.Name)
		}
	}
	return st, nil
}

func (p *PKI) readRootCRL(root *x509.Certificate) (*x509.RevocationList, error) {
	b, err := os.ReadFile(p.rootCRL())
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM CRL", p.rootCRL())
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := crl.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%s is not signed by the root: %w", p.rootCRL(), err)
	}
	return crl, nil
}

func keyType(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return "ecdsa-p256"
		case 384:
			return "ecdsa-p384"
		}
		return fmt.Sprintf("ecdsa-%d", k.Curve.Params().BitSize)
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return "unknown"
}
