package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// The cluster's own services live outside every site: the authoritative
// DNS for the cluster zone (a BIND primary that takes RFC 2136 updates and a
// Knot secondary fed by NOTIFY and zone transfer) and the HTTP front that
// publishes the root certificate and CRL.

// ClusterOptions for RenderCluster.
type ClusterOptions struct {
	Spec *cluster.Spec
	// Out is where the cluster bundle is written (the lab: <dir>/cluster).
	Out string
	// PublicDir holds root.der, root.crl, … to serve at pki.baseURL.
	PublicDir string
	// SpecFile is the spec the failover controller reads; empty: the
	// bundle has no controller.
	SpecFile string
	// Root is where the bundle will live on the target host; every path in
	// the configs uses it. Empty means Out (the lab).
	Root string
	// Prometheus: run the lab's Prometheus (spec.Monitoring) in the bundle.
	Prometheus bool
	// BinDir, if set, is where the target host has the Boulder binaries
	// (the controller's admin tool): CAIRN_BOULDER_BIN of the controller.
	BinDir string
	// ClientHosts: render the hosts key (HostsKey) although the bundle
	// runs elsewhere: the rehearsal hosts of --infra nspawn, where drills
	// give their client hosts names below the zone as the lab does. The
	// lab always has it; production clusters never.
	ClientHosts bool
}

// ClusterBundle is the rendered cluster DNS and PKI front.
type ClusterBundle struct {
	Root          string    `json:"root"`
	Zone          string    `json:"zone"`
	BindAddresses []string  `json:"bindAddresses"`
	Processes     []Process `json:"processes"`
	// ControllerKey and ClientKey are TSIG key files (tsig-keygen format).
	ControllerKey string `json:"controllerKey"`
	ClientKey     string `json:"clientKey"`
	// HostsKey (the lab, and --infra nspawn's rehearsal hosts) may write
	// A and AAAA records of client hosts below the zone, never one of the
	// cluster's own names.
	HostsKey  string `json:"hostsKey,omitempty"`
	EpochName string `json:"epochName"`
	// Changed names the processes whose configuration this render
	// changed: a running one must restart to apply it (not in bundle.json:
	// it describes one render).
	Changed []string `json:"-"`
	// Controller is the failover controller, started after the sites.
	Controller *Process `json:"controller,omitempty"`
}

// PKIFrontAddr is where the lab serves pki.baseURL.
const pkiFrontPort = 80

// ensureTSIGKey creates the key file (0600) if it does not exist.
func ensureTSIGKey(path, name string) (rfc2136.Key, error) {
	if err := newTSIGKeyFile(path, name); err != nil && !errors.Is(err, fs.ErrExist) {
		return rfc2136.Key{}, err
	}
	return rfc2136.ReadKey(path)
}

// PKIFrontAddr is the address the lab's PKI HTTP front listens on: next to
// the primary DNS server.
func PKIFrontAddr(spec *cluster.Spec) string {
	return Addr(spec.PrimaryDNS().Addr().Next().Next(), pkiFrontPort)
}

// clusterRender is one RenderCluster run: where files go, the keys.
type clusterRender struct {
	o              ClusterOptions
	spec           *cluster.Spec
	ctl, cli, xfr  rfc2136.Key
	hosts          *rfc2136.Key // the lab's client hosts' key (nil elsewhere)
	clients        []ClientKey
	changed        []string
	primary        netip.AddrPort
	secondaries    []netip.AddrPort
	varDir, outVar string
	primaryProc    Process
	policyProc     *Process // BIND's update-policy server
}

func (r *clusterRender) out(parts ...string) string {
	return filepath.Join(append([]string{r.o.Out}, parts...)...)
}

// root is where a path of the bundle lives on its host.
func (r *clusterRender) root(parts ...string) string {
	if r.o.Root == "" {
		return r.out(parts...)
	}
	return filepath.Join(append([]string{r.o.Root}, parts...)...)
}

// RenderCluster writes the cluster DNS and PKI front configuration. The
// zone is only seeded once: after that it lives in the primary's journal
// or database and changes only through RFC 2136 or the provider's API.
func RenderCluster(o ClusterOptions) (*ClusterBundle, error) {
	r := &clusterRender{o: o, spec: o.Spec, primary: o.Spec.PrimaryDNS()}
	r.varDir, r.outVar = r.root("var"), r.out("var")
	r.secondaries = o.Spec.SecondaryDNS()
	steps := []func() error{r.keys, r.dirs}
	if o.Spec.DNS.Provider == cluster.DNSProviderPowerDNS {
		steps = append(steps, r.powerDNS)
	} else {
		steps = append(steps, r.bind)
	}
	steps = append(steps, r.knot, r.pkiFront)
	if o.Prometheus {
		steps = append(steps, r.prometheus)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return r.bundle()
}

// keys makes (once) the controller's, the clients' and the transfer TSIG keys.
func (r *clusterRender) keys() error {
	var err error
	if r.ctl, err = ensureTSIGKey(r.spec.Path(r.spec.DNS.TSIG.ControllerKeyFile), r.spec.Name+"-controller"); err != nil {
		return err
	}
	if r.cli, err = ensureTSIGKey(r.spec.Path(r.spec.DNS.TSIG.ClientKeyFile), r.spec.Name+"-clients"); err != nil {
		return err
	}
	if r.xfr, err = ensureTSIGKey(r.out("secrets", "xfr.key"), r.spec.Name+"-xfr"); err != nil {
		return err
	}
	if r.lab() || r.o.ClientHosts {
		k, err := ensureTSIGKey(r.out("secrets", hostsKeyFile), r.spec.Name+"-hosts")
		if err != nil {
			return err
		}
		r.hosts = &k
	}
	r.clients, err = ClientKeys(r.spec)
	return err
}

// lab reports whether the bundle runs where it is rendered (the lab).
func (r *clusterRender) lab() bool { return r.o.Root == "" || r.o.Root == r.o.Out }

const hostsKeyFile = "hosts.key"

// hostsRules are the update-policy rules of the lab's client hosts' key:
// no cluster name, then A and AAAA records anywhere below the zone.
func (r *clusterRender) hostsRules() string {
	if r.hosts == nil {
		return ""
	}
	out := "    // The lab's client hosts (cairn lab exec --host): A and AAAA records\n" +
		"    // below the zone, none of the cluster's own names.\n"
	for _, n := range ClusterNames(r.spec) {
		out += fmt.Sprintf("    deny \"%s\" name %s.;\n", r.hosts.Name, n)
	}
	return out + fmt.Sprintf("    grant \"%s\" wildcard *.%s. A AAAA;\n", r.hosts.Name, r.spec.ACME.Zone)
}

// ClusterNames are the names the cluster itself keeps in its zone (name
// servers, the ACME name and its epoch, sites, CRL and PKI hosts): no
// client host may take one.
func ClusterNames(spec *cluster.Spec) []string {
	seen := map[string]bool{}
	var names []string
	for _, line := range strings.Split(seedZone(spec, spec.SecondaryDNS()), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "@" || strings.HasPrefix(f[0], "$") {
			continue
		}
		if n := f[0] + "." + spec.ACME.Zone; !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// PolicyProcess is the cluster process that answers BIND's update-policy
// "external" rule (cmd/cairn: cairn dns update-policy).
const PolicyProcess = "dns-update-policy"

// policySocket is where the policy server listens, and how named.conf
// names it. In the lab: in named's working directory (its "directory"
// option), named relative to it: BIND parses the rule's identity as a DNS
// name, so an absolute path with a label (the text between two dots)
// longer than 63 bytes, as test directories have, is refused. On hosts:
// under /run, which both units see (each unit's var/ is its own state
// directory there); the server's group may connect (named's unit gets
// that group).
func (r *clusterRender) policySocket() (sock, named string, err error) {
	if r.o.Root != "" && r.o.Root != r.o.Out {
		return HostPolicySocket, HostPolicySocket, nil
	}
	sock = r.root("var", "bind", policySocketName)
	if len(sock) >= 108 {
		return "", "", fmt.Errorf("cluster bundle %s: the update-policy socket %s would be %d bytes, longer than a Unix socket path may be (107): use a shorter directory", r.root(), sock, len(sock))
	}
	return sock, policySocketName, nil
}

const policySocketName = "update-policy.sock"

// HostPolicySocket is the policy server's socket on provisioned hosts
// (the unit's RuntimeDirectory).
const HostPolicySocket = "/run/cairn-" + PolicyProcess + "/" + policySocketName

// dirs makes the state directories of every server.
func (r *clusterRender) dirs() error {
	for _, d := range []string{"bind", "run", "logs"} {
		if err := os.MkdirAll(filepath.Join(r.outVar, d), 0o755); err != nil {
			return err
		}
	}
	for i := range r.secondaries {
		for _, d := range []string{"db", "zones"} {
			if err := os.MkdirAll(filepath.Join(r.outVar, fmt.Sprintf("knot%d", i+1), d), 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}

// bind renders the BIND primary: updates from the controller's key for the
// ACME name and its epoch only; from a client's own key for its
// _acme-challenge TXT record only; from the clients' shared key for
// _acme-challenge.* TXT records only, which BIND asks the policy server
// (internal/ssupolicy) about: it has no rule that matches a first label.
func (r *clusterRender) bind() error {
	spec, zone := r.spec, r.spec.ACME.Zone
	sock, namedSock, err := r.policySocket()
	if err != nil {
		return err
	}
	var notify []string
	for _, s := range r.secondaries {
		notify = append(notify, fmt.Sprintf("%s port %d key \"%s\";", s.Addr(), s.Port(), r.xfr.Name))
	}
	keys, grants, crlGrants := "", "", ""
	for _, n := range CRLNames(spec) {
		crlGrants += fmt.Sprintf("    grant \"%s\" name %s. A;\n", r.ctl.Name, n.Name)
	}
	all := []rfc2136.Key{r.ctl, r.cli, r.xfr}
	if r.hosts != nil {
		all = append(all, *r.hosts)
	}
	for _, k := range all {
		keys += fmt.Sprintf("key \"%s\" { algorithm %s; secret \"%s\"; };\n", k.Name, k.Algorithm, k.Secret)
	}
	for _, c := range r.clients {
		keys += fmt.Sprintf("key \"%s\" { algorithm %s; secret \"%s\"; };\n", c.Key.Name, c.Key.Algorithm, c.Key.Secret)
		grants += fmt.Sprintf("    grant \"%s\" name %s. TXT;\n", c.Key.Name, c.Record())
	}
	named := fmt.Sprintf(`// Cluster zone primary, written by cairn.
%[1]soptions {
  directory "%[2]s/bind";
  pid-file "%[2]s/run/named.pid";
  session-keyfile "%[2]s/bind/session.key";
  managed-keys-directory "%[2]s/bind";
  listen-on port %[3]d { %[4]s; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  allow-query { any; };
  notify explicit;
  notify-delay 0;
  notify-source %[4]s;
  also-notify { %[5]s };
};
controls { };
logging {
  channel f { file "%[2]s/logs/named.log" versions 2 size 5m; print-time yes; severity info; };
  category default { f; };
  category queries { null; };
};
zone "%[6]s" {
  type primary;
  file "%[2]s/bind/%[6]s.zone";
  allow-transfer { key "%[7]s"; };
  update-policy {
    // The failover controller may change only the ACME name and its
    // epoch, and the CRL names' addresses (it withdraws a CRL front that
    // does not serve).
    grant "%[8]s" name %[9]s. A AAAA CNAME;
    grant "%[8]s" name %[10]s. TXT;
%[15]s    // A client's own key (cairn dns key add) writes its DNS-01 record only.
%[11]s%[14]s    // Everything else is asked of cairn's policy server: the clients'
    // shared key (%[12]s) may write _acme-challenge.* TXT records only;
    // any other key, name or type is refused, and so is every update
    // while the server is down.
    grant "local:%[13]s" external * TXT;
  };
};
`, keys, r.varDir, r.primary.Port(), r.primary.Addr(), strings.Join(notify, " "), zone, r.xfr.Name, r.ctl.Name, spec.ACME.Name, spec.EpochName(), grants, r.cli.Name, namedSock, r.hostsRules(), crlGrants)
	if err := r.writeConfig([]string{PolicyProcess, "dns-primary"}, r.out("secrets", "named.conf"), []byte(named), 0o600); err != nil {
		return err
	}
	zoneFile := filepath.Join(r.outVar, "bind", zone+".zone")
	if !fsutil.Exists(zoneFile) {
		if err := fsutil.WriteFileAtomic(zoneFile, []byte(seedZone(spec, r.secondaries)), 0o644); err != nil {
			return err
		}
	}
	r.primaryProc = Process{Name: "dns-primary", Program: "named", Args: []string{"-c", r.root("secrets", "named.conf"), "-f"}}
	r.policyProc = &Process{Name: PolicyProcess, Program: "cairn", Args: []string{"dns", "update-policy", "--socket", sock, "--zone", zone, "--key", r.cli.Name},
		Ready: "unix:" + sock, Listen: "unix:" + sock}
	return nil
}

// writeConfig writes a configuration file and, when its content changed,
// records procs as changed (a running one must restart to read it).
func (r *clusterRender) writeConfig(procs []string, path string, data []byte, perm fs.FileMode) error {
	if old, err := os.ReadFile(path); err != nil || string(old) != string(data) {
		r.changed = append(r.changed, procs...)
	}
	return fsutil.WriteFileAtomic(path, data, perm)
}

// knot renders one Knot secondary per secondary server, fed by NOTIFY
// and zone transfers signed with the transfer key.
func (r *clusterRender) knot() error {
	for i, s := range r.secondaries {
		knot := fmt.Sprintf(`# Cluster zone secondary %[1]d, written by cairn.
server:
  rundir: "%[2]s/knot%[1]d"
  listen: %[3]s@%[4]d
log:
  - target: "%[2]s/logs/knot%[1]d.log"
    any: info
database:
  storage: "%[2]s/knot%[1]d/db"
key:
  - id: %[5]s
    algorithm: %[6]s
    secret: %[7]s
remote:
  - id: primary
    address: %[8]s@%[9]d
    via: %[3]s
    key: %[5]s
acl:
  - id: notify_from_primary
    address: %[8]s
    key: %[5]s
    action: notify
template:
  - id: default
    storage: "%[2]s/knot%[1]d/zones"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: all
zone:
  - domain: %[10]s
    master: primary
    acl: notify_from_primary
`, i+1, r.varDir, s.Addr(), s.Port(), r.xfr.Name, r.xfr.Algorithm, r.xfr.Secret, r.primary.Addr(), r.primary.Port(), r.spec.ACME.Zone)
		if err := fsutil.WriteFileAtomic(r.out("secrets", fmt.Sprintf("knot%d.conf", i+1)), []byte(knot), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// pkiFront renders the HTTP front that publishes the root and its CRL.
func (r *clusterRender) pkiFront() error {
	front, _ := json.MarshalIndent(map[string]any{
		"listen": PKIFrontAddr(r.spec),
		"static": map[string]string{"/": r.o.PublicDir},
	}, "", "  ")
	return fsutil.WriteFileAtomic(r.out("etc", "http-front.json"), front, 0o644)
}

// bundle writes bundle.json: the processes in start order.
func (r *clusterRender) bundle() (*ClusterBundle, error) {
	spec := r.spec
	b := &ClusterBundle{Root: r.root(), Zone: spec.ACME.Zone, ControllerKey: spec.Path(spec.DNS.TSIG.ControllerKeyFile),
		ClientKey: spec.Path(spec.DNS.TSIG.ClientKeyFile), EpochName: spec.EpochName(), Changed: r.changed}
	if r.hosts != nil {
		b.HostsKey = r.root("secrets", hostsKeyFile)
	}
	b.BindAddresses = append(b.BindAddresses, r.primary.Addr().String())
	if r.policyProc != nil { // before the server that asks it
		b.Processes = append(b.Processes, *r.policyProc)
	}
	p := r.primaryProc
	p.Ready, p.Listen = "tcp:"+r.primary.String(), r.primary.String()
	b.Processes = append(b.Processes, p)
	for i, s := range r.secondaries {
		b.BindAddresses = append(b.BindAddresses, s.Addr().String())
		b.Processes = append(b.Processes, Process{Name: fmt.Sprintf("dns-secondary%d", i+1), Program: "knotd",
			Args:  []string{"-c", r.root("secrets", fmt.Sprintf("knot%d.conf", i+1))},
			Ready: "tcp:" + s.String(), Listen: s.String()})
	}
	b.Processes = append(b.Processes, Process{Name: "pki-http", Program: FrontProgram,
		Args:  []string{"http-front", "--config", r.root("etc", "http-front.json")},
		Ready: "tcp:" + PKIFrontAddr(spec), Listen: PKIFrontAddr(spec)})
	if r.o.Prometheus {
		b.Processes = append(b.Processes, r.prometheusProcess())
	}
	if r.o.SpecFile != "" {
		b.Controller = &Process{Name: "controller", Program: "cairn", Args: []string{"failover", "run", "-f", r.o.SpecFile},
			Ready: "tcp:" + spec.Failover.Listen, Listen: spec.Failover.Listen}
		if r.o.BinDir != "" {
			b.Controller.Env = []string{boulderbin.EnvDir + "=" + r.o.BinDir}
		}
	}
	if r.o.Root == "" { // the lab, as its sites (LabGOGC, LabGOMAXPROCS)
		for i := range b.Processes {
			b.Processes[i].labEnv()
		}
		if b.Controller != nil {
			b.Controller.labEnv()
		}
	}
	data, _ := json.MarshalIndent(b, "", "  ")
	if err := fsutil.WriteFileAtomic(r.out("bundle.json"), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return b, nil
}

// seedZone is the cluster zone's first content: the ACME name on the site
// with the best priority, a name per site, the CRL and PKI hosts, and the
// CAA record at the apex (the VA checks CAA up to the apex).
func seedZone(spec *cluster.Spec, secondaries []netip.AddrPort) string {
	zone := spec.ACME.Zone
	rel := func(name string) string {
		if name == zone {
			return "@"
		}
		return strings.TrimSuffix(name, "."+zone)
	}
	var b strings.Builder
	serial := time.Now().Unix()
	fmt.Fprintf(&b, "$TTL %d\n@ SOA ns1.%s. hostmaster.%s. %d 3600 600 86400 %d\n", spec.ACME.TTL, zone, zone, serial, spec.ACME.TTL)
	fmt.Fprintf(&b, "@ NS ns1\nns1 A %s\n", spec.PrimaryDNS().Addr())
	for i, s := range secondaries {
		fmt.Fprintf(&b, "@ NS ns%d\nns%d A %s\n", i+2, i+2, s.Addr())
	}
	fmt.Fprintf(&b, "@ CAA 0 issue \"%s\"\n", spec.ACME.CAAIdentity)
	sites := append([]cluster.Site(nil), spec.Sites...)
	sort.SliceStable(sites, func(i, j int) bool { return sites[i].Priority < sites[j].Priority })
	fmt.Fprintf(&b, "%s A %s\n", rel(spec.ACME.Name), sites[0].Address)
	fmt.Fprintf(&b, "%s TXT \"epoch=0; site=%s; controller=seed; reason=initial\"\n", rel(spec.EpochName()), sites[0].Name)
	for i := range spec.Sites {
		if p, err := NewPlan(spec, i); err == nil {
			fmt.Fprintf(&b, "%s A %s\n", rel(p.SiteName()), p.Public)
		}
	}
	for _, n := range CRLNames(spec) {
		for _, f := range n.Fronts {
			fmt.Fprintf(&b, "%s A %s\n", rel(n.Name), f.Addr)
		}
	}
	if host := pkiHost(spec); strings.HasSuffix(host, "."+zone) {
		fmt.Fprintf(&b, "%s A %s\n", rel(host), netip.MustParseAddrPort(PKIFrontAddr(spec)).Addr())
	}
	return b.String()
}

// CRLName is a site's CRL host in the cluster zone and the CRL fronts
// its A records list.
type CRLName struct {
	Name   string
	Site   string
	Fronts []CRLFront // the site's own first
}

// CRLFront is one site's CRL front.
type CRLFront struct {
	Site string
	Addr netip.Addr
}

// CRLNames are the CRL hosts the cluster zone holds. Every CRL front
// serves every site's CRLs (each mirrors the others), so each name lists
// every front of the cluster: the site's own first, then the others (a
// front whose CRLs an operator's store publishes is none). The failover
// controller withdraws a front that does not serve from every name and
// puts it back when it does (docs/revocation.md).
func CRLNames(spec *cluster.Spec) []CRLName {
	var plans []*Plan
	for i := range spec.Sites {
		if p, err := NewPlan(spec, i); err == nil {
			plans = append(plans, p)
		}
	}
	var out []CRLName
	for _, p := range plans {
		if !strings.HasSuffix(p.CRLHost(), "."+spec.ACME.Zone) {
			continue
		}
		n := CRLName{Name: p.CRLHost(), Site: p.Site.Name, Fronts: []CRLFront{{Site: p.Site.Name, Addr: p.CRL}}}
		for _, o := range plans {
			if o != p && !o.ExternalCRLStore() {
				n.Fronts = append(n.Fronts, CRLFront{Site: o.Site.Name, Addr: o.CRL})
			}
		}
		out = append(out, n)
	}
	return out
}

func pkiHost(spec *cluster.Spec) string {
	h := strings.TrimPrefix(strings.TrimPrefix(spec.PKI.BaseURL, "http://"), "https://")
	h, _, _ = strings.Cut(h, "/")
	return h
}

// ReadClusterBundle reads the cluster bundle manifest.
func ReadClusterBundle(dir string) (*ClusterBundle, error) {
	b, err := os.ReadFile(filepath.Join(dir, "bundle.json"))
	if err != nil {
		return nil, err
	}
	var cb ClusterBundle
	return &cb, json.Unmarshal(b, &cb)
}

// All is every process of the cluster bundle, the controller last.
func (b *ClusterBundle) All() []Process {
	all := append([]Process(nil), b.Processes...)
	if b.Controller != nil {
		all = append(all, *b.Controller)
	}
	return all
}
