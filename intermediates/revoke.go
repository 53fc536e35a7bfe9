package intermediates

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/letsencrypt/boulder/revocation"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Reasons the root may give when revoking a site's intermediates (those the
// Baseline Requirements allow for CA certificates).
var RevocationReasons = []string{"keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation"}

// DefaultRevocationReason is used when the operator names none.
const DefaultRevocationReason = "cessationOfOperation"

// signRootCRL has the root sign a new CRL listing every revocation in the
// state, with the next CRL number, and publishes it as PEM and DER.
func (p *PKI) signRootCRL(ctx context.Context) error {
	c, signing, rootCert, err := p.rootCeremony(ctx, "root-crl")
	if err != nil {
		return err
	}
	pin := signing.PIN
	number := p.state.CRLNumber + 1
	cfg := crlCeremony{CeremonyType: "crl", SkipLints: crlSkipLints}
	cfg.PKCS11 = signing
	cfg.Inputs.IssuerCertificatePath = p.rootCert()
	cfg.Outputs.CRLPath = c.output(p.rootCRL())
	this := p.now().UTC().Truncate(time.Second)
	next := this.Add(time.Duration(p.spec.PKI.CRLValidityDays) * 24 * time.Hour)
	if next.After(rootCert.NotAfter) {
		next = rootCert.NotAfter
	}
	cfg.CRLProfile.ThisUpdate = this.Format(ceremonyTime)
	cfg.CRLProfile.NextUpdate = next.Format(ceremonyTime)
	cfg.CRLProfile.Number = number
	for _, r := range p.state.Revoked {
		cfg.CRLProfile.RevokedCertificates = append(cfg.CRLProfile.RevokedCertificates, revokedEntry{
			CertificatePath: p.abs(r.CertFile), RevocationDate: r.At.UTC().Format(ceremonyTime), RevocationReason: r.Reason,
		})
	}
	if err := c.run(ctx, cfg, pin); err != nil {
		return fmt.Errorf("sign root CRL: %w", err)
	}
	p.state.CRLNumber = number
	if err := p.saveState(); err != nil {
		return err
	}
	b, err := os.ReadFile(p.rootCRL())
	if err != nil {
		return err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("%s holds no PEM CRL", p.rootCRL())
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(p.publicDir(), "root.crl"), block.Bytes, 0o644); err != nil {
		return err
	}
	p.logf("root CRL #%d signed: %d revoked, next update %s", number, len(p.state.Revoked), next.Format(time.DateOnly))
	return nil
}

// RevokeSite has the root revoke every intermediate of the site that is not
// revoked yet and publishes a new root CRL. Other sites' chains stay valid.
// It returns how many intermediates it revoked (0: nothing to do).
func (p *PKI) RevokeSite(ctx context.Context, site, reason string) (int, error) {
	s, ok := p.spec.SiteByName(site)
	if !ok {
		return 0, fmt.Errorf("no site %q in the spec (sites: %v)", site, p.spec.SiteNames())
	}
	if reason == "" {
		reason = DefaultRevocationReason
	}
	if !slices.Contains(RevocationReasons, reason) {
		return 0, fmt.Errorf("--reason %q is not allowed for a CA certificate; use one of %v", reason, RevocationReasons)
	}
	if _, err := revocation.StringToReason(reason); err != nil {
		return 0, err
	}
	at := p.now().UTC().Truncate(time.Second)
	added := 0
	for g := 1; g <= p.generation(s.Name); g++ {
		for _, k := range p.siteKeys(*s, g) {
			rel := p.rel(k.cert())
			if p.isRevoked(rel) {
				continue
			}
			cert, err := ReadCert(k.cert())
			if err != nil {
				return 0, fmt.Errorf("site %s: %w (run `cairn pki init` first)", site, err)
			}
			p.state.Revoked = append(p.state.Revoked, Revocation{
				CertFile: rel, Site: site, Serial: fmt.Sprintf("%x", cert.SerialNumber), At: at, Reason: reason,
			})
			added++
		}
	}
	if added == 0 {
		return 0, nil
	}
	if err := p.signRootCRL(ctx); err != nil {
		// Keep the state and the published CRL consistent: forget the
		// revocations the CRL does not carry.
		p.state.Revoked = p.state.Revoked[:len(p.state.Revoked)-added]
		return 0, err
	}
	return added, nil
}

func (p *PKI) isRevoked(rel string) bool {
	return slices.ContainsFunc(p.state.Revoked, func(r Revocation) bool { return r.CertFile == rel })
}

// Rotate creates a new generation of the site's intermediates (a new key
// pair in the site's token and a new subject, e.g. "... a E2"). The old
// ones stay valid and listed until they expire or are revoked.
func (p *PKI) Rotate(ctx context.Context, site string) (int, error) {
	s, ok := p.spec.SiteByName(site)
	if !ok {
		return 0, fmt.Errorf("no site %q in the spec (sites: %v)", site, p.spec.SiteNames())
	}
	cur := p.generation(s.Name)
	for _, k := range p.siteKeys(*s, cur) {
		if !fsutil.Exists(k.cert()) {
			return 0, fmt.Errorf("site %s has no generation %d intermediates yet: run `cairn pki init` first", site, cur)
		}
	}
	next := cur + 1
	p.state.Generations[s.Name] = next
	if err := p.checkSubjectsUnique(); err != nil {
		p.state.Generations[s.Name] = cur
		return 0, err
	}
	for _, k := range p.siteKeys(*s, next) {
		if err := p.ensureIntermediate(ctx, k, "site "+site); err != nil {
			// Stay on the old generation; a new `rotate` resumes where this stopped.
			p.state.Generations[s.Name] = cur
			return 0, err
		}
	}
	if err := p.saveState(); err != nil {
		return 0, err
	}
	return next, p.checkNameIDs()
}
