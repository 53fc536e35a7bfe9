package healthcheck

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// ProbeIssuance runs a whole order: new-order, the DNS-01 TXT record
// through RFC 2136, challenge, validation, finalize and download; then it
// verifies the chain, that the issuer is one of the site's own
// intermediates and that the serial carries the site's prefix, and removes
// the TXT record.
func ProbeIssuance(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindIssuance)
	if _, h := issueAndVerify(ctx, t, r); h != nil {
		h.c.Close()
	}
	return r.done()
}

// issueAndVerify records the issuance steps and returns the leaf.
func issueAndVerify(ctx context.Context, t *Target, r *recorder) (*x509.Certificate, *acmeClientHandle) {
	if t.DNS01 == nil || t.ProbeName == "" {
		r.step("config", probeError{ClassProtocol, "issuance needs a DNS-01 updater and a probe name"})
		return nil, nil
	}
	c, err := t.acmeClient()
	if err != nil {
		r.step("config", err)
		return nil, nil
	}
	h := &acmeClientHandle{c: c}
	if _, err := c.ACME().Discover(ctx); r.step("directory", err) != nil {
		return nil, h
	}
	if _, err := c.Register(ctx); r.step("account", err) != nil {
		return nil, h
	}
	name := t.probeName()
	der, _, err := c.IssueSteps(ctx, []string{name}, func(step string, err error) { r.step(step, err) })
	if err != nil {
		return nil, h
	}
	leaf, err := verifyLeaf(t, der, name)
	if r.step("verify", err) != nil {
		return nil, h
	}
	r.fact("serial", fmt.Sprintf("%x", leaf.SerialNumber))
	r.fact("issuer", leaf.Issuer.CommonName)
	r.fact("notAfter", leaf.NotAfter.UTC().Format(time.RFC3339))
	h.der = der[0]
	return leaf, h
}

// acmeClientHandle keeps the client and certificate for a follow-up step.
type acmeClientHandle struct {
	c interface {
		Close()
		Revoke(ctx context.Context, der []byte, reason acme.CRLReasonCode) error
	}
	der []byte
}

// probeName fills the {rand} label, so every run needs a fresh
// authorization (and so exercises DNS and validation) instead of reusing one.
func (t *Target) probeName() string {
	b := make([]byte, 5)
	rand.Read(b)
	return strings.ReplaceAll(t.ProbeName, "{rand}", "p"+hex.EncodeToString(b))
}

func verifyLeaf(t *Target, der [][]byte, name string) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, probeError{ClassProtocol, "no certificate in the response"}
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return nil, probeError{ClassProtocol, "certificate does not parse: " + err.Error()}
	}
	inter := x509.NewCertPool()
	for _, d := range der[1:] {
		if c, err := x509.ParseCertificate(d); err == nil {
			inter.AddCert(c)
		}
	}
	roots := t.IssuingRoots
	if roots == nil {
		roots = t.Roots
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name}); err != nil {
		return nil, err
	}
	if len(t.Issuers) > 0 {
		ok := false
		for _, is := range t.Issuers {
			ok = ok || (bytes.Equal(leaf.RawIssuer, is.RawSubject) && leaf.CheckSignatureFrom(is) == nil)
		}
		if !ok {
			return nil, probeError{ClassMismatch, fmt.Sprintf("issued by %q, which is not one of site %s's intermediates", leaf.Issuer.CommonName, t.Site)}
		}
	}
	if t.SerialPrefix > 0 {
		if b := leaf.SerialNumber.Bytes(); len(b) == 0 || int(b[0]) != t.SerialPrefix {
			return nil, probeError{ClassMismatch, fmt.Sprintf("serial %x does not start with site %s's prefix %02x", leaf.SerialNumber, t.Site, t.SerialPrefix)}
		}
	}
	return leaf, nil
}

// ProblemType shortens an ACME problem URN for labels.
func ProblemType(urn string) string {
	return strings.TrimPrefix(urn, "urn:ietf:params:acme:error:")
}
