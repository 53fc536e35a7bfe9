package nspawntest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/provision"
)

// The client host: a namespace host on the cluster's bridge with an
// address of its own range (validation.allowedNetworks, not the sites'),
// which also runs the organisation's DNS (validation.resolvers) serving
// the private TLD internal. with its own name.
const (
	clientAddr = "10.78.83.50"
	clientName = "app.corp.internal"
)

// specClients is the spec's part for the client host.
const specClients = `validation:
  allowedNetworks: [10.78.83.0/24]
  resolvers: [` + clientAddr + `]
policy:
  privateSuffixes: [internal]
`

// clientHTTP01 runs lego --http on the client host for its own name in
// the organisation's DNS, through the ACME name: every site's VAs (on
// systemd hosts) resolve it through validation.resolvers and connect to
// it. Then lego --tls the same way. The host stays up (the caller takes
// it down): the organisation's DNS answers every CAA lookup above the
// ACME zone, so without it no site issues anything (its probes
// included), as docs/policy.md says.
func clientHTTP01(t *testing.T, spec *cluster.Spec, cairn, primary string) provision.NSHost {
	t.Helper()
	ctx := context.Background()
	client := provision.NSHost{Cluster: spec.Name, Name: "client", Address: netip.MustParseAddr(clientAddr), StateDir: filepath.Join(t.TempDir(), "client")}
	if err := client.Up(ctx, provision.NSSwitch{Cluster: spec.Name}, cairn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Down(context.Background()) })
	rootPEM, err := os.ReadFile(spec.Path(filepath.Join(spec.PKI.Dir, "public", "root.cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := strings.Cut(primary, ":")
	zone := fmt.Sprintf("$TTL 30\n@ SOA ns1.internal. h 1 3600 600 86400 30\n@ NS ns1.internal.\nns1 A %[1]s\n%[2]s. A %[1]s\n", clientAddr, clientName)
	conf := fmt.Sprintf(`options { directory "/var/tmp/org-dns"; pid-file "/var/tmp/org-dns/named.pid"; listen-on port 53 { %s; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
controls { };
zone "internal" { type primary; file "/var/tmp/org-dns/internal.zone"; };
`, clientAddr)
	// Its own /etc: the cluster root, the cluster DNS as its resolver
	// (for the ACME name), and the organisation's DNS server.
	setup := `set -e; mkdir -p /var/tmp/org-dns; printf '%s' "$ROOT" > /etc/cairn-root.pem; printf 'nameserver %s\n' "$NS" > /etc/resolv.conf
printf '%s' "$ZONE" > /var/tmp/org-dns/internal.zone; printf '%s' "$CONF" > /var/tmp/org-dns/named.conf; named -c /var/tmp/org-dns/named.conf`
	if out, err := client.Exec(ctx, "env", "ROOT="+string(rootPEM), "NS="+host, "ZONE="+zone, "CONF="+conf, "sh", "-c", setup); err != nil {
		t.Fatalf("client host: %v\n%s", err, out)
	}
	for _, challenge := range []string{cluster.ChallengeHTTP01, cluster.ChallengeTLSALPN01} {
		path := "/root/lego-" + challenge
		lego := acmecli.Lego{Server: "https://" + spec.ACME.Name + "/directory", Email: "ops@" + spec.ACME.Zone, Path: path, Domain: clientName, Challenge: challenge}
		start := time.Now()
		if out, err := client.Exec(ctx, append([]string{"env", "LEGO_CA_CERTIFICATES=/etc/cairn-root.pem"}, lego.Args("run")...)...); err != nil {
			t.Errorf("lego %s on the client host for %s: %v\n%s", challenge, clientName, err, out)
			continue
		}
		pemb, err := client.Exec(ctx, "cat", lego.CertFile())
		if err != nil {
			t.Errorf("%s: certificate: %v %s", challenge, err, pemb)
			continue
		}
		chainsToRoot(t, pemb, rootPEM, clientName)
		t.Logf("lego %s on the client host (%s, %s in the organisation's DNS): certificate in %.1fs", challenge, clientAddr, clientName, time.Since(start).Seconds())
	}
	return client
}
