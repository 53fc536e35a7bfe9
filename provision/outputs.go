// Package provision brings cairn sites up on separate hosts: Terraform
// makes the hosts, Ansible installs the rendered site bundles on them.
// Every Terraform module under terraform/ honours one output contract
// (Outputs), which this package turns into an Ansible inventory.
package provision

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// The output contract of every infrastructure module.
const (
	OutputSites      = "sites"       // map: site name → Host
	OutputDNSServers = "dns_servers" // list of DNSServer, the primary first
)

// SiteKeys and ConnectionKeys are the attributes each site entry carries.
var (
	SiteKeys       = []string{"name", "location", "addresses", "connection"}
	ConnectionKeys = []string{"type", "user", "port"}
	DNSServerKeys  = []string{"name", "role", "location", "address", "connection"}
)

// Connection says how Ansible reaches a host: ssh (user, port), local, or
// nsenter into a namespace host.
type Connection struct {
	Type string `json:"type" yaml:"type"`
	User string `json:"user,omitempty" yaml:"user,omitempty"`
	Port int    `json:"port,omitempty" yaml:"port,omitempty"`
	// Namespace hosts: the network namespace, and the state directory
	// whose anchor.pid names the process Ansible enters. nspawn hosts:
	// the machine name, and the state directory whose launcher.pid leads
	// to the container's systemd.
	Netns   string `json:"netns,omitempty" yaml:"netns,omitempty"`
	Machine string `json:"machine,omitempty" yaml:"machine,omitempty"`
	State   string `json:"state,omitempty" yaml:"state,omitempty"`
}

// Host is one site's entry in the contract.
type Host struct {
	Name       string     `json:"name" yaml:"name"`
	Location   string     `json:"location" yaml:"location"`
	Addresses  []string   `json:"addresses" yaml:"addresses"` // the first is the one clients reach
	Connection Connection `json:"connection" yaml:"connection"`
}

// DNSServer is one of the cluster's authoritative servers.
type DNSServer struct {
	Name       string     `json:"name" yaml:"name"`
	Role       string     `json:"role" yaml:"role"` // primary or secondary
	Location   string     `json:"location" yaml:"location"`
	Address    string     `json:"address" yaml:"address"` // ip:port
	Connection Connection `json:"connection" yaml:"connection"`
}

// Outputs is the contract, decoded from `terraform output -json`.
type Outputs struct {
	Sites      map[string]Host `json:"sites" yaml:"sites"`
	DNSServers []DNSServer     `json:"dns_servers" yaml:"dns_servers"`
}

// ParseOutputs reads `terraform output -json` (each output wrapped in
// {"value": ...}) and checks the contract.
func ParseOutputs(b []byte) (*Outputs, error) {
	var raw map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("terraform output: %w", err)
	}
	var out Outputs
	for _, name := range []string{OutputSites, OutputDNSServers} {
		v, ok := raw[name]
		if !ok {
			return nil, fmt.Errorf("terraform output %q is missing: every module under terraform/ must output %s and %s", name, OutputSites, OutputDNSServers)
		}
		dst := any(&out.Sites)
		if name == OutputDNSServers {
			dst = &out.DNSServers
		}
		if err := json.Unmarshal(v.Value, dst); err != nil {
			return nil, fmt.Errorf("terraform output %q: %w", name, err)
		}
	}
	return &out, out.check()
}

func (o *Outputs) check() error {
	var errs []string
	names := make([]string, 0, len(o.Sites))
	for k := range o.Sites {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		h := o.Sites[k]
		f := "sites." + k
		if h.Name != k {
			errs = append(errs, fmt.Sprintf("%s.name is %q, want the key %q", f, h.Name, k))
		}
		if len(h.Addresses) == 0 {
			errs = append(errs, f+".addresses is empty")
		}
		for i, a := range h.Addresses {
			if _, err := netip.ParseAddr(a); err != nil {
				errs = append(errs, fmt.Sprintf("%s.addresses[%d] %q is not an IP address", f, i, a))
			}
		}
		errs = append(errs, h.Connection.check(f+".connection")...)
	}
	for i, d := range o.DNSServers {
		f := fmt.Sprintf("dns_servers[%d]", i)
		if _, err := netip.ParseAddrPort(d.Address); err != nil {
			errs = append(errs, fmt.Sprintf("%s.address %q is not ip:port", f, d.Address))
		}
		if want := map[bool]string{true: "primary", false: "secondary"}[i == 0]; d.Role != want {
			errs = append(errs, fmt.Sprintf("%s.role is %q, want %s (the primary first)", f, d.Role, want))
		}
		errs = append(errs, d.Connection.check(f+".connection")...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("terraform outputs break the contract: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (c Connection) check(f string) []string {
	switch c.Type {
	case "ssh":
		if c.User == "" || c.Port <= 0 {
			return []string{f + ": ssh needs user and port"}
		}
	case "local":
	case "nsenter":
		if c.State == "" || (c.Netns == "") == (c.Machine == "") {
			return []string{f + ": nsenter needs state (the host's state directory) and netns (a namespace host) or machine (an nspawn host)"}
		}
	default:
		return []string{fmt.Sprintf("%s.type %q: use ssh, local or nsenter", f, c.Type)}
	}
	return nil
}
