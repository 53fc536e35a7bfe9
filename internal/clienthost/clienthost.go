// Package clienthost is the test side of a client host on a provisioned
// cluster (a namespace host of its own address range, in
// validation.allowedNetworks): the organisation's DNS running there for
// the private TLD internal., and lego answering HTTP-01 and TLS-ALPN-01
// for the host's own name. The nspawn and the local end-to-end tests
// share it.
package clienthost

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmecli"
)

// Name is the client host's name in the organisation's DNS.
const Name = "app.corp.internal"

// Run runs argv on the client host, as its root.
type Run func(ctx context.Context, argv ...string) ([]byte, error)

// SpecPart is the spec's part for a client host at addr in network: the
// VAs may connect there, the organisation's DNS (on the host) resolves
// names outside the ACME zone, and internal. is a private suffix.
func SpecPart(network, addr string) string {
	return fmt.Sprintf(`validation:
  allowedNetworks: [%s]
  resolvers: [%s]
policy:
  privateSuffixes: [internal]
`, network, addr)
}

// OrgDNS starts the organisation's DNS on the host: BIND authoritative
// for internal. with Name at addr (from /var/tmp, the host's own).
func OrgDNS(t *testing.T, run Run, addr string) {
	t.Helper()
	zone := fmt.Sprintf("$TTL 30\n@ SOA ns1.internal. h 1 3600 600 86400 30\n@ NS ns1.internal.\nns1 A %[1]s\n%[2]s. A %[1]s\n", addr, Name)
	conf := fmt.Sprintf(`options { directory "/var/tmp/org-dns"; pid-file "/var/tmp/org-dns/named.pid"; listen-on port 53 { %s; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
controls { };
zone "internal" { type primary; file "/var/tmp/org-dns/internal.zone"; };
`, addr)
	setup := `set -e; mkdir -p /var/tmp/org-dns; printf '%s' "$ZONE" > /var/tmp/org-dns/internal.zone; printf '%s' "$CONF" > /var/tmp/org-dns/named.conf; named -c /var/tmp/org-dns/named.conf`
	if out, err := run(context.Background(), "env", "ZONE="+zone, "CONF="+conf, "sh", "-c", setup); err != nil {
		t.Fatalf("the organisation's DNS on the client host: %v\n%s", err, out)
	}
}

// LegoHTTPAndTLS runs lego --http, then lego --tls, on the host for Name
// through the ACME name (env: what lego needs beyond the host's own
// resolver and trust store), and checks each certificate chains to the
// cluster root. Every site's VAs resolve Name through
// validation.resolvers and connect to the host.
func LegoHTTPAndTLS(t *testing.T, run Run, spec *cluster.Spec, rootPEM []byte, addr string, env ...string) {
	t.Helper()
	ctx := context.Background()
	for _, challenge := range []string{cluster.ChallengeHTTP01, cluster.ChallengeTLSALPN01} {
		lego := acmecli.Lego{Server: "https://" + spec.ACME.Name + "/directory", Email: "ops@" + spec.ACME.Zone, Path: "/root/lego-" + challenge, Domain: Name, Challenge: challenge}
		start := time.Now()
		if out, err := run(ctx, append(append([]string{"env"}, env...), lego.Args("run")...)...); err != nil {
			t.Errorf("lego %s on the client host for %s: %v\n%s", challenge, Name, err, out)
			continue
		}
		pemb, err := run(ctx, "cat", lego.CertFile())
		if err != nil {
			t.Errorf("%s: certificate: %v %s", challenge, err, pemb)
			continue
		}
		ChainsToRoot(t, pemb, rootPEM, Name)
		t.Logf("lego %s on the client host (%s, %s in the organisation's DNS): certificate in %.1fs", challenge, addr, Name, time.Since(start).Seconds())
	}
}

// ChainsToRoot parses lego's certificate file (the leaf, then the
// intermediates) and checks the leaf is valid for name under the root.
func ChainsToRoot(t *testing.T, pemb, rootPEM []byte, name string) *x509.Certificate {
	t.Helper()
	leaf, rest := pem.Decode(pemb)
	if leaf == nil {
		t.Fatalf("no certificate for %s in %q", name, pemb)
	}
	cert, err := x509.ParseCertificate(leaf.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	inter.AppendCertsFromPEM(rest)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name}); err != nil {
		t.Errorf("the certificate for %s does not chain to the cluster root: %v", name, err)
	}
	return cert
}
