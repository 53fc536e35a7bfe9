package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/terraform-exec/tfexec"
	"go.yaml.in/yaml/v3"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
	cairnterraform "github.com/cairn-pki/cairn/terraform"
)

// Infrastructure makes (or names) the hosts of a cluster and hands back
// the Terraform output contract (Outputs): everything after it (render,
// install, check) is the same for every kind.
type Infrastructure interface {
	// Apply makes the hosts (idempotent) and returns the contract.
	Apply(ctx context.Context) (*Outputs, error)
	// Outputs is the contract of the hosts Apply made, changing nothing.
	Outputs(ctx context.Context) (*Outputs, error)
	// Plan says what Apply would change, changing nothing.
	Plan(ctx context.Context) (string, error)
	// Destroy removes the hosts; on hosts cairn did not make, what was
	// installed on them.
	Destroy(ctx context.Context) error
	// FromOperator wraps a command so it runs where the operator would
	// reach the sites from (locally: inside the switch namespace).
	FromOperator(argv []string) []string
	// OperatorNetns is the network namespace of the operator's vantage
	// ("": this machine's own network).
	OperatorNetns() string
}

// infrastructures are the kinds --infra takes.
var infrastructures = map[string]func(p *Provisioner) (Infrastructure, error){
	"local":    newLocal,
	"nspawn":   newNspawn,
	"aws":      newAWS,
	"existing": newExisting,
}

// InfrastructureNames lists the kinds, for messages and flags.
func InfrastructureNames() string {
	var names []string
	for n := range infrastructures {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// terraformInfra is a root module applied with terraform-exec; vars are
// its variables.
type terraformInfra struct {
	p       *Provisioner
	dir     string
	prepare func() ([]string, error) // writes the module if it is ours; returns its variables
	after   func(ctx context.Context) error
	// beforeDestroy removes what is not in the Terraform state but needs
	// its hosts (local client hosts on the bridge).
	beforeDestroy func(ctx context.Context) error
	what          string
}

func (t *terraformInfra) init(ctx context.Context) (*tfexec.Terraform, []string, error) {
	return t.initTo(ctx, t.p.o.Log)
}

// initTo is init with Terraform's own output to out.
func (t *terraformInfra) initTo(ctx context.Context, out io.Writer) (*tfexec.Terraform, []string, error) {
	var vars []string
	if t.prepare != nil {
		var err error
		if vars, err = t.prepare(); err != nil {
			return nil, nil, err
		}
	}
	tf, err := t.p.terraform(ctx, t.dir, out)
	return tf, vars, err
}

func (t *terraformInfra) Apply(ctx context.Context) (*Outputs, error) {
	tf, vars, err := t.init(ctx)
	if err != nil {
		return nil, err
	}
	var opts []tfexec.ApplyOption
	for _, v := range vars {
		opts = append(opts, tfexec.Var(v))
	}
	if err := tf.Apply(ctx, opts...); err != nil {
		return nil, fmt.Errorf("terraform apply: %w", err)
	}
	return t.read(ctx, tf)
}

// read is the contract in Terraform's outputs.
func (t *terraformInfra) read(ctx context.Context, tf *tfexec.Terraform) (*Outputs, error) {
	outs, err := tf.Output(ctx)
	if err != nil {
		return nil, err
	}
	if len(outs) == 0 {
		return nil, fmt.Errorf("no hosts provisioned for cluster %s (%s): run cairn provision apply --infra %s first", t.p.o.Spec.Name, t.what, t.p.o.Infra)
	}
	raw, err := json.Marshal(outs)
	if err != nil {
		return nil, err
	}
	return ParseOutputs(raw)
}

// Outputs reads the outputs quietly (Terraform's own lines would bury a
// drill's).
func (t *terraformInfra) Outputs(ctx context.Context) (*Outputs, error) {
	tf, _, err := t.initTo(ctx, io.Discard)
	if err != nil {
		return nil, err
	}
	return t.read(ctx, tf)
}

func (t *terraformInfra) Plan(ctx context.Context) (string, error) {
	tf, vars, err := t.init(ctx)
	if err != nil {
		return "", err
	}
	var opts []tfexec.PlanOption
	for _, v := range vars {
		opts = append(opts, tfexec.Var(v))
	}
	changes, err := tf.Plan(ctx, opts...)
	if err != nil {
		return "", fmt.Errorf("terraform plan: %w", err)
	}
	return fmt.Sprintf("terraform (%s): changes %v", t.what, changes), nil
}

func (t *terraformInfra) Destroy(ctx context.Context) error {
	tf, vars, err := t.init(ctx)
	if err != nil {
		return err
	}
	if t.beforeDestroy != nil {
		if err := t.beforeDestroy(ctx); err != nil {
			return err
		}
	}
	var opts []tfexec.DestroyOption
	for _, v := range vars {
		opts = append(opts, tfexec.Var(v))
	}
	if err := tf.Destroy(ctx, opts...); err != nil {
		return fmt.Errorf("terraform destroy: %w", err)
	}
	if t.after != nil {
		return t.after(ctx)
	}
	return nil
}

func (t *terraformInfra) FromOperator(argv []string) []string { return argv }

func (t *terraformInfra) OperatorNetns() string { return "" }

// localInfra: namespace hosts on this machine, made by cairn's own
// module (terraform/local, built-ins only) behind one switch namespace.
type localInfra struct{ *terraformInfra }

func newLocal(p *Provisioner) (Infrastructure, error) {
	if p.o.Gateway == "" {
		p.o.Gateway = "127.0.254.254"
	}
	if _, err := netip.ParseAddr(p.o.Gateway); err != nil {
		return nil, fmt.Errorf("--gateway %q: give an IPv4 address no host uses, e.g. 127.0.254.254", cluster.Excerpt(p.o.Gateway))
	}
	t := &terraformInfra{p: p, dir: p.path("terraform"), what: "local namespace hosts"}
	t.prepare = func() ([]string, error) {
		if err := p.mkdir(); err != nil {
			return nil, err
		}
		if err := writeFS(cairnterraform.Files, "local", t.dir); err != nil {
			return nil, err
		}
		hosts, err := p.localHosts()
		if err != nil {
			return nil, err
		}
		// Each site's VAs reach the clients' networks on the bridge, and
		// the cluster host answers their DNS questions (the ACME name).
		for name, h := range hosts {
			h.OnLink = clientNetworks(p.o.Spec)
			hosts[name] = h
		}
		hj, _ := json.Marshal(hosts)
		return []string{"cairn=" + p.o.Self, "cluster=" + p.prefix(), "state_dir=" + p.path("hosts"), "gateway=" + p.o.Gateway, "hosts=" + string(hj)}, nil
	}
	t.beforeDestroy = p.removeClients
	t.after = func(ctx context.Context) error { return NSSwitch{Cluster: p.prefix()}.Down(ctx) }
	return localInfra{t}, nil
}

// FromOperator runs argv inside the switch namespace.
func (l localInfra) FromOperator(argv []string) []string {
	return append([]string{"ip", "netns", "exec", l.OperatorNetns()}, argv...)
}

func (l localInfra) OperatorNetns() string { return nsName(l.p.prefix(), "sw") }

// newAWS: the user's root module composing terraform/aws's modules.
func newAWS(p *Provisioner) (Infrastructure, error) {
	if p.o.TerraformDir == "" {
		return nil, fmt.Errorf("--infra aws needs --terraform-dir: a root module composing terraform/aws/modules (see terraform/aws/examples/three-regions) with your regions, AMIs and keys")
	}
	return &terraformInfra{p: p, dir: p.o.TerraformDir, what: p.o.TerraformDir}, nil
}

// existingInfra: hosts someone else made, given as the contract itself.
type existingInfra struct{ p *Provisioner }

func newExisting(p *Provisioner) (Infrastructure, error) {
	if p.o.Inventory == "" {
		return nil, fmt.Errorf("--infra existing needs --inventory FILE: the hosts as the Terraform output contract (sites, dns_servers) in YAML or JSON")
	}
	return existingInfra{p}, nil
}

func (e existingInfra) Apply(context.Context) (*Outputs, error) {
	b, err := os.ReadFile(e.p.o.Inventory)
	if err != nil {
		return nil, err
	}
	var out Outputs
	if err := yaml.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("--inventory %s: %w", e.p.o.Inventory, err)
	}
	return &out, out.check()
}

func (e existingInfra) Outputs(ctx context.Context) (*Outputs, error) { return e.Apply(ctx) }

func (e existingInfra) Plan(ctx context.Context) (string, error) {
	out, err := e.Apply(ctx)
	if err != nil {
		return "", err
	}
	if err := e.p.checkAddresses(out); err != nil {
		return "", err
	}
	return fmt.Sprintf("existing hosts: %d sites, %d DNS hosts", len(out.Sites), len(out.DNSServers)), nil
}

// Destroy uninstalls what cairn put on the hosts (destroy.yml); the hosts stay.
func (e existingInfra) Destroy(ctx context.Context) error { return e.p.uninstall(ctx) }

func (e existingInfra) FromOperator(argv []string) []string { return argv }

func (e existingInfra) OperatorNetns() string { return "" }

// nspawnInfra: Debian 12 hosts with systemd as PID 1 on this machine
// (terraform/nspawn, built-ins only), behind one switch namespace.
type nspawnInfra struct{ *terraformInfra }

func newNspawn(p *Provisioner) (Infrastructure, error) {
	network, err := p.nspawnNetwork()
	if err != nil {
		return nil, err
	}
	if p.o.Gateway == "" {
		// The network's last address but one: no host of a spec takes it.
		p.o.Gateway = lastAddr(network).Prev().String()
	}
	gw, err := netip.ParseAddr(p.o.Gateway)
	if err != nil || !network.Contains(gw) {
		return nil, fmt.Errorf("--gateway %q: give an IPv4 address in the hosts' network %s that no host uses", cluster.Excerpt(p.o.Gateway), network)
	}
	if p.o.ImageCache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("--image-cache: no cache directory (%v); give one", err)
		}
		p.o.ImageCache = filepath.Join(dir, "cairn", "nspawn")
	}
	t := &terraformInfra{p: p, dir: p.path("terraform"), what: "nspawn hosts"}
	t.prepare = func() ([]string, error) {
		if err := p.mkdir(); err != nil {
			return nil, err
		}
		if err := writeFS(cairnterraform.Files, "nspawn", t.dir); err != nil {
			return nil, err
		}
		hosts, err := p.localHosts()
		if err != nil {
			return nil, err
		}
		for name, h := range hosts {
			h.Location = "nspawn"
			hosts[name] = h
		}
		hj, _ := json.Marshal(hosts)
		return []string{"cairn=" + p.o.Self, "cluster=" + p.prefix(), "state_dir=" + p.path("hosts"), "gateway=" + p.o.Gateway,
			"network=" + network.String(), "image_cache=" + p.o.ImageCache, "mirror=" + p.o.Mirror, "hosts=" + string(hj)}, nil
	}
	t.beforeDestroy = p.removeClients
	t.after = func(ctx context.Context) error { return NSSwitch{Cluster: p.prefix()}.Down(ctx) }
	return nspawnInfra{t}, nil
}

// FromOperator runs argv inside the switch namespace.
func (n nspawnInfra) FromOperator(argv []string) []string {
	return append([]string{"ip", "netns", "exec", n.OperatorNetns()}, argv...)
}

func (n nspawnInfra) OperatorNetns() string { return nsName(n.p.prefix(), "sw") }

// nspawnNetwork is the hosts' network: the /16 of the primary DNS
// server. Every address another host reaches (each site's address and
// CRL front, the DNS servers, the PKI front, the controller) must be in
// it, and none may be loopback: these hosts are machines on a bridge.
func (p *Provisioner) nspawnNetwork() (netip.Prefix, error) {
	spec := p.o.Spec
	primary := spec.PrimaryDNS().Addr()
	network, _ := primary.Prefix(16)
	fix := "give the hosts addresses of their own in a private block, e.g. dns.servers 10.78.30.2:53 and 10.78.30.3:53, site i 10.78.(31+i).1 with serviceNetwork 10.78.(31+i).0/24, failover.listen 10.78.30.1:9180 (docs/provision.md \"nspawn\")"
	if primary.IsLoopback() || !primary.Is4() {
		return netip.Prefix{}, fmt.Errorf("dns.servers: the primary %s is loopback or not IPv4; --infra nspawn hosts are machines on a bridge: %s", primary, fix)
	}
	for i, s := range spec.Sites {
		a, err := netip.ParseAddr(s.Address)
		if err != nil || !network.Contains(a) {
			return netip.Prefix{}, fmt.Errorf("sites[%d].address %s: not in the hosts' network %s (the primary DNS server's /16): %s", i, s.Address, network, fix)
		}
		plan, err := site.NewPlan(spec, i)
		if err != nil {
			return netip.Prefix{}, err
		}
		if !network.Contains(plan.CRL) {
			return netip.Prefix{}, fmt.Errorf("sites[%d].serviceNetwork %s: its CRL front %s must be in the hosts' network %s: %s", i, s.ServiceNetwork, plan.CRL, network, fix)
		}
	}
	for i, s := range spec.DNS.Servers {
		if a, err := netip.ParseAddrPort(s.Address); err != nil || !network.Contains(a.Addr()) {
			return netip.Prefix{}, fmt.Errorf("dns.servers[%d].address %s: not in the hosts' network %s: %s", i, s.Address, network, fix)
		}
	}
	if ctl, err := netip.ParseAddrPort(spec.Failover.Listen); err != nil || !network.Contains(ctl.Addr()) {
		return netip.Prefix{}, fmt.Errorf("failover.listen %s: the controller on the DNS host must listen in the hosts' network %s, where the operator reaches it: %s", spec.Failover.Listen, network, fix)
	}
	return network, nil
}
