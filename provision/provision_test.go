package provision

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
)

func testSpec(t *testing.T, extra string) *cluster.Spec {
	t.Helper()
	dir := t.TempDir()
	text := "name: prod-cluster\ndns:\n  servers:\n    - {name: primary, address: 127.0.80.2:53, role: primary}\n    - {name: secondary, address: 127.0.80.3:53, role: secondary}\n" +
		"sites:\n  - {name: a, address: 127.0.81.1, serviceNetwork: 127.0.81.0/24}\n  - {name: b, address: 127.0.82.1, serviceNetwork: 127.0.82.0/24}\n" + extra
	path := filepath.Join(dir, cluster.DefaultFile)
	os.WriteFile(path, []byte(text), 0o644)
	spec, err := cluster.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestNewNamesTheFlag(t *testing.T) {
	spec := testSpec(t, "")
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Spec: spec, Infra: "gcp"}, "--infra \"gcp\": use aws, existing, local, nspawn"},
		{Options{Spec: spec, Infra: "nspawn"}, "dns.servers: the primary 127.0.80.2 is loopback"},
		{Options{Spec: spec, Infra: "aws"}, "--terraform-dir"},
		{Options{Spec: spec, Infra: "existing"}, "--inventory"},
		{Options{Spec: spec, Infra: "local", Gateway: "gw"}, "--gateway \"gw\""},
	} {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %s", tc.o.Infra, err, tc.want)
		}
	}
}

func TestLocalHostsFromTheSpec(t *testing.T) {
	p, err := New(Options{Spec: testSpec(t, ""), Infra: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if p.prefix() != "prodclus" {
		t.Errorf("prefix %q, want prodclus", p.prefix())
	}
	hosts, err := p.localHosts()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "a b dns" || hosts["a"].Local[0] != "127.0.81.0/24" || hosts["dns"].Role != "dns-primary" || hosts["dns"].Local[0] != "127.0.80.0/24" {
		t.Errorf("hosts %+v", hosts)
	}
	p.o.Gateway = "127.0.80.254"
	if _, err := p.localHosts(); err == nil || !strings.Contains(err.Error(), "--gateway") {
		t.Errorf("a gateway inside the cluster host: %v", err)
	}
}

func TestTarDirIsPrivateAndComplete(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.MkdirAll(filepath.Join(dir, "var", "logs"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "x.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(dir, "var", "logs", "wfe.log"), []byte("log"), 0o644)
	dst := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := tarDir(dir, dst); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600 (bundles hold secrets)", fi.Mode().Perm())
	}
	f, _ := os.Open(dst)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name)
	}
	if strings.Join(got, " ") != "etc etc/x.json var var/logs var/logs/wfe.log" {
		t.Errorf("archive holds %v", got)
	}
}

func TestExistingHostsFromAnInventoryFile(t *testing.T) {
	spec := testSpec(t, "")
	inv := filepath.Join(t.TempDir(), "hosts.yml")
	os.WriteFile(inv, []byte(`sites:
  a: {name: a, location: eu, addresses: [127.0.81.1], connection: {type: ssh, user: admin, port: 22}}
  b: {name: b, location: us, addresses: [10.0.0.9], connection: {type: ssh, user: admin, port: 22}}
dns_servers:
  - {name: dns1, role: primary, location: eu, address: 127.0.80.2:53, connection: {type: ssh, user: admin, port: 22}}
`), 0o644)
	p, err := New(Options{Spec: spec, Infra: "existing", Inventory: inv})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.outputs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if out.DNSServers[0].Address != "127.0.80.2:53" || out.Sites["b"].Location != "us" {
		t.Errorf("inventory %+v", out)
	}
	// b's address in cairn.yaml is not its host's: the error names the field.
	if err := p.checkAddresses(out); err == nil || !strings.Contains(err.Error(), "sites[1].address 127.0.82.1") {
		t.Errorf("address check: %v", err)
	}
}

// Client hosts of --infra local take an address of the clients' own
// range, listed in validation.allowedNetworks, and a name no host has;
// the sites reach exactly those networks; other infrastructures refuse.
func TestClientHostsChecked(t *testing.T) {
	spec := testSpec(t, "validation:\n  allowedNetworks: [10.79.80.0/24, fd00::/8]\n")
	p, err := New(Options{Spec: spec, Infra: "local"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, addr, want string }{
		{"web1", "10.79.80.50", ""},
		{"web1", "127.0.79.50", "not 127/8"},
		{"web1", "10.79.81.50", "not in validation.allowedNetworks"},
		{"web1", "0.0.0.0", "not 127/8"},
		{"a", "10.79.80.51", "a host of the cluster has it"},
		{"dns", "10.79.80.51", "a host of the cluster has it"},
		{"Web_1", "10.79.80.51", "client name"},
		{"averyveryverylongname", "10.79.80.51", "client name"},
	} {
		err := p.checkClient(tc.name, netip.MustParseAddr(tc.addr))
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("client %s at %s: %v, want %q", tc.name, tc.addr, err, tc.want)
		}
	}
	if got := clientNetworks(spec); strings.Join(got, " ") != "10.79.80.0/24" {
		t.Errorf("the sites reach %v, want the IPv4 client network only", got)
	}
	other, err := New(Options{Spec: spec, Infra: "existing", Inventory: "hosts.yml"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.ClientUp(t.Context(), "web1", netip.MustParseAddr("10.79.80.50")); err == nil || !strings.Contains(err.Error(), "--infra local and nspawn only") {
		t.Errorf("client up on --infra existing: %v", err)
	}
}
