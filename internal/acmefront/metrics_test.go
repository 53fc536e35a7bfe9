package acmefront

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The front exports when the site's certificates expire, reading the
// files at each scrape: a renewed internal certificate shows at once.
func TestFrontExportsCertificateExpiry(t *testing.T) {
	dir := t.TempDir()
	write := func(path string, notAfter time.Time) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ra, wfe := time.Unix(1900000000, 0), time.Unix(1950000000, 0)
	write(filepath.Join(dir, "ipki", "ra.boulder", "cert.pem"), ra)
	write(filepath.Join(dir, "https", "wfe.pem"), wfe)
	os.WriteFile(filepath.Join(dir, "ipki", "ca.pem"), []byte("not one of the leaves"), 0o644)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(certExpiry{front: filepath.Join(dir, "https", "wfe.pem"), dir: filepath.Join(dir, "ipki")})
	want := func(raAt time.Time) string {
		return fmt.Sprintf(`# HELP cairn_site_cert_expiry_timestamp_seconds %s
# TYPE cairn_site_cert_expiry_timestamp_seconds gauge
cairn_site_cert_expiry_timestamp_seconds{cert="https/wfe"} %d
cairn_site_cert_expiry_timestamp_seconds{cert="ipki/ra.boulder"} %d
`, "When a certificate of this site expires (cert: https/wfe for the ACME name, ipki/<name> for the internal mTLS ones).", wfe.Unix(), raAt.Unix())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(ra)), "cairn_site_cert_expiry_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
	renewed := ra.Add(90 * 24 * time.Hour)
	write(filepath.Join(dir, "ipki", "ra.boulder", "cert.pem"), renewed)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(renewed)), "cairn_site_cert_expiry_timestamp_seconds"); err != nil {
		t.Errorf("after renewal: %v", err)
	}
}
