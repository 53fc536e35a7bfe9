package provision

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/boulderbin/addition"
)

// Client hosts of --infra local: namespace hosts on the cluster's bridge
// with an address of the clients' own range (one of
// validation.allowedNetworks, never the hosts' 127/8), where ACME clients
// answer HTTP-01 and TLS-ALPN-01 for the sites' VAs. Each site host
// and the cluster host reach those networks on the bridge (onlink), as
// the hosts of a real deployment route to their clients' networks.
//
// They are not in the Terraform state: a plan or an upgrade of the
// sites does not touch them. `provision destroy` removes them first.

var clientNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,12}$`)

// clientHost is the namespace host of client name (made or not).
func (p *Provisioner) clientHost(name string) NSHost {
	return NSHost{Cluster: p.prefix(), Name: name, StateDir: p.path("clients", name)}
}

func (p *Provisioner) needsNamespaceHosts(what string) error {
	if p.o.Infra != "local" && p.o.Infra != "nspawn" {
		return fmt.Errorf("--infra %s: %s runs on --infra local and nspawn only (other infrastructures' clients are your own hosts on your networks)", p.o.Infra, what)
	}
	return nil
}

// checkClient checks a client host's name and address against the spec:
// the name is no other host's, the address is in one of
// validation.allowedNetworks (IPv4) and not loopback.
func (p *Provisioner) checkClient(name string, addr netip.Addr) error {
	spec := p.o.Spec
	if !clientNameRE.MatchString(name) {
		return fmt.Errorf("client name %q: 1-13 lower-case letters, digits or hyphens, starting with a letter (it names an interface)", cluster.Excerpt(name))
	}
	taken := []string{"dns", "sw"}
	for _, s := range spec.Sites {
		taken = append(taken, s.Name)
	}
	if slices.Contains(taken, name) {
		return fmt.Errorf("client name %q: a host of the cluster has it; choose another", name)
	}
	if !addr.Is4() || addr.IsLoopback() || addr.IsUnspecified() {
		return fmt.Errorf("--address %s: give the client an IPv4 address of its own range (not 127/8), inside validation.allowedNetworks", addr)
	}
	for _, n := range clientNetworks(spec) {
		if !netip.MustParsePrefix(n).Contains(addr) {
			continue
		}
		if p.o.Infra == "nspawn" {
			// The hosts reach their clients on the bridge: in their network.
			if hosts, err := p.nspawnNetwork(); err == nil && !hosts.Contains(addr) {
				return fmt.Errorf("--address %s: not in the nspawn hosts' network %s, where the sites reach their clients; list a client network inside it in validation.allowedNetworks", addr, hosts)
			}
		}
		return nil
	}
	return fmt.Errorf("--address %s: not in validation.allowedNetworks %v; the sites' VAs connect only there: list the clients' network in cairn.yaml and provision apply again", addr, spec.Validation.AllowedNetworks)
}

// clientNetworks are the IPv4 networks of validation.allowedNetworks:
// what every local host reaches on the bridge.
func clientNetworks(spec *cluster.Spec) []string {
	var nets []string
	for _, n := range spec.Validation.AllowedNetworks {
		if pr, err := addition.ParseNetwork(n); err == nil && pr.Addr().Is4() {
			nets = append(nets, pr.Masked().String())
		}
	}
	return nets
}

// ClientUp makes client host name at addr (idempotent) on the applied
// cluster's bridge: its /etc/resolv.conf names the cluster's primary DNS
// server (the ACME name resolves as for any client) and its trust store
// (/etc/ssl/certs/ca-certificates.crt, the host's own copy) holds the
// cluster root besides the system's.
func (p *Provisioner) ClientUp(ctx context.Context, name string, addr netip.Addr) (NSHost, error) {
	if err := p.needsNamespaceHosts("provision client"); err != nil {
		return NSHost{}, err
	}
	if err := p.checkClient(name, addr); err != nil {
		return NSHost{}, err
	}
	sw := NSSwitch{Cluster: p.prefix()}
	if !netnsExists(sw.Netns()) {
		return NSHost{}, fmt.Errorf("no %s infrastructure for cluster %s (namespace %s): run cairn provision apply --infra %[1]s first", p.o.Infra, p.o.Spec.Name, sw.Netns())
	}
	h := p.clientHost(name)
	if old, err := os.ReadFile(filepath.Join(h.StateDir, "address")); err == nil && string(old) != addr.String() {
		return NSHost{}, fmt.Errorf("client %s exists with address %s: cairn provision client down %s first", name, old, name)
	}
	h.Address = addr
	h.OnLink = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} // the local hosts'
	if p.o.Infra == "nspawn" {
		hosts, err := p.nspawnNetwork()
		if err != nil {
			return NSHost{}, err
		}
		h.OnLink = []netip.Prefix{hosts}
	}
	if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
		return NSHost{}, err
	}
	// The switch's gateway is already set: Up leaves the bridge as it is.
	if err := h.Up(ctx, sw, p.o.Self); err != nil {
		h.Down(context.WithoutCancel(ctx))
		return NSHost{}, err
	}
	if err := os.WriteFile(filepath.Join(h.StateDir, "address"), []byte(addr.String()), 0o600); err != nil {
		return NSHost{}, err
	}
	root, err := os.ReadFile(p.o.Spec.Path(filepath.Join(p.o.Spec.PKI.Dir, "public", "root.cert.pem")))
	if err != nil {
		return NSHost{}, fmt.Errorf("the cluster root: %w (run cairn pki init)", err)
	}
	primary := p.o.Spec.PrimaryDNS()
	if primary.Port() != 53 {
		return NSHost{}, fmt.Errorf("dns.servers: the primary %s is not on port 53, which a client's resolv.conf needs", primary)
	}
	// The host's own /etc (its overlay): the system bundle plus the root,
	// written whole each time (a second up does not append twice).
	setup := `set -e; printf '%s' "$RESOLV" > /etc/resolv.conf
b=/etc/ssl/certs/ca-certificates.crt; mkdir -p /etc/cairn; [ -f /etc/cairn/system-cas.crt ] || cp "$b" /etc/cairn/system-cas.crt 2>/dev/null || : > /etc/cairn/system-cas.crt
printf '%s' "$ROOT" > /etc/cairn/root.pem; cat /etc/cairn/system-cas.crt /etc/cairn/root.pem > "$b.cairn"; mv "$b.cairn" "$b"`
	if out, err := h.Exec(ctx, "env", "RESOLV="+string(acmecli.ResolvConf(primary.Addr().String())), "ROOT="+string(root), "sh", "-c", setup); err != nil {
		return NSHost{}, fmt.Errorf("client %s: resolver and root: %v: %s", name, err, out)
	}
	return h, nil
}

// ClientDown removes client host name (idempotent).
func (p *Provisioner) ClientDown(ctx context.Context, name string) error {
	if err := p.needsNamespaceHosts("provision client"); err != nil {
		return err
	}
	if !clientNameRE.MatchString(name) {
		return fmt.Errorf("client name %q: no such client", cluster.Excerpt(name))
	}
	return p.clientHost(name).Down(ctx)
}

// Clients lists the client hosts made (by name).
func (p *Provisioner) Clients() []string {
	entries, _ := os.ReadDir(p.path("clients"))
	var names []string
	for _, e := range entries {
		if e.IsDir() && clientNameRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// ClientCommand is argv run on client host name, as its root: every
// namespace of the host, working directory /root (the host's own, over
// this machine's).
func (p *Provisioner) ClientCommand(ctx context.Context, name string, argv []string) (*exec.Cmd, error) {
	if err := p.needsNamespaceHosts("provision client"); err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("provision client exec: give the command after --, e.g. -- lego --http …")
	}
	if !clientNameRE.MatchString(name) {
		return nil, fmt.Errorf("client name %q: no such client", cluster.Excerpt(name))
	}
	cmd, err := p.clientHost(name).Command(ctx, "/root", argv...)
	if err != nil {
		return nil, fmt.Errorf("client %s is not up: cairn provision client up %s --address ADDR", name, name)
	}
	return cmd, nil
}

// removeClients takes every client host down (before the bridge goes).
func (p *Provisioner) removeClients(ctx context.Context) error {
	for _, name := range p.Clients() {
		if err := p.clientHost(name).Down(ctx); err != nil {
			return fmt.Errorf("client %s: %w", name, err)
		}
	}
	return nil
}
