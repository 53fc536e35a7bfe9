package healthcheck

import (
	"context"
	"time"
)

// KindCRLFront fetches one CRL from the site's own CRL front: is the front
// reachable and serving? It never votes on the ACME name; the controller
// withdraws a front that fails it from the CRL names (every name lists
// every front, and a relying party whose first address black-holes its
// connections may not reach the next in time) and puts it back once it
// serves again.
const KindCRLFront = "crlfront"

// crlFrontEvery is the crlfront probe's interval; its deadline is half.
const crlFrontEvery = 3 * time.Second

// ProbeCRLFront fetches the site's first CRL shard from its own front and
// checks the issuer's signature (freshness is the crl probe's: an expired
// CRL is still served, and the other fronts serve the same copy).
func ProbeCRLFront(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindCRLFront)
	if len(t.CRLs) == 0 || len(t.CRLs[0].URLs) == 0 || t.CRLs[0].DialAddr == "" {
		r.fact("front", "none: the site's CRLs are published by the operator's store")
		r.step("config", nil)
		return r.done()
	}
	src := t.CRLs[0]
	r.fact("front", src.DialAddr)
	crl, _, err := fetchCRLDER(ctx, t, src, src.URLs[0])
	if crl != nil {
		err = nil // signed by its issuer: served, if expired
	}
	r.step("crl "+src.URLs[0], err)
	return r.done()
}
