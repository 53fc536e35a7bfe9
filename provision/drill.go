package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	cairnansible "github.com/cairn-pki/cairn/ansible"
	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/site"
	"github.com/cairn-pki/cairn/upgrade"
)

// A drill on a provisioned cluster (`cairn drill run --infra nspawn`)
// acts on the hosts as an operator would: every component is the systemd
// unit cairn-NAME.service of its host (systemctl kill, stop, start,
// is-active), SQL runs with `cairn site sql` there, a site's HSM token
// is moved away on its host and a partition is a firewall table on the
// host. The drill itself runs from the operator's vantage
// (Infrastructure.OperatorNetns, DrillFromOperator), where it reaches the
// controller, the cluster's DNS and the ACME name as any client does.
//
// nspawn hosts are entered directly (nsenter into their systemd's
// namespaces: a command in milliseconds, so a fault's time is the
// fault's); other hosts through an ad-hoc Ansible command (seconds).

// hostShell runs a command on one host and returns its standard output.
type hostShell interface {
	run(ctx context.Context, stdin string, argv ...string) (string, error)
}

// nsenterShell runs commands in an nspawn host's namespaces.
type nsenterShell struct{ h NspawnHost }

func (s nsenterShell) run(ctx context.Context, stdin string, argv ...string) (string, error) {
	cmd, err := s.h.Command(ctx, argv...)
	if err != nil {
		return "", err
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := cluster.FirstLine(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return stdout.String(), fmt.Errorf("%s", msg)
	}
	return stdout.String(), nil
}

// ansibleShell runs commands through an ad-hoc Ansible command.
type ansibleShell struct {
	p         *Provisioner
	inv, host string
}

func (s ansibleShell) run(ctx context.Context, stdin string, argv ...string) (string, error) {
	return s.p.adhoc(ctx, s.inv, s.host, argv, stdin)
}

// DrillInfra is a provisioned cluster as a drill acts on it (drill.Infra
// with drill.HostFaults).
type DrillInfra struct {
	p     *Provisioner
	hosts map[string]hostShell // by site, and "cluster": the controller's host
	procs map[string][]string  // the bundle's processes (components) by site
	// nsenter: every host is entered directly (a partition's firewall
	// can be lifted without the network it cuts).
	nsenter bool
	// client: the client hosts' shared environment (clientEnv).
	clientOnce sync.Once
	client     clientEnvironment
}

// DrillInfra is the provisioned cluster (made with `provision apply`)
// for a drill. Hosts without systemd (--infra local) are refused.
func (p *Provisioner) DrillInfra(ctx context.Context) (*DrillInfra, error) {
	if p.o.Infra == "local" {
		return nil, fmt.Errorf("--infra local: its namespace hosts run no systemd; run drills on the lab (no --infra) or on systemd hosts (--infra nspawn)")
	}
	out, err := p.infra.Outputs(ctx)
	if err != nil {
		return nil, err
	}
	if len(out.DNSServers) == 0 {
		return nil, fmt.Errorf("the provisioned hosts have no DNS host (where the controller runs)")
	}
	d := &DrillInfra{p: p, hosts: map[string]hostShell{}, procs: map[string][]string{}, nsenter: true}
	targets := map[string]Connection{"cluster": out.DNSServers[0].Connection}
	addrs := map[string]string{"cluster": hostOf(out.DNSServers[0].Address)}
	for _, s := range p.o.Spec.Sites {
		h, ok := out.Sites[s.Name]
		if !ok || len(h.Addresses) == 0 {
			return nil, fmt.Errorf("site %s has no provisioned host: run cairn provision apply --infra %s", s.Name, p.o.Infra)
		}
		targets[s.Name], addrs[s.Name] = h.Connection, h.Addresses[0]
	}
	for name, c := range targets {
		procs, err := bundleProcesses(p.path("bundles", name, "bundle.json"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w (run cairn provision apply first)", name, err)
		}
		d.procs[name] = procs
		if cl, host, ok := strings.Cut(c.Machine, "-"); ok && c.State != "" {
			d.hosts[name] = nsenterShell{NspawnHost{Cluster: cl, Name: host, StateDir: c.State}}
			continue
		}
		d.nsenter = false
		hv, err := connVars(c, addrs[name])
		if err != nil {
			return nil, err
		}
		inv := p.path("drill-" + name + ".yml")
		if err := writeInventory(inv, nil, map[string]map[string]hostVars{"sites": {name: hv}}); err != nil {
			return nil, err
		}
		d.hosts[name] = ansibleShell{p: p, inv: inv, host: name}
	}
	if !d.nsenter {
		// The ad-hoc commands run in the working directory's copy of
		// cairn's Ansible files (its config, the nsenter connection).
		if err := writeFS(cairnansible.Files, ".", p.path("ansible")); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// bundleProcesses are the names of a bundle's processes (and its
// controller's): each is the unit cairn-NAME.service on its host.
func bundleProcesses(file string) ([]string, error) {
	var b struct {
		Processes  []struct{ Name string } `json:"processes"`
		Controller *struct{ Name string }  `json:"controller"`
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var names []string
	for _, p := range b.Processes {
		names = append(names, p.Name)
	}
	if b.Controller != nil {
		names = append(names, b.Controller.Name)
	}
	return names, nil
}

// ClusterSpec is the provisioned cluster's spec.
func (d *DrillInfra) ClusterSpec() *cluster.Spec { return d.p.o.Spec }

// Infra names the infrastructure (for the report).
func (d *DrillInfra) Infra() string { return d.p.o.Infra }

// unit is the systemd unit of component on site's host, and that host.
func (d *DrillInfra) unit(site, component string) (hostShell, string, error) {
	h, ok := d.hosts[site]
	if !ok {
		return nil, "", fmt.Errorf("no provisioned host for %q", cluster.Excerpt(site))
	}
	if !slices.Contains(d.procs[site], component) {
		return nil, "", fmt.Errorf("%s has no component %q (its units: %s)", site, cluster.Excerpt(component), strings.Join(d.procs[site], ", "))
	}
	return h, "cairn-" + component + ".service", nil
}

// systemctl runs systemctl args on site's host for component's unit.
func (d *DrillInfra) systemctl(ctx context.Context, site, component string, args ...string) (string, error) {
	h, unit, err := d.unit(site, component)
	if err != nil {
		return "", err
	}
	out, err := h.run(ctx, "", append(append([]string{"systemctl"}, args...), unit)...)
	if err != nil {
		return out, fmt.Errorf("%s: systemctl %s %s: %w", site, args[0], unit, err)
	}
	return out, nil
}

// opTimeout bounds one command on a host.
const opTimeout = 90 * time.Second

// SignalComponent sends sig to the unit's main process and returns its
// PID. SIGKILL is a crash the unit stays down from until the drill
// restores it: systemd would start it again within its RestartSec, so
// the unit is stopped right after the kill (as a crash loop keeps a
// component down).
func (d *DrillInfra) SignalComponent(site, component string, sig syscall.Signal) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	out, err := d.systemctl(ctx, site, component, "show", "--value", "-p", "MainPID")
	if err != nil {
		return 0, err
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(out))
	if pid <= 0 {
		return 0, fmt.Errorf("%s/%s is not running", site, component)
	}
	if _, err := d.systemctl(ctx, site, component, "kill", "--kill-whom=main", "--signal="+unix.SignalName(sig)); err != nil {
		return pid, err
	}
	if sig == syscall.SIGKILL {
		_, err = d.systemctl(ctx, site, component, "stop")
	}
	return pid, err
}

// StartComponent starts the unit (systemctl start waits for it).
func (d *DrillInfra) StartComponent(ctx context.Context, site, component string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err := d.systemctl(ctx, site, component, "start")
	return err
}

// StopComponent stops the unit (a clean shutdown).
func (d *DrillInfra) StopComponent(site, component string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := d.systemctl(ctx, site, component, "stop")
	return err
}

// ComponentRunning says whether the unit is active.
func (d *DrillInfra) ComponentRunning(site, component string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	out, _ := d.systemctl(ctx, site, component, "is-active")
	return strings.TrimSpace(out) == "active"
}

// DBExec runs statements on the site's database (`cairn site sql` on its
// host).
func (d *DrillInfra) DBExec(ctx context.Context, site, statements string) error {
	h, ok := d.hosts[site]
	if !ok || site == "cluster" {
		return fmt.Errorf("no provisioned site %q", cluster.Excerpt(site))
	}
	_, err := h.run(ctx, statements, HostRoot+"/bin/cairn", "site", "sql", "--bundle", hostSite, "--bin", HostRoot+"/bin")
	if err != nil {
		return fmt.Errorf("site %s: cairn site sql: %w", site, err)
	}
	return nil
}

// UpgradeOptions are `cairn upgrade apply --infra`'s options: a drill's
// upgrade fault rolls releases through the hosts the same way.
func (d *DrillInfra) UpgradeOptions(ctx context.Context) (upgrade.ApplyOptions, error) {
	return d.p.UpgradeOptions(ctx)
}

// ClientHostName makes client host name for a drill's real client
// (idempotent; nspawn only): a namespace host on the cluster's bridge with
// an address of validation.allowedNetworks' first IPv4 network (from its
// top down, so as not to meet the organisation's hosts at its bottom),
// the cluster root in its trust store, and its name NAME.<acme.zone> in
// the cluster's DNS (written with the hosts key only nspawn clusters
// get). It stays until provision destroy.
func (d *DrillInfra) ClientHostName(ctx context.Context, name string) (string, error) {
	p := d.p
	if p.o.Infra != "nspawn" {
		return "", fmt.Errorf("client hosts are made on --infra nspawn only; on your own hosts run the clients yourself (a scenario file with certbot, lego or lego5, which use DNS-01)")
	}
	name = clientHostID(name)
	addr, err := p.clientAddress(name)
	if err != nil {
		return "", err
	}
	if _, err := p.ClientUp(ctx, name, addr); err != nil {
		return "", err
	}
	cb, err := site.ReadClusterBundle(p.path("bundles", "cluster"))
	if err != nil {
		return "", err
	}
	if cb.HostsKey == "" {
		return "", fmt.Errorf("the cluster bundle has no hosts key (provisioned by an older cairn): run cairn provision apply --infra nspawn again")
	}
	key, err := rfc2136.ReadKey(p.path("bundles", "cluster", "secrets", path.Base(cb.HostsKey)))
	if err != nil {
		return "", fmt.Errorf("client hosts: %w", err)
	}
	spec := p.o.Spec
	fqdn := name + "." + spec.ACME.Zone
	c := rfc2136.Client{Server: spec.PrimaryDNS().String(), Key: key, TCP: true}
	uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.SetA(uctx, spec.ACME.Zone, fqdn, addr, uint32(spec.ACME.TTL)); err != nil {
		return "", fmt.Errorf("client host %s: its record %s: %w", name, fqdn, err)
	}
	return fqdn, nil
}

// clientHostID is the client host a drill's client name gets: the name
// itself when it can name a host (it names interfaces: 13 characters),
// else "c" and a digest of it.
func clientHostID(name string) string {
	if clientNameRE.MatchString(name) {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "c" + hex.EncodeToString(sum[:6])
}

// clientAddress is client host name's address: the one it has, or the
// highest free one of the first IPv4 client network.
func (p *Provisioner) clientAddress(name string) (netip.Addr, error) {
	if b, err := os.ReadFile(path.Join(p.path("clients", name), "address")); err == nil {
		return netip.ParseAddr(strings.TrimSpace(string(b)))
	}
	n := p.clientNetwork()
	if !n.IsValid() {
		return netip.Addr{}, fmt.Errorf("validation.allowedNetworks lists no IPv4 network for client hosts (the sites' VAs connect only there): add one inside the hosts' network and provision apply again")
	}
	taken := map[netip.Addr]bool{}
	for _, c := range p.Clients() {
		if b, err := os.ReadFile(path.Join(p.path("clients", c), "address")); err == nil {
			if a, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil {
				taken[a] = true
			}
		}
	}
	for a := lastAddr(n).Prev(); a.IsValid() && n.Contains(a) && a != n.Addr(); a = a.Prev() {
		if !taken[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("validation.allowedNetworks %s: every address has a client host", n)
}

// lastAddr is the last address of IPv4 network n (its broadcast).
func lastAddr(n netip.Prefix) netip.Addr {
	b := n.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | (uint32(1)<<(32-n.Bits()) - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ClientNetwork is where client hosts get their addresses: the first
// IPv4 network of validation.allowedNetworks (none: no client hosts).
func (d *DrillInfra) ClientNetwork() netip.Prefix {
	if d.p.o.Infra != "nspawn" {
		return netip.Prefix{}
	}
	return d.p.clientNetwork()
}

// clientNetwork is the first IPv4 network of validation.allowedNetworks
// (invalid: none), where client hosts get their addresses.
func (p *Provisioner) clientNetwork() netip.Prefix {
	nets := clientNetworks(p.o.Spec)
	if len(nets) == 0 {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(nets[0])
}

// ExecHost is argv run in client host name's network, as the lab's
// client hosts run theirs: this machine's files (the drill reads what the
// client writes), with the cluster's primary DNS server as resolver and
// the system's roots plus the cluster root as trust bundle bound over
// the system's in a private mount namespace; DNS-01 through the primary
// with the clients' TSIG key.
func (d *DrillInfra) ExecHost(ctx context.Context, name string, argv []string) (*exec.Cmd, error) {
	h := d.p.clientHost(clientHostID(name))
	if !netnsExists(h.Netns()) {
		return nil, fmt.Errorf("client host %s is not up", h.Name)
	}
	ce := d.clientEnv()
	if ce.err != nil {
		return nil, ce.err
	}
	full := append([]string{"ip", "netns", "exec", h.Netns()}, acmecli.WithResolverAndRoots(ce.resolv, ce.bundle, acmecli.SystemCAs, argv)...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = ce.env
	return cmd, nil
}

// clientEnvironment is what every client host's command shares: its
// resolv.conf and trust bundle (written once per drill) and environment.
type clientEnvironment struct {
	resolv, bundle string
	env            []string
	err            error
}

// clientEnv makes the client hosts' environment on first use.
func (d *DrillInfra) clientEnv() clientEnvironment {
	d.clientOnce.Do(func() {
		spec := d.p.o.Spec
		ce := &d.client
		key, err := rfc2136.ReadKey(spec.Path(spec.DNS.TSIG.ClientKeyFile))
		if err != nil {
			ce.err = fmt.Errorf("the clients' TSIG key: %w", err)
			return
		}
		dir := d.p.path("clients")
		ce.resolv, ce.bundle = path.Join(dir, "resolv.conf"), path.Join(dir, "ca-certificates.crt")
		primary := spec.PrimaryDNS()
		if ce.err = fsutil.WriteFileAtomic(ce.resolv, acmecli.ResolvConf(primary.Addr().String()), 0o644); ce.err != nil {
			return
		}
		if ce.err = acmecli.WriteRoots(ce.bundle, spec.Path(path.Join(spec.PKI.Dir, "public", "root.cert.pem"))); ce.err != nil {
			return
		}
		ce.env = acmecli.Lego5Env(append(os.Environ(), acmecli.RootsEnv(ce.bundle)...), ce.bundle, primary.String(), spec.ACME.Zone, key)
	})
	return d.client
}

// hiddenSuffix marks a site's token directory a drill moved away.
const hiddenSuffix = ".cairn-drill-hidden"

// HideToken moves the site's SoftHSM token directory away on its host
// (hidden) or back.
func (d *DrillInfra) HideToken(ctx context.Context, site string, hidden bool) error {
	h, ok := d.hosts[site]
	if !ok || site == "cluster" {
		return fmt.Errorf("no provisioned site %q", cluster.Excerpt(site))
	}
	from, to := hostTokenDir, hostTokenDir+hiddenSuffix
	if !hidden {
		from, to = to, from
	}
	// Idempotent: only what is there moves.
	_, err := h.run(ctx, "", "sh", "-c", `if [ -e "$1" ]; then mv "$1" "$2"; fi`, "sh", from, to)
	if err != nil {
		return fmt.Errorf("site %s: move %s to %s: %w", site, from, to, err)
	}
	return nil
}

// Partition cuts (on) or heals the site's host from everything outside
// network: an nftables table of the drill's on the host drops every
// packet in or out that is not between the host and network. Only hosts
// entered without the network can be partitioned (nspawn): over SSH the
// drill would cut its own way back.
func (d *DrillInfra) Partition(ctx context.Context, site, network, table string, on bool) error {
	h, ok := d.hosts[site]
	if !ok || site == "cluster" {
		return fmt.Errorf("no provisioned site %q", cluster.Excerpt(site))
	}
	if !d.nsenter {
		return fmt.Errorf("partition: the hosts are reached over the network the fault cuts; partition them with your own firewall")
	}
	script := fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", table)
	if on {
		script += fmt.Sprintf(`table inet %[1]s {
 chain in { type filter hook input priority -10; policy accept; iif "lo" accept; ip saddr %[2]s accept; drop; }
 chain out { type filter hook output priority -10; policy accept; oif "lo" accept; ip daddr %[2]s accept; drop; }
}
`, table, network)
	}
	if _, err := h.run(ctx, script, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("site %s: nft: %w", site, err)
	}
	return nil
}

// PowerOff cuts the power of the site's host (drill.HostPower): nspawn
// hosts only, which cairn can switch on again.
func (d *DrillInfra) PowerOff(_ context.Context, site string) error {
	h, err := d.nspawnHost(site)
	if err != nil {
		return err
	}
	return h.PowerOff()
}

// CanPowerOff refuses, before a drill starts, a site whose host is no
// nspawn host of cairn's.
func (d *DrillInfra) CanPowerOff(site string) error {
	_, err := d.nspawnHost(site)
	return err
}

// CanDestroy refuses, before a drill starts, a site whose host is no
// nspawn host of cairn's (drill.SiteLoss): a drill replaces only a disk
// cairn made.
func (d *DrillInfra) CanDestroy(site string) error {
	if _, err := d.nspawnHost(site); err != nil {
		return fmt.Errorf("destroy: cairn replaces only its own nspawn hosts' disks; site %s is on --infra %s: replace its host with your provider, then run cairn site rebuild %s --infra %s",
			site, d.p.o.Infra, site, d.p.o.Infra)
	}
	return nil
}

// DestroySite loses the site's host's disk: the host switched off, its
// disk replaced by a blank one of the same image, switched on again
// (NspawnHost.LoseDisk): it runs no cairn and holds no database.
func (d *DrillInfra) DestroySite(site string) error {
	h, err := d.nspawnHost(site)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return h.LoseDisk(ctx)
}

// LatestBackup is the newest backup of the site the controller's host
// holds (its manifest's name: the stamp).
func (d *DrillInfra) LatestBackup(ctx context.Context, site string) (backup.Manifest, error) {
	out, err := d.hosts["cluster"].run(ctx, "", "sh", "-c", d.p.storeListingScript())
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("asking the controller's host for its backups: %w", err)
	}
	stamp, ok := controllerBackups(out)[site]
	if !ok {
		return backup.Manifest{}, backup.ErrNoBackup
	}
	m := backup.Manifest{Site: site, File: stamp + ".xb.gz"}
	m.Taken, _ = time.Parse(backup.StampFormat, stamp)
	return m, nil
}

// SiteDatabaseExists says whether the site's host holds a database.
func (d *DrillInfra) SiteDatabaseExists(name string) bool {
	b, err := site.ReadBundle(d.p.path("bundles", name))
	h, ok := d.hosts[name]
	if err != nil || !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := h.run(ctx, "", "sh", "-c", hasDatabaseScript(b))
	return err == nil && strings.TrimSpace(out) == "yes"
}

// StartSites starts every site's units (what of them runs is left alone).
func (d *DrillInfra) StartSites(ctx context.Context) error {
	var errs []error
	for _, s := range d.p.o.Spec.Sites {
		var units []string
		for _, p := range d.procs[s.Name] {
			units = append(units, "cairn-"+p+".service")
		}
		if _, err := d.hosts[s.Name].run(ctx, "", append([]string{"systemctl", "start"}, units...)...); err != nil {
			errs = append(errs, fmt.Errorf("site %s: systemctl start: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Rebuild is `cairn site rebuild` of the site on the provisioned hosts.
func (d *DrillInfra) Rebuild(site string, restored func(ctx context.Context, site string) error, log io.Writer) (*backup.Rebuild, error) {
	rb, _, err := d.p.Rebuild(context.Background(), site, restored, log)
	return rb, err
}

// Output is where the rebuild's progress goes.
func (d *DrillInfra) Output() io.Writer { return d.p.o.Log }

// PowerOn switches the site's host on again and waits until it booted.
func (d *DrillInfra) PowerOn(ctx context.Context, site string) error {
	h, err := d.nspawnHost(site)
	if err != nil {
		return err
	}
	return h.PowerOn(ctx)
}

func (d *DrillInfra) nspawnHost(site string) (NspawnHost, error) {
	sh, ok := d.hosts[site]
	if !ok || site == "cluster" {
		return NspawnHost{}, fmt.Errorf("no provisioned site %q", cluster.Excerpt(site))
	}
	ns, ok := sh.(nsenterShell)
	if !ok {
		return NspawnHost{}, fmt.Errorf("poweroff: cairn switches only its own nspawn hosts off and on; site %s is on --infra %s: cut its host's power with your provider's console or API", site, d.p.o.Infra)
	}
	return ns.h, nil
}

// hostControllerSpec is, on the controller's host, the state directory
// systemd binds over the controller's spec kit (hostCluster/spec): its
// probe history is there (cairn_common_state_by_name in the Ansible
// role's vars: controller: [spec]).
const hostControllerSpec = "/var/lib/cairn-controller/spec"

// ControllerCLI runs `cairn ARGS…` on the controller's host as the
// controller's own user, with its copy of the spec (where its backups
// are: `cairn backup list|now --infra`), and returns its output.
func (d *DrillInfra) ControllerCLI(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"runuser", "-u", hostControllerUser, "--", HostRoot + "/bin/cairn", "-f", path.Join(hostControllerSpec, filepath.Base(d.p.o.Spec.File))}, args...)
	out, err := d.hosts["cluster"].run(ctx, "", argv...)
	if err != nil {
		return out, fmt.Errorf("on the controller's host: cairn %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// hostControllerUser is the controller's unit's user.
const hostControllerUser = "cairn-controller"

// ProbeSamples are the controller's probe results since from, read on
// its host (`cairn report samples` over the controller's history).
func (d *DrillInfra) ProbeSamples(ctx context.Context, from time.Time) ([]healthcheck.Sample, error) {
	h := d.hosts["cluster"]
	out, err := h.run(ctx, "", HostRoot+"/bin/cairn", "report", "samples", "-o", "json",
		"--history", path.Join(hostControllerSpec, healthcheck.HistoryFile), "--from", from.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return nil, fmt.Errorf("the controller's probe history: %w", err)
	}
	var samples []healthcheck.Sample
	return samples, json.Unmarshal([]byte(out), &samples)
}

// DrillFromOperator is argv run from the operator's vantage for a drill,
// and whether it must run so (this process is elsewhere): in the switch
// namespace's network only (nsenter --net), keeping this machine's mount
// namespace, so the client hosts the drill makes there (network
// namespaces bound under /run/netns) are everyone's.
func (p *Provisioner) DrillFromOperator(argv []string) ([]string, bool) {
	ns := p.infra.OperatorNetns()
	if ns == "" || sameNetns("/run/netns/"+ns) {
		return argv, false
	}
	return append([]string{"nsenter", "--net=/run/netns/" + ns, "--"}, argv...), true
}

// sameNetns says whether this process is in the network namespace bound
// at file.
func sameNetns(file string) bool {
	var a, b syscall.Stat_t
	if !fsutil.Exists(file) || syscall.Stat(file, &a) != nil || syscall.Stat("/proc/self/ns/net", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}
