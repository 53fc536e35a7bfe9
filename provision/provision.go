package provision

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
	"go.yaml.in/yaml/v3"

	cairnansible "github.com/cairn-pki/cairn/ansible"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// Where things go on a host.
const (
	HostRoot     = "/opt/cairn"
	hostSite     = HostRoot + "/site"
	hostCluster  = HostRoot + "/cluster"
	hostTokenDir = HostRoot + "/softhsm/tokens"
)

// Dir is cairn provision's working directory under the spec directory:
// Terraform state, rendered bundles, archives, inventory. It holds
// secrets (0700).
const Dir = "provision"

// Options of one provisioning run.
type Options struct {
	Spec  *cluster.Spec
	Infra string // local, nspawn, aws or existing
	// TerraformDir: the root module for --infra aws (one that composes
	// terraform/aws's modules and outputs the contract).
	TerraformDir string
	// Inventory: the contract (sites, dns_servers) of existing hosts, as
	// YAML or JSON, for --infra existing.
	Inventory string
	// Gateway: the operator's address on the hosts' bridge (local, nspawn).
	Gateway string
	// ImageCache: where --infra nspawn keeps the hosts' root filesystem
	// (default ~/.cache/cairn/nspawn); Mirror: the Debian mirror it is
	// made from (default: apt's).
	ImageCache, Mirror string
	Self               string // the cairn binary
	Log                io.Writer
}

// Result says what apply did and how long each part took.
type Result struct {
	Outputs   *Outputs
	Terraform time.Duration
	Render    time.Duration
	Ansible   map[string]time.Duration // per host
	Checks    map[string]string        // per site: "ok" or the failure
	Total     time.Duration
}

// Provisioner drives Terraform and Ansible for one cluster.
type Provisioner struct {
	o     Options
	dir   string
	infra Infrastructure
}

// New checks the options and picks the infrastructure; errors name the flag.
func New(o Options) (*Provisioner, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	p := &Provisioner{o: o, dir: o.Spec.Path(Dir)}
	mk, ok := infrastructures[o.Infra]
	if !ok {
		return nil, fmt.Errorf("--infra %q: use %s", cluster.Excerpt(o.Infra), InfrastructureNames())
	}
	infra, err := mk(p)
	if err != nil {
		return nil, err
	}
	p.infra = infra
	return p, nil
}

func (p *Provisioner) logf(format string, args ...any) {
	fmt.Fprintf(p.o.Log, format+"\n", args...)
}

func (p *Provisioner) path(parts ...string) string {
	return filepath.Join(append([]string{p.dir}, parts...)...)
}

// mkdir makes the working directory, private: it holds secrets.
func (p *Provisioner) mkdir() error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(p.dir, 0o700)
}

// cluster prefix of namespace names: short, from the spec's name.
func (p *Provisioner) prefix() string {
	var b strings.Builder
	for _, r := range strings.ToLower(p.o.Spec.Name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if s == "" || s[0] < 'a' {
		s = "c" + s
	}
	return s[:min(len(s), 8)]
}

// writeFS copies an embedded tree (dir within fsys) to dst.
func writeFS(fsys fs.FS, dir, dst string) error {
	return fs.WalkDir(fsys, dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		return fsutil.WriteFileAtomic(target, b, 0o644)
	})
}

// terraform prepares Terraform in the root module wd, its output to out.
func (p *Provisioner) terraform(ctx context.Context, wd string, out io.Writer) (*tfexec.Terraform, error) {
	if err := p.mkdir(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("terraform")
	if err != nil {
		return nil, fmt.Errorf("terraform not found on PATH (cairn never downloads it): install Terraform 1.x")
	}
	tf, err := tfexec.NewTerraform(wd, bin)
	if err != nil {
		return nil, err
	}
	// Terraform's whole environment (SetEnv replaces it): ours, without
	// what terraform-exec sets itself (SetEnv refuses those, and then the
	// process environment would be used), with a CLI configuration of our
	// own unless the user has one, so nothing asks the registry and no
	// warning about a missing ~/.terraformrc appears.
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	env = tfexec.CleanEnv(env)
	if rc := env["TF_CLI_CONFIG_FILE"]; rc == "" || !fsutil.Exists(rc) {
		rc = p.path("terraformrc")
		if err := fsutil.WriteFileAtomic(rc, []byte("disable_checkpoint = true\n"), 0o644); err != nil {
			return nil, err
		}
		env["TF_CLI_CONFIG_FILE"] = rc
	}
	if err := tf.SetEnv(env); err != nil {
		return nil, fmt.Errorf("terraform environment: %w", err)
	}
	tf.SetStdout(out)
	tf.SetStderr(out)
	if err := tf.Init(ctx); err != nil {
		return nil, fmt.Errorf("terraform init in %s: %w", wd, err)
	}
	return tf, nil
}

type localHost struct {
	Role     string   `json:"role"`
	Address  string   `json:"address"`
	Extra    []string `json:"extra"`
	Local    []string `json:"local"`
	OnLink   []string `json:"onlink,omitempty"` // --infra local only
	Location string   `json:"location"`
}

// localHosts: one host per site (its service network local to it), and
// one cluster host for the DNS servers and the PKI front (their /24).
func (p *Provisioner) localHosts() (map[string]localHost, error) {
	spec := p.o.Spec
	hosts := map[string]localHost{}
	for i, s := range spec.Sites {
		if s.ServiceNetwork == "" {
			return nil, fmt.Errorf("sites[%d].serviceNetwork: required for --infra local (the host's own addresses)", i)
		}
		if s.Name == "dns" {
			return nil, fmt.Errorf("sites[%d].name: dns is the local DNS host's name; rename the site", i)
		}
		plan, err := site.NewPlan(spec, i)
		if err != nil {
			return nil, err
		}
		// The CRL front answers at the CRL URL in certificates.
		hosts[s.Name] = localHost{Role: "site", Address: s.Address, Extra: []string{plan.CRL.String()}, Local: []string{s.ServiceNetwork}, Location: "local"}
	}
	primary := spec.PrimaryDNS().Addr()
	net24, _ := primary.Prefix(24)
	// Every DNS server, the PKI front and the failover controller are
	// reachable on the cluster host.
	extra := []string{netip.MustParseAddrPort(site.PKIFrontAddr(spec)).Addr().String()}
	if ctl, err := netip.ParseAddrPort(spec.Failover.Listen); err == nil && net24.Contains(ctl.Addr()) && ctl.Addr() != primary && !slices.Contains(extra, ctl.Addr().String()) {
		extra = append(extra, ctl.Addr().String())
	}
	for _, s := range spec.DNS.Servers {
		a, err := netip.ParseAddrPort(s.Address)
		if err != nil || !net24.Contains(a.Addr()) {
			return nil, fmt.Errorf("dns.servers: for --infra local every DNS server must be in %s with the primary (one cluster host)", net24)
		}
		if a.Addr() != primary {
			extra = append(extra, a.Addr().String())
		}
	}
	if g, _ := netip.ParseAddr(p.o.Gateway); net24.Contains(g) {
		return nil, fmt.Errorf("--gateway %s is inside the cluster host's %s: choose another address", g, net24)
	}
	hosts["dns"] = localHost{Role: "dns-primary", Address: primary.String(), Extra: extra, Local: []string{net24.String()}, Location: "local"}
	return hosts, nil
}

// outputs makes the hosts (or reads them) and returns the contract.
func (p *Provisioner) outputs(ctx context.Context) (*Outputs, error) {
	return p.infra.Apply(ctx)
}

// checkAddresses: every site of the spec has a host whose addresses
// include the site's address, and the primary DNS server is a DNS host.
func (p *Provisioner) checkAddresses(out *Outputs) error {
	for i, s := range p.o.Spec.Sites {
		h, ok := out.Sites[s.Name]
		if !ok {
			return fmt.Errorf("sites[%d] (%s): the infrastructure has no host for it (Terraform output sites)", i, s.Name)
		}
		if !slices.Contains(h.Addresses, s.Address) {
			return fmt.Errorf("sites[%d].address %s: not an address of its host %v; put the host's address in cairn.yaml", i, s.Address, h.Addresses)
		}
	}
	if len(out.DNSServers) == 0 {
		return fmt.Errorf("the infrastructure has no DNS host (Terraform output dns_servers)")
	}
	return nil
}

// tarDir writes dir as a .tar.gz (0600: bundles hold secrets), owned by
// root; only directories and regular files.
func tarDir(dir, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = rel
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// hostVars are one host's inventory variables.
type hostVars map[string]any

// render writes every bundle for its host, the archives and the
// inventory, and links the binaries; it returns the inventory's path.
func (p *Provisioner) render(ctx context.Context, out *Outputs) (string, error) {
	spec := p.o.Spec
	// The cluster bundle goes to the primary DNS host; its PKI front
	// serves the public directory the controller kit carries.
	cdir := p.path("bundles", "cluster")
	r, err := site.RenderAll(ctx, site.AllOptions{Spec: spec, Log: p.o.Log, Binaries: []string{"boulder", "ct-test-srv", "s3-test-srv", "admin"}, Self: p.o.Self, BinDir: HostRoot + "/bin",
		ClusterOut: cdir, ClusterRoot: hostCluster, PublicDir: filepath.Join(hostCluster, "spec", spec.PKI.Dir, "public"),
		SpecFile: hostCluster + "/spec/" + filepath.Base(spec.File),
		SiteOut:  func(name string) string { return p.path("bundles", name) }, SiteRoot: hostSite, TokenDir: hostTokenDir,
		// The nspawn hosts rehearse on this machine: drills give their
		// client hosts names below the zone (a hosts key), as in the lab.
		ClientHosts: p.o.Infra == "nspawn"})
	if err != nil {
		return "", err
	}
	defer r.Close()
	binDir, err := p.linkBinaries(r.Bins, "bin")
	if err != nil {
		return "", err
	}
	inv := map[string]map[string]hostVars{"cluster": {}, "sites": {}}
	for i, s := range spec.Sites {
		hv, err := p.packageSite(r.PKI, i, out.Sites[s.Name])
		if err != nil {
			return "", err
		}
		// A site an upgrade moved to another Boulder release keeps it.
		if v := r.Sites[i].BoulderVersion; v != boulderbin.Version {
			if hv["cairn_bin_dir"], err = p.releaseBinDir(ctx, v); err != nil {
				return "", err
			}
		}
		inv["sites"][s.Name] = hv
	}
	name, hv, err := p.clusterHost(cdir, out.DNSServers[0])
	if err != nil {
		return "", err
	}
	inv["cluster"][name] = hv
	path := p.path("inventory.yml")
	// The controller runs on the primary DNS host: the only address the
	// sites' agents answer (nftables on each site host). The sites'
	// addresses are the only ones their nonce services answer.
	var siteAddrs []string
	for _, s := range p.o.Spec.Sites {
		siteAddrs = append(siteAddrs, s.Address)
	}
	return path, writeInventory(path, map[string]any{"cairn_bin_dir": binDir,
		"cairn_controller_addresses": []string{hostOf(out.DNSServers[0].Address)}, "cairn_site_addresses": siteAddrs}, inv)
}

// linkBinaries links the binaries the hosts get into the directory name
// of the working directory and returns its path.
func (p *Provisioner) linkBinaries(bins map[string]string, name string) (string, error) {
	binDir := p.path(name)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	front, err := site.FrontNextTo(p.o.Self)
	if err != nil {
		return "", err
	}
	for name, path := range map[string]string{"boulder": bins["boulder"], "ct-test-srv": bins["ct-test-srv"], "s3-test-srv": bins["s3-test-srv"], "admin": bins["admin"], "cairn": p.o.Self, site.FrontProgram: front} {
		link := filepath.Join(binDir, name)
		os.Remove(link)
		if err := os.Symlink(path, link); err != nil {
			return "", err
		}
	}
	return binDir, nil
}

// packageSite archives site i's rendered bundle and its SoftHSM tokens,
// and returns the inventory variables of its host h.
func (p *Provisioner) packageSite(pki *intermediates.PKI, i int, h Host) (hostVars, error) {
	s := p.o.Spec.Sites[i]
	sdir := p.path("bundles", s.Name)
	tok, err := pki.SiteToken(s.Name)
	if err != nil {
		return nil, err
	}
	if tok.SoftHSMTokenDir == "" {
		return nil, fmt.Errorf("sites[%d].hsm: provisioning installs SoftHSM tokens only; with a network HSM configure the module on the host", i)
	}
	if err := tarDir(tok.SoftHSMTokenDir, p.path("archives", s.Name+"-tokens.tar.gz")); err != nil {
		return nil, err
	}
	if err := tarDir(sdir, p.path("archives", s.Name+".tar.gz")); err != nil {
		return nil, err
	}
	return p.siteVars(s.Name, h)
}

// siteVars are the inventory variables of site name's host h: how Ansible
// reaches it and the archives packageSite made.
func (p *Provisioner) siteVars(name string, h Host) (hostVars, error) {
	hv, err := connVars(h.Connection, h.Addresses[0])
	if err != nil {
		return nil, err
	}
	hv["cairn_bundle_kind"], hv["cairn_bundle_archive"], hv["cairn_bundle_json"] = "site", p.path("archives", name+".tar.gz"), p.path("bundles", name, "bundle.json")
	hv["softhsm_tokens_archive"] = p.path("archives", name+"-tokens.tar.gz")
	return hv, nil
}

// clusterHost completes the cluster bundle in cdir with the controller
// kit, archives it, and returns the name and inventory variables of the
// primary DNS host that gets it.
func (p *Provisioner) clusterHost(cdir string, primary DNSServer) (string, hostVars, error) {
	if err := controllerKit(p.o.Spec, filepath.Join(cdir, "spec")); err != nil { // after the TSIG keys and the sites' database secrets exist
		return "", nil, err
	}
	hv, err := connVars(primary.Connection, hostOf(primary.Address))
	if err != nil {
		return "", nil, err
	}
	if err := tarDir(cdir, p.path("archives", "cluster.tar.gz")); err != nil {
		return "", nil, err
	}
	hv["cairn_bundle_kind"], hv["cairn_bundle_archive"], hv["cairn_bundle_json"] = "cluster", p.path("archives", "cluster.tar.gz"), filepath.Join(cdir, "bundle.json")
	return primary.Name, hv, nil
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// connVars are the inventory variables that say how Ansible reaches a host.
func connVars(c Connection, addr string) (hostVars, error) {
	switch c.Type {
	case "ssh":
		return hostVars{"ansible_host": addr, "ansible_user": c.User, "ansible_port": c.Port, "ansible_become": c.User != "root"}, nil
	case "local":
		return hostVars{"ansible_connection": "local"}, nil
	}
	if c.Machine != "" {
		pid, ok := nspawnLeader(c.State, c.Machine)
		if !ok {
			return nil, fmt.Errorf("nspawn host %s is not up (no container from %s)", c.Machine, c.State)
		}
		return hostVars{"ansible_connection": nsenterConnection, "ansible_nsenter_pid": pid}, nil
	}
	pid, ok := NSHost{Name: filepath.Base(c.State), StateDir: c.State}.AnchorPID()
	if !ok {
		return nil, fmt.Errorf("namespace host %s is not up (no anchor in %s)", c.Netns, c.State)
	}
	return hostVars{"ansible_connection": nsenterConnection, "ansible_nsenter_pid": pid}, nil
}

// nsenterConnection is Ansible's connection into nspawn and namespace
// hosts: community.docker.nsenter with pipelining
// (ansible/connection_plugins/cairn_nsenter.py), one nsenter per module
// instead of four or five.
const nsenterConnection = "cairn_nsenter"

// writeInventory writes the groups cluster and sites (0600).
func writeInventory(path string, vars map[string]any, inv map[string]map[string]hostVars) error {
	doc := map[string]any{"all": map[string]any{
		"vars":     vars,
		"children": map[string]any{"cluster": map[string]any{"hosts": inv["cluster"]}, "sites": map[string]any{"hosts": inv["sites"]}},
	}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, b, 0o600)
}

// controllerKit copies what the failover controller reads into dst, with
// the spec's own layout: the spec, the PKI's certificates and state (no
// key, no HSM token, no PIN), the TSIG keys, the admin token, the probe
// account keys and its credential for each site's agent (revocations). The controller keeps its own state (etcd, probe history)
// under it on the host.
func controllerKit(spec *cluster.Spec, dst string) error {
	// The admin token and the probe account key are made here, so the
	// operator's copy and the controller's are the same.
	if _, err := fsutil.EnsureSecret(spec.Path(spec.Failover.AdminTokenFile), 24); err != nil {
		return err
	}
	// The monitor's password, its client certificate and key, and the
	// database CA certificate: the controller's account-replication probe
	// reads every site's database.
	files := []string{filepath.Base(spec.File), spec.DNS.TSIG.ControllerKeyFile, spec.DNS.TSIG.ClientKeyFile,
		spec.Failover.AdminTokenFile, filepath.Join(spec.PKI.Dir, "state.json"), site.MonitorPasswordFile, site.DBCADir + "/ca.pem",
		site.MonitorCertDir + "/cert.pem", site.MonitorCertDir + "/key.pem"}
	for _, s := range spec.Sites {
		if _, err := healthcheck.ProbeAccountKey(spec, s.Name); err != nil {
			return err
		}
		files = append(files, healthcheck.ProbeAccountKeyFile(s.Name))
		for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
			files = append(files, filepath.Join(site.ControllerAgentDir(s.Name), f))
		}
	}
	for _, pattern := range []string{"public/*", "root/*.cert.pem", "infrastructure/*.cert.pem", "sites/*/*.cert.pem"} {
		m, _ := filepath.Glob(filepath.Join(spec.Path(spec.PKI.Dir), pattern))
		for _, f := range m {
			rel, _ := filepath.Rel(spec.Path("."), f)
			files = append(files, rel)
		}
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(spec.Path(f))
		if err != nil {
			return fmt.Errorf("the controller's %s: %w", f, err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(f, cluster.DefaultSecretsDir+"/") || strings.HasSuffix(f, ".key") || strings.HasSuffix(f, ".token") {
			mode = 0o600
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(f)), 0o700); err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(dst, f), b, mode); err != nil {
			return err
		}
	}
	return nil
}

// playbook runs site.yml for one host, its output streamed with the
// host's name in front.
func (p *Provisioner) playbook(ctx context.Context, inventory, host string) error {
	return p.ansible(ctx, inventory, host, "site.yml")
}

func (p *Provisioner) ansible(ctx context.Context, inventory, host, playbook string, extra ...string) error {
	cmd := p.ansibleCmd(ctx, "ansible-playbook", append([]string{"-i", inventory, "--limit", host, playbook}, extra...)...)
	cmd.WaitDelay = 10 * time.Second
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if line := sc.Text(); strings.TrimSpace(line) != "" {
				p.logf("[%s] %s", host, line)
			}
		}
	}()
	err := cmd.Run()
	w.Close()
	<-done
	if err != nil {
		return fmt.Errorf("ansible-playbook %s on %s: %w (output above)", playbook, host, err)
	}
	return nil
}

// ansibleCmd is an Ansible command (ansible-playbook, ansible) run in the
// working directory's copy of cairn's Ansible files, with their config.
func (p *Provisioner) ansibleCmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	dir := p.path("ansible")
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(dir, "ansible.cfg"), "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCAL_TEMP="+p.path("ansible-tmp"))
	return cmd
}

// Apply makes the hosts, installs every bundle and checks every site.
func (p *Provisioner) Apply(ctx context.Context) (*Result, error) {
	start := time.Now()
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		return nil, fmt.Errorf("ansible-playbook not found on PATH: install ansible (scripts/deps.sh does)")
	}
	if err := p.mkdir(); err != nil {
		return nil, err
	}
	res := &Result{Ansible: map[string]time.Duration{}, Checks: map[string]string{}}
	t := time.Now()
	out, err := p.outputs(ctx)
	if err != nil {
		return nil, err
	}
	res.Outputs, res.Terraform = out, time.Since(t)
	p.logf("infrastructure ready in %.1fs: %d site hosts, %d DNS hosts", res.Terraform.Seconds(), len(out.Sites), len(out.DNSServers))
	if err := p.checkAddresses(out); err != nil {
		return nil, err
	}
	t = time.Now()
	inventory, err := p.render(ctx, out)
	if err != nil {
		return nil, err
	}
	if err := writeFS(cairnansible.Files, ".", p.path("ansible")); err != nil {
		return nil, err
	}
	res.Render = time.Since(t)
	p.logf("bundles rendered in %.1fs; inventory %s", res.Render.Seconds(), inventory)
	ask := func(ctx context.Context, host string, argv []string) (string, error) {
		return p.adhoc(ctx, inventory, host, argv, "")
	}
	if err := p.refuseLostSites(ctx, ask, out); err != nil {
		return nil, err
	}
	// Every site in parallel, then the cluster host: its failover
	// controller's first probes find the sites running. Started before
	// them, it saw the active site refuse while it came up, called it
	// down and could move the name to whichever site was judged healthy
	// first. Nothing a site starts needs the cluster's DNS (its resolver
	// forwards to it only when asked).
	var mu sync.Mutex
	run := func(host string) error {
		t := time.Now()
		err := p.playbook(ctx, inventory, host)
		mu.Lock()
		res.Ansible[host] = time.Since(t)
		mu.Unlock()
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(p.o.Spec.Sites))
	for i, s := range p.o.Spec.Sites {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = run(s.Name) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := run(out.DNSServers[0].Name); err != nil {
		return nil, err
	}
	// Every site's check at once: a first check often waits out a peer's
	// CRL mirror interval (check), and one site's wait need not follow
	// another's.
	failed := 0
	for i, s := range p.o.Spec.Sites {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.check(ctx, s.Name) }()
	}
	wg.Wait()
	for i, s := range p.o.Spec.Sites {
		if errs[i] != nil {
			res.Checks[s.Name] = errs[i].Error()
			failed++
		} else {
			res.Checks[s.Name] = "ok"
		}
	}
	res.Total = time.Since(start)
	if failed > 0 {
		return res, fmt.Errorf("%d of %d sites failed their checks after provisioning: %v", failed, len(p.o.Spec.Sites), res.Checks)
	}
	return res, nil
}

// check runs the directory probe and one deep probe of a site with cairn's
// own prober (from the operator's vantage: the switch namespace locally).
// Sites start together: a peer's front may have looked for this site's
// first CRLs before they were published, and keeps that answer for up to
// its mirror interval (10 s). So a failed check is run again, up to
// checkAttempts times, checkPause apart; the last failure is reported.
func (p *Provisioner) check(ctx context.Context, siteName string) error {
	argv := p.infra.FromOperator([]string{p.o.Self, "-f", p.o.Spec.File, "probe", siteName, "--deep"})
	var err error
	for attempt := 1; attempt <= checkAttempts; attempt++ {
		if attempt > 1 {
			p.logf("check %s: failed (attempt %d of %d), again in %s", siteName, attempt-1, checkAttempts, checkPause)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(checkPause):
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		var outb []byte
		outb, err = exec.CommandContext(cctx, argv[0], argv[1:]...).CombinedOutput()
		cancel()
		p.logf("check %s:\n%s", siteName, strings.TrimSpace(string(outb)))
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("cairn probe %s --deep (%d attempts): %v", siteName, checkAttempts, err)
}

// A site's checks after provisioning: attempts and the pause between them
// (longer than a front's CRL mirror interval).
const (
	checkAttempts = 3
	checkPause    = 15 * time.Second
)

// Plan shows what apply would change and changes nothing.
func (p *Provisioner) Plan(ctx context.Context) error {
	what, err := p.infra.Plan(ctx)
	if err != nil {
		return err
	}
	p.logf("%s; apply would then render and install %d site bundles and the cluster bundle", what, len(p.o.Spec.Sites))
	return nil
}

// Destroy removes what apply made: the hosts (Terraform destroy), or on
// existing hosts what Ansible installed (destroy.yml: units, processes,
// /opt/cairn); then the working directory (bundles, archives, inventory,
// state). The cluster PKI (with the offline root) is kept.
func (p *Provisioner) Destroy(ctx context.Context) error {
	if err := p.infra.Destroy(ctx); err != nil {
		return err
	}
	return os.RemoveAll(p.dir)
}

// uninstall runs destroy.yml on every host of the existing inventory.
func (p *Provisioner) uninstall(ctx context.Context) error {
	out, err := p.outputs(ctx)
	if err != nil {
		return err
	}
	if err := p.mkdir(); err != nil {
		return err
	}
	if err := writeFS(cairnansible.Files, ".", p.path("ansible")); err != nil {
		return err
	}
	inv := map[string]map[string]hostVars{"cluster": {}, "sites": {}}
	for _, d := range out.DNSServers[:min(1, len(out.DNSServers))] {
		hv, err := connVars(d.Connection, hostOf(d.Address))
		if err != nil {
			return err
		}
		inv["cluster"][d.Name] = hv
	}
	for name, h := range out.Sites {
		hv, err := connVars(h.Connection, h.Addresses[0])
		if err != nil {
			return err
		}
		inv["sites"][name] = hv
	}
	path := p.path("inventory-destroy.yml")
	if err := writeInventory(path, map[string]any{}, inv); err != nil {
		return err
	}
	return p.ansible(ctx, path, "all", "destroy.yml")
}
