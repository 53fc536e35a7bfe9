package healthcheck

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ProbeCRL fetches every CRL shard of every issuer of the site at the URL
// its certificates name, from the site's own front and from every other
// front that mirrors it, checks the issuer's signature, that the CRL is
// fresh (now before nextUpdate) and that no mirror serves a number newer
// than the site's own, and reports the oldest thisUpdate and the earliest
// nextUpdate.
func ProbeCRL(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindCRL)
	if len(t.CRLs) == 0 {
		r.step("config", probeError{ClassProtocol, "no CRL URLs for this site"})
		return r.done()
	}
	var oldest, earliest time.Time
	for _, src := range t.CRLs {
		// What a relying party can get for this issuer: per shard the
		// latest nextUpdate any front serves; the issuer's clock is the
		// earliest of those (the outage clock, while the site is down).
		var issuerClock time.Time
		for _, u := range src.URLs {
			crl, err := fetchCRL(ctx, t, src, u)
			var best time.Time
			if r.step("crl "+u, err) == nil {
				best = crl.NextUpdate
				if oldest.IsZero() || crl.ThisUpdate.Before(oldest) {
					oldest = crl.ThisUpdate
				}
				if earliest.IsZero() || crl.NextUpdate.Before(earliest) {
					earliest = crl.NextUpdate
				}
			}
			// The copies are checked even when the site's own front is
			// down: then they are all relying parties can get.
			for _, m := range src.Mirrors {
				via := src
				via.DialAddr = m
				mc, err := fetchCRL(ctx, t, via, u)
				if err == nil && crl != nil && mc.Number.Cmp(crl.Number) > 0 {
					err = probeError{ClassMismatch, fmt.Sprintf("the copy at %s has CRL number %s, newer than the site's own %s", m, mc.Number, crl.Number)}
				}
				if err == nil && mc.NextUpdate.After(best) {
					best = mc.NextUpdate
				}
				r.step("crl "+u+" via "+m, err)
			}
			if best.IsZero() {
				best = time.Unix(0, 0) // no front serves this shard: its clock has run out
			}
			if issuerClock.IsZero() || best.Before(issuerClock) {
				issuerClock = best
			}
		}
		if !issuerClock.IsZero() {
			r.fact(NextUpdateFact+src.Issuer.Subject.CommonName, issuerClock.UTC().Format(time.RFC3339))
		}
	}
	if !oldest.IsZero() {
		r.fact("oldestThisUpdate", oldest.UTC().Format(time.RFC3339))
		r.fact("ageSeconds", strconv.Itoa(int(time.Since(oldest).Seconds())))
		r.fact("earliestNextUpdate", earliest.UTC().Format(time.RFC3339))
	}
	return r.done()
}

func crlHTTPClient(t *Target, src CRLSource) *http.Client {
	d := &net.Dialer{Timeout: t.stepTimeout()}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}
	if src.DialAddr != "" {
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, src.DialAddr)
		}
	}
	return &http.Client{Transport: tr, Timeout: 2 * t.stepTimeout()}
}

// NextUpdateFact prefixes the crl probe's fact per issuer (by common
// name): the earliest nextUpdate a relying party can still get.
const NextUpdateFact = "nextUpdate."

// fetchCRL downloads one shard and checks signature and freshness.
func fetchCRL(ctx context.Context, t *Target, src CRLSource, u string) (*x509.RevocationList, error) {
	crl, _, err := fetchCRLDER(ctx, t, src, u)
	return crl, err
}

// PublishedCRL is one CRL shard as the site publishes it.
type PublishedCRL struct {
	URL string
	DER []byte
	CRL *x509.RevocationList
}

// SiteCRLs fetches every CRL shard of every issuer of the site from the
// site's own front, each one's signature checked; it returns every one
// signed by its issuer (an expired one too: its revocations stand) and
// the errors met, an expired CRL's included.
func SiteCRLs(ctx context.Context, t *Target) ([]PublishedCRL, error) {
	var out []PublishedCRL
	var errs []error
	for _, src := range t.CRLs {
		for _, u := range src.URLs {
			crl, der, err := fetchCRLDER(ctx, t, src, u)
			if err != nil {
				errs = append(errs, err)
			}
			if crl == nil {
				continue
			}
			out = append(out, PublishedCRL{URL: u, DER: der, CRL: crl})
		}
	}
	return out, errors.Join(errs...)
}

func fetchCRLDER(ctx context.Context, t *Target, src CRLSource, u string) (*x509.RevocationList, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := crlHTTPClient(t, src).Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, httpStatusError{resp.StatusCode, fmt.Sprintf("GET %s: HTTP %d", u, resp.StatusCode)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, err
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		return nil, nil, probeError{ClassProtocol, "CRL does not parse: " + err.Error()}
	}
	if err := crl.CheckSignatureFrom(src.Issuer); err != nil {
		return nil, nil, probeError{ClassMismatch, fmt.Sprintf("CRL at %s is not signed by %s: %v", u, src.Issuer.Subject.CommonName, err)}
	}
	if now := time.Now(); now.After(crl.NextUpdate) {
		return crl, body, probeError{ClassStale, fmt.Sprintf("CRL at %s expired at %s (nextUpdate)", u, crl.NextUpdate.UTC().Format(time.RFC3339))}
	}
	return crl, body, nil
}

func crlHas(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

// SerialInCRL reports whether serial (hex) is listed in a CRL the site
// published, fetching every shard of every issuer at its URL (each one's
// signature and freshness checked).
func SerialInCRL(ctx context.Context, t *Target, serial string) (bool, error) {
	want, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return false, fmt.Errorf("serial %q is not hex", serial)
	}
	var errs []error
	for _, src := range t.CRLs {
		for _, u := range src.URLs {
			crl, err := fetchCRL(ctx, t, src, u)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if crlHas(crl, want) {
				return true, nil
			}
		}
	}
	return false, errors.Join(errs...)
}
