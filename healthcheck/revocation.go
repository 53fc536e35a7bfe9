package healthcheck

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/crypto/acme"
)

// ProbeRevocation issues a certificate, revokes it, and waits until the
// serial appears in the CRL at the certificate's distribution point. The
// wait is bounded by the context; Boulder publishes CRLs every
// crl-updater period, so run this probe rarely and with a long deadline.
func ProbeRevocation(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindRevocation)
	leaf, h := issueAndVerify(ctx, t, r)
	if h != nil {
		defer h.c.Close()
	}
	if leaf == nil {
		return r.done()
	}
	if len(leaf.CRLDistributionPoints) == 0 {
		r.step("revoke", probeError{ClassProtocol, "certificate names no CRL distribution point"})
		return r.done()
	}
	revokedAt := time.Now()
	if r.step("revoke", h.c.Revoke(ctx, h.der, acme.CRLReasonCessationOfOperation)) != nil {
		return r.done()
	}
	src := CRLSource{Issuer: nil}
	for _, s := range t.CRLs {
		if s.Issuer != nil && string(s.Issuer.RawSubject) == string(leaf.RawIssuer) {
			src = s
		}
	}
	if src.Issuer == nil {
		r.step("crl-published", probeError{ClassMismatch, fmt.Sprintf("no known issuer %q to check the CRL signature", leaf.Issuer.CommonName)})
		return r.done()
	}
	url := leaf.CRLDistributionPoints[0]
	for {
		crl, err := fetchCRL(ctx, t, src, url)
		if err == nil && crlHas(crl, leaf.SerialNumber) {
			delay := time.Since(revokedAt)
			r.step("crl-published", nil)
			r.fact("revocationDelaySeconds", strconv.FormatFloat(delay.Seconds(), 'f', 1, 64))
			return r.done()
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("serial %x not in %s before the deadline: %w", leaf.SerialNumber, url, ctx.Err())
			}
			r.step("crl-published", err)
			return r.done()
		case <-time.After(2 * time.Second):
		}
	}
}
