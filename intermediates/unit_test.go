package intermediates

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
)

func TestValidityHasNoExtraSecondAndRespectsIssuer(t *testing.T) {
	now := time.Date(2026, 11, 21, 20, 30, 0, 0, time.UTC)
	nb, na := validity(now, 1095, time.Time{})
	if nb != "2026-11-21 19:00:00" || na != "2029-11-20 18:59:59" {
		t.Errorf("validity = %s .. %s", nb, na)
	}
	limit := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, na := validity(now, 1095, limit); na != "2027-01-01 00:00:00" {
		t.Errorf("not clamped to issuer: %s", na)
	}
}

func TestKeySpecsCoverEveryAllowedType(t *testing.T) {
	for _, kt := range append(append([]string{}, cluster.ECDSAKeyTypes...), cluster.RSAKeyTypes...) {
		ks := keySpecFor(kt)
		if (ks.Type == "ecdsa") == (ks.ECDSACurve == "") || (ks.Type == "rsa") == (ks.RSAModLength == 0) {
			t.Errorf("%s -> %+v", kt, ks)
		}
	}
	if signatureAlgorithm("ecdsa-p384") != "ECDSAWithSHA384" || signatureAlgorithm("rsa-4096") != "SHA256WithRSA" {
		t.Error("signature algorithms")
	}
}

func TestSiteSubjectsAreUniquePerGeneration(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	p := &PKI{spec: spec, dir: t.TempDir(), state: &state{Generations: map[string]int{"a": 3}}}
	if err := p.checkSubjectsUnique(); err != nil {
		t.Fatal(err)
	}
	spec.PKI.Infrastructure.CommonName = "cairn lab a E2"
	if err := p.checkSubjectsUnique(); err == nil {
		t.Fatal("colliding subject accepted")
	}
}

// The child signer refuses a malformed request with one line, and a PKI
// without the cairn executable refuses to sign with a SoftHSM token rather
// than touch its own environment.
func TestSignerNeedsItsRequestAndItsExecutable(t *testing.T) {
	var out strings.Builder
	if err := SignFromStdin(strings.NewReader("not json"), &out); err == nil || !strings.HasPrefix(err.Error(), "sign request") || out.Len() != 0 {
		t.Errorf("bad request: %v, wrote %q", err, out.String())
	}
	p := &PKI{opts: Options{}}
	if _, err := p.signInChild(context.Background(), token{softhsmDir: t.TempDir()}, SignRequest{}); err == nil || !strings.Contains(err.Error(), "Options.Signer") {
		t.Errorf("no signer: %v", err)
	}
}
