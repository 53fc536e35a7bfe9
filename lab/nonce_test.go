package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	noncepb "github.com/letsencrypt/boulder/nonce/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// checkNonceServiceAnswersSitesOnly: a site's nonce service, on the
// site's address so that every site's WFE redeems its nonces there,
// hands a nonce to another site's WFE (its wfe.boulder certificate from
// that site's internal CA: the control case) and to nobody else: a
// stranger without a certificate or with a self-made wfe.boulder one is
// refused in the handshake, the controller's credential and the site's
// own RA certificate by Boulder's per-service list. Twenty stranger
// connections, each refused, and the service still answers.
func checkNonceServiceAnswersSitesOnly(t *testing.T, l *Lab, spec *cluster.Spec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := spec.Sites[0], spec.Sites[1]
	pair := func(dir string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	caPEM, err := os.ReadFile(filepath.Join(l.SiteDir(a.Name), "ipki", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	internal := x509.NewCertPool()
	internal.AppendCertsFromPEM(caPEM)
	call := func(certs ...tls.Certificate) error {
		tc := &tls.Config{ServerName: "nonce.boulder", RootCAs: internal, Certificates: certs}
		cc, err := grpc.NewClient(site.NonceAddr(netip.MustParseAddr(a.Address)), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = noncepb.NewNonceServiceClient(cc).Nonce(cctx, &emptypb.Empty{})
		return err
	}
	refused := func(err error) bool {
		return err != nil && (status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded || strings.Contains(err.Error(), "not authorized"))
	}
	for i := range 20 {
		if err := call(); !refused(err) {
			t.Fatalf("site %s's nonce service, a stranger without a certificate (connection %d): %v, want refused", a.Name, i+1, err)
		}
	}
	if err := call(selfMadeWFE(t)); !refused(err) {
		t.Errorf("site %s's nonce service, a self-made wfe.boulder certificate: %v, want refused", a.Name, err)
	}
	if err := call(pair(spec.Path(site.ControllerAgentDir(a.Name)))); !refused(err) {
		t.Errorf("site %s's nonce service, the controller's credential: %v, want refused", a.Name, err)
	}
	if err := call(pair(filepath.Join(l.SiteDir(a.Name), "ipki", "ra.boulder"))); !refused(err) {
		t.Errorf("site %s's nonce service, its own RA's certificate: %v, want refused", a.Name, err)
	}
	if err := call(pair(filepath.Join(l.SiteDir(b.Name), "ipki", "wfe.boulder"))); err != nil {
		t.Errorf("site %s's nonce service, site %s's WFE (the control case): %v", a.Name, b.Name, err)
	}
}

// selfMadeWFE is a wfe.boulder certificate of a CA nobody trusts.
func selfMadeWFE(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wfe.boulder"}, DNSNames: []string{"wfe.boulder"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
