package nspawntest

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/clienthost"
	"github.com/cairn-pki/cairn/provision"
)

// The client host: a namespace host on the cluster's bridge with an
// address of its own range (validation.allowedNetworks, not the sites'),
// which also runs the organisation's DNS (validation.resolvers) serving
// the private TLD internal. with its own name.
const clientAddr = "10.78.83.50"

// specClients is the spec's part for the client host.
var specClients = clienthost.SpecPart("10.78.83.0/24", clientAddr)

// clientHost brings up the client host with the organisation's DNS. It
// stays up (the caller takes it down): the organisation's DNS answers
// every CAA lookup above the ACME zone (home.arpa, arpa); until it
// answers, each of those lookups times out at every VA (3 tries of 2 s),
// so every validation takes 6-10 s, longer than the issuance probe's
// deadline, and the controller keeps the sites down.
func clientHost(t *testing.T, spec *cluster.Spec, cairn, primary string) provision.NSHost {
	t.Helper()
	ctx := context.Background()
	client := provision.NSHost{Cluster: spec.Name, Name: "client", Address: netip.MustParseAddr(clientAddr), StateDir: filepath.Join(t.TempDir(), "client")}
	if err := client.Up(ctx, provision.NSSwitch{Cluster: spec.Name}, cairn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Down(context.Background()) })
	host, _, _ := strings.Cut(primary, ":")
	// Its own /etc: the cluster root and the cluster DNS as its resolver
	// (for the ACME name).
	setup := `set -e; printf '%s' "$ROOT" > /etc/cairn-root.pem; printf 'nameserver %s\n' "$NS" > /etc/resolv.conf`
	if out, err := client.Exec(ctx, "env", "ROOT="+string(rootPEM(t, spec)), "NS="+host, "sh", "-c", setup); err != nil {
		t.Fatalf("client host: %v\n%s", err, out)
	}
	clienthost.OrgDNS(t, client.Exec, clientAddr)
	return client
}

// clientHTTP01 runs lego --http, then --tls, on the client host for its
// own name in the organisation's DNS, through the ACME name: every site's
// VAs (on systemd hosts) resolve it through validation.resolvers and
// connect to it.
func clientHTTP01(t *testing.T, client provision.NSHost, spec *cluster.Spec) {
	t.Helper()
	clienthost.LegoHTTPAndTLS(t, client.Exec, spec, rootPEM(t, spec), clientAddr, "LEGO_CA_CERTIFICATES=/etc/cairn-root.pem")
}

// rootPEM is the cluster's root certificate.
func rootPEM(t *testing.T, spec *cluster.Spec) []byte {
	t.Helper()
	b, err := os.ReadFile(spec.Path(filepath.Join(spec.PKI.Dir, "public", "root.cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
