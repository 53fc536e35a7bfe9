// Package cluster holds the cairn.yaml types, their defaults and their
// validation. It reads the file and nothing else: every error names the field
// path (`sites[1].serialPrefix: ...`) so an operator can fix the file without
// reading code.
package cluster

import (
	"net/netip"
	"slices"

	"github.com/cairn-pki/cairn/internal/boulderbin/addition"
)

// Spec is one CA cluster: several independent Boulder sites under one offline
// root, the ACME name that moves between them, and the policy that moves it.
type Spec struct {
	// Name is the cluster's name, a DNS label. It prefixes HSM token labels
	// and certificate subjects.
	Name       string     `yaml:"name"`
	ACME       ACME       `yaml:"acme"`
	Profiles   []Profile  `yaml:"profiles"` // certificate profiles, alike at every site
	DNS        DNS        `yaml:"dns"`
	PKI        PKI        `yaml:"pki"`
	Sites      []Site     `yaml:"sites"`
	Failover   Failover   `yaml:"failover"`
	Backup     Backup     `yaml:"backup"`
	Accounts   Accounts   `yaml:"accounts"`
	Monitoring Monitoring `yaml:"monitoring"`
	Policy     Policy     `yaml:"policy"`
	Validation Validation `yaml:"validation"`
	Lab        LabSpec    `yaml:"lab"`
	EAB        EAB        `yaml:"eab"`

	// Dir is the directory of the cairn.yaml file; relative paths in the spec
	// are relative to it. Not part of the file.
	Dir string `yaml:"-"`
	// File is the absolute path of the spec file, when loaded from one.
	File string `yaml:"-"`

	lines map[string]int // field path -> line in the file, for error messages
}

// ACME describes the name clients use and how it is published.
type ACME struct {
	// Name is the ACME DNS name, e.g. acme.lab.home.arpa. It must lie in Zone.
	Name string `yaml:"name"`
	// Zone is the cluster zone served by the authoritative DNS outside every
	// site. Clients put their DNS-01 records here.
	Zone string `yaml:"zone"`
	// TTL of the ACME name's records, in seconds.
	TTL int `yaml:"ttl"`
	// HTTPSPort is the port of the ACME HTTPS listener, the same at every site.
	HTTPSPort int `yaml:"httpsPort"`
	// CAAIdentity is the issuer domain every site's VA uses and the CAA
	// record at the zone apex names; one for the whole cluster so a client's
	// names validate at whichever site is active.
	CAAIdentity string `yaml:"caaIdentity"`
	// DefaultProfile names the profile (in Profiles) a client that asks
	// for none gets.
	DefaultProfile string `yaml:"defaultProfile"`
}

// Profile is one certificate profile: its name (what clients ask for, in
// the directory's meta.profiles), how long its certificates are valid and
// what the directory says about it.
type Profile struct {
	Name        string   `yaml:"name"`
	Validity    Duration `yaml:"validity"`
	Description string   `yaml:"description"`
}

// ProfileDescriptions is what every site's directory advertises in
// meta.profiles: profile name -> description.
func (s *Spec) ProfileDescriptions() map[string]string {
	out := make(map[string]string, len(s.Profiles))
	for _, p := range s.Profiles {
		out[p.Name] = p.Description
	}
	return out
}

// DNS lists the authoritative servers for the cluster zone and the TSIG keys.
type DNS struct {
	// Provider writes the ACME name: "rfc2136" (TSIG-signed updates with
	// prerequisites to the primary) or "powerdns" (the PowerDNS HTTP API,
	// compare-and-swap fenced through the controllers' etcd).
	Provider string      `yaml:"provider"`
	PowerDNS PowerDNSAPI `yaml:"powerdns"`
	Servers  []DNSServer `yaml:"servers"`
	TSIG     TSIG        `yaml:"tsig"`
}

// DNS providers.
const (
	DNSProviderRFC2136  = "rfc2136"
	DNSProviderPowerDNS = "powerdns"
)

// PowerDNSAPI is the PowerDNS Authoritative server's HTTP API.
type PowerDNSAPI struct {
	// API is its base URL (http or https), e.g. http://10.0.0.2:8081.
	API string `yaml:"api"`
	// APIKeyFile holds the API key (0600; created with the lab's cluster DNS).
	APIKeyFile string `yaml:"apiKeyFile"`
	// ServerID is the API's server id ("localhost" for a PowerDNS server).
	ServerID string `yaml:"serverID"`
}

// DNSServer is one authoritative server of the cluster zone.
type DNSServer struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"` // host:port
	Role    string `yaml:"role"`    // primary | secondary
}

// TSIG names the key files (0600, tsig-keygen format) used for RFC 2136
// updates: one for the failover controller, one for ACME clients' DNS-01.
type TSIG struct {
	ControllerKeyFile string `yaml:"controllerKeyFile"`
	ClientKeyFile     string `yaml:"clientKeyFile"`
}

// PKI describes the offline root, the per-site intermediates and the HSMs
// that hold their keys.
type PKI struct {
	// Dir holds certificates, public keys and SoftHSM token directories.
	Dir          string `yaml:"dir"`
	Organization string `yaml:"organization"`
	Country      string `yaml:"country"`
	// BaseURL is where the root certificate (root.der) and the root CRL
	// (root.crl) are published; the intermediates' AIA and CRL DP point here.
	BaseURL        string         `yaml:"baseURL"`
	Root           RootCA         `yaml:"root"`
	Intermediates  Intermediates  `yaml:"intermediates"`
	Infrastructure Infrastructure `yaml:"infrastructure"`
	// CRLValidityDays is the root CRL's nextUpdate - thisUpdate (≤ 365).
	CRLValidityDays int `yaml:"crlValidityDays"`
	HSM             HSM `yaml:"hsm"`
}

// RootCA is the offline root.
type RootCA struct {
	CommonName   string `yaml:"commonName"`
	KeyType      string `yaml:"keyType"`
	ValidityDays int    `yaml:"validityDays"`
}

// Intermediates describes the two ACME issuing intermediates every site gets
// (Boulder's CA refuses to start without one ECDSA and one RSA issuer).
type Intermediates struct {
	ECDSAKeyType string `yaml:"ecdsaKeyType"`
	RSAKeyType   string `yaml:"rsaKeyType"`
	ValidityDays int    `yaml:"validityDays"`
}

// Infrastructure is the intermediate that signs each site's HTTPS
// certificate for the ACME name; it never signs ACME subscriber certificates.
type Infrastructure struct {
	CommonName   string `yaml:"commonName"`
	KeyType      string `yaml:"keyType"`
	ValidityDays int    `yaml:"validityDays"`
}

// HSM backends.
const (
	BackendSoftHSM = "softhsm" // cairn creates tokens and PINs (the lab)
	BackendPKCS11  = "pkcs11"  // tokens exist; cairn is given module, labels and PIN files
)

// HSM says where keys live. Every site's token is separate from the root's.
type HSM struct {
	Backend string `yaml:"backend"`
	// Module is the PKCS#11 library.
	Module         string `yaml:"module"`
	Root           Token  `yaml:"root"`
	Infrastructure Token  `yaml:"infrastructure"`
}

// Token is one PKCS#11 token and the file holding its user PIN.
type Token struct {
	Label   string `yaml:"label"`
	PINFile string `yaml:"pinFile"`
}

// Site is one independent Boulder instance.
type Site struct {
	Name string `yaml:"name"`
	// Priority orders failover targets: lower is preferred.
	Priority int `yaml:"priority"`
	// SerialPrefix is the first byte of every serial the site issues, 01..7f.
	SerialPrefix SerialPrefix `yaml:"serialPrefix"`
	// Address is where the site's ACME server listens and where the ACME name
	// points while the site is active.
	Address string `yaml:"address"`
	// ServiceNetwork is the block the site's internal services (database,
	// Redis, DNS, gRPC, CT, CRL store) take their addresses from.
	ServiceNetwork string `yaml:"serviceNetwork"`
	// CRLBaseURL is where the site's CRL shards and issuer certificates are
	// published over HTTP (AIA and CRL DP of what it issues).
	CRLBaseURL string `yaml:"crlBaseURL"`
	// CRLStore is where crl-storer puts CRLs. Empty endpoint: the lab's S3
	// stand-in. CRLs are published at <crlBaseURL><bucket>/<issuer NameID>/.
	CRLStore CRLStore `yaml:"crlStore"`
	HSM      Token    `yaml:"hsm"`
}

// CRLStore is an S3-compatible store (AWS S3, MinIO, Ceph RGW, Garage).
type CRLStore struct {
	Endpoint string `yaml:"endpoint"`
	Bucket   string `yaml:"bucket"`
	Region   string `yaml:"region"`
	// CredentialsFile is an AWS shared-credentials file (0600).
	CredentialsFile string `yaml:"credentialsFile"`
}

// Policy is which names the cluster may issue for: what cairn changes in
// Boulder's name policy (docs/policy.md) and what the intermediates
// constrain (docs/pki.md).
type Policy struct {
	// PrivateSuffixes are suffixes outside the public suffix list that
	// names may end in (e.g. internal, corp): Boulder treats each as a
	// public suffix. Empty: Boulder's rules as shipped.
	PrivateSuffixes []string `yaml:"privateSuffixes"`
	// AllowedNames are the DNS suffixes (a name and everything under it;
	// "*.x" means the same as "x") the cluster issues for: the ACME front
	// refuses a newOrder with any other identifier (rejectedIdentifier),
	// and every site intermediate carries them as critical X.509 name
	// constraints. Empty: no restriction beyond Boulder's own policy.
	AllowedNames []string `yaml:"allowedNames"`
}

// Validation is how Boulder's VAs validate control of a name.
type Validation struct {
	// AllowedNetworks are reserved ranges (CIDRs) HTTP-01 and TLS-ALPN-01
	// may connect to (e.g. 10.0.0.0/8): every site's VA and remote VAs must
	// reach them. Every other reserved range stays refused.
	AllowedNetworks []string `yaml:"allowedNetworks"`
	// Challenges the sites offer: dns-01, http-01, tls-alpn-01. Default:
	// dns-01 alone without allowedNetworks, all three with them.
	Challenges []string `yaml:"challenges"`
	// Resolvers are the organisation's DNS resolvers ("IP" or "IP:port"),
	// which every site's VAs ask for every name outside acme.zone (the
	// clients' own names, CNAMEs of _acme-challenge records, CAA). Empty:
	// the VAs resolve only names in acme.zone (the cluster DNS).
	Resolvers []string `yaml:"resolvers"`
}

// ResolverAddrs are the validation resolvers as addresses, port 53 when
// none is given (the spec must be valid).
func (v Validation) ResolverAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, r := range v.Resolvers {
		if ap, err := parseResolver(r); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// parseResolver reads "IP" or "IP:port" ("[v6]:port").
func parseResolver(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), nil
	}
	return netip.ParseAddrPort(s)
}

// Challenge types.
const (
	ChallengeDNS01     = "dns-01"
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Challenges are the challenge types a site can offer.
var Challenges = []string{ChallengeDNS01, ChallengeHTTP01, ChallengeTLSALPN01}

// EAB is External Account Binding at the ACME fronts (RFC 8555 §7.3.4;
// keys: `cairn accounts eab create`).
type EAB struct {
	// Required: newAccount needs a binding to a known, unrevoked key
	// (accounts registered before stay valid). Default false: a binding
	// sent anyway is checked and recorded.
	Required bool `yaml:"required"`
}

// Account replication modes.
const (
	ReplicationMariaDB = "mariadb" // multi-source row-based replication of the registrations table
	ReplicationOff     = "off"     // accounts stay at the site that created them
)

// Monitoring is the lab's Prometheus (production clusters load
// monitoring/cairn-rules.yml into their own).
type Monitoring struct {
	// Prometheus is where `cairn lab up` runs a Prometheus server (IP:port)
	// that scrapes the controller and every Boulder component with cairn's
	// alert rules loaded, or "off".
	Prometheus string `yaml:"prometheus"`
	// Retention is how long it keeps samples.
	Retention Duration `yaml:"retention"`
}

// LabSpec is what only the lab uses.
type LabSpec struct {
	// ClientNetwork is the IPv4 block of the lab's client hosts (cairn lab
	// exec --host): a network namespace each, on a bridge whose address is
	// the block's first; never the sites' loopback addresses.
	ClientNetwork string `yaml:"clientNetwork"`
}

// LabClientNetwork is the lab's client hosts' block (validated).
func LabClientNetwork(s *Spec) netip.Prefix {
	return netip.MustParsePrefix(s.Lab.ClientNetwork)
}

// LabHostsAnswer reports whether the lab's client hosts can answer
// challenge type c: the sites offer it, and for HTTP-01 and TLS-ALPN-01
// one of validation.allowedNetworks holds all of lab.clientNetwork.
func LabHostsAnswer(s *Spec, c string) bool { return HostsAnswer(s, c, LabClientNetwork(s)) }

// HostsAnswer says whether client hosts in network hosts can answer
// challenge c: it is offered, and (HTTP-01, TLS-ALPN-01) one of
// validation.allowedNetworks holds hosts, so the VAs may connect there.
func HostsAnswer(s *Spec, c string, hosts netip.Prefix) bool {
	if !slices.Contains(s.Validation.Challenges, c) {
		return false
	}
	if c == ChallengeDNS01 {
		return true
	}
	if !hosts.IsValid() {
		return false
	}
	hosts = hosts.Masked()
	for _, n := range s.Validation.AllowedNetworks {
		if p, err := addition.ParseNetwork(n); err == nil && p.Bits() <= hosts.Bits() && p.Contains(hosts.Addr()) {
			return true
		}
	}
	return false
}

// PrometheusOff turns the lab's Prometheus off.
const PrometheusOff = "off"

// Accounts says how ACME accounts follow the ACME name from site to site.
type Accounts struct {
	// Replication: "mariadb" (every site pulls boulder_sa.registrations from
	// every peer with MariaDB's own multi-source replication) or "off".
	Replication string `yaml:"replication"`
	// BinlogRetention is how long a site keeps its binary log: the longest
	// a peer may be unreachable and still catch up without a re-seed.
	BinlogRetention Duration `yaml:"binlogRetention"`
}

// Resume modes.
const (
	ResumeHistory = "history"
	ResumeOff     = "off"
)

// Failback modes.
const (
	FailbackManual    = "manual"
	FailbackAutomatic = "automatic"
)

// Failover is the controller's policy.
type Failover struct {
	Probes Probes `yaml:"probes"`
	// DownAfter consecutive hard failures mark a site down.
	DownAfter int `yaml:"downAfter"`
	// UpAfter consecutive deep successes (plus StablePeriod) mark it healthy.
	UpAfter      int      `yaml:"upAfter"`
	StablePeriod Duration `yaml:"stablePeriod"`
	// HoldDown is the least time between two moves of the ACME name.
	HoldDown Duration `yaml:"holdDown"`
	Failback string   `yaml:"failback"`
	// Listen is where the controller serves its status page, JSON API and
	// /metrics (loopback by default).
	Listen string `yaml:"listen"`
	// AdminTokenFile holds the token operator calls (move, drain) need.
	AdminTokenFile string `yaml:"adminTokenFile"`
	// Quorum is how many voting controllers must see a site down before it
	// is down (more than 1 needs several controllers on shared etcd).
	Quorum int `yaml:"quorum"`
	// ViewMaxAge: a controller's probe view older than this does not count.
	ViewMaxAge Duration `yaml:"viewMaxAge"`
	// Resume: "history" (a restarted controller replays its probe history;
	// a site healthy in it until at most ResumeWithin before the start is
	// healthy after ResumeConfirm fresh deep successes instead of UpAfter
	// over StablePeriod) or "off" (every start needs the full proof).
	Resume        string   `yaml:"resume"`
	ResumeWithin  Duration `yaml:"resumeWithin"`
	ResumeConfirm int      `yaml:"resumeConfirm"`
	// Etcd coordinates the controllers: leader election, shared probe
	// views, operator commands and drains.
	Etcd Etcd `yaml:"etcd"`
}

// Backup is the leading controller's off-site copy of every site: a
// consistent backup of each site's database through its agent, and the
// latest CRL of every shard each site published (docs/backup.md). `cairn
// site rebuild` restores a lost site from them.
type Backup struct {
	// Off turns it off: no backups are taken and the agents refuse them
	// (a backup holds the site's whole database: accounts, orders,
	// certificates; no keys).
	Off bool `yaml:"off"`
	// Every is how often each site's database is backed up.
	Every Duration `yaml:"every"`
	// Keep is how many backups per site are kept; older ones are removed.
	Keep int `yaml:"keep"`
	// Dir is where, on the controller's host (relative to the spec).
	Dir string `yaml:"dir"`
}

// Etcd is where the controllers coordinate. Without endpoints the
// controller runs a one-member etcd inside its own process.
type Etcd struct {
	// Endpoints of an external etcd cluster that several controllers share
	// (e.g. https://10.1.0.5:2379); empty means embedded.
	Endpoints []string `yaml:"endpoints"`
	// CAFile, CertFile, KeyFile: TLS to the external cluster (optional;
	// CertFile and KeyFile give a client certificate).
	CAFile   string `yaml:"caFile"`
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// InsecureNoMutualTLS accepts an external cluster over plain http://
	// or without a client certificate. Whoever reaches such an etcd can
	// write the controllers' leadership, views and revocation journal.
	InsecureNoMutualTLS bool `yaml:"insecureNoMutualTLS"`
	// Listen is the embedded etcd's client address (mutual TLS with
	// certificates made at run time; its peer port is the next one).
	Listen string `yaml:"listen"`
	// DataDir of the embedded etcd, relative to the spec's directory.
	DataDir string `yaml:"dataDir"`
	// Prefix of every key cairn writes.
	Prefix string `yaml:"prefix"`
	// SessionTTL: a controller that stops renewing loses its leadership
	// and its view after this long.
	SessionTTL Duration `yaml:"sessionTTL"`
}

// Embedded reports whether the controller runs its own one-member etcd.
func (e Etcd) Embedded() bool { return len(e.Endpoints) == 0 }

// Probes sets per-kind probe intervals.
type Probes struct {
	Nonce    Duration `yaml:"nonce"`
	Account  Duration `yaml:"account"`
	Issuance Duration `yaml:"issuance"`
	CRL      Duration `yaml:"crl"`
}

// SiteAt names the site that has one of addrs as its address ("" if none).
func (s *Spec) SiteAt(addrs ...string) string {
	for _, site := range s.Sites {
		if slices.Contains(addrs, site.Address) {
			return site.Name
		}
	}
	return ""
}

// SiteByName returns the site with that name.
// EpochName is the TXT record next to the ACME name where the controller
// writes its epoch.
func (s *Spec) EpochName() string { return "_cairn-epoch." + s.ACME.Name }

// PrimaryDNS is the address of the authoritative server that takes
// updates (validated: exactly one).
func (s *Spec) PrimaryDNS() netip.AddrPort {
	for _, d := range s.DNS.Servers {
		if d.Role == "primary" {
			return netip.MustParseAddrPort(d.Address)
		}
	}
	panic("cluster spec without primary (not validated)")
}

// SecondaryDNS are the addresses of the servers that follow the primary.
func (s *Spec) SecondaryDNS() []netip.AddrPort {
	var out []netip.AddrPort
	for _, d := range s.DNS.Servers {
		if d.Role == "secondary" {
			out = append(out, netip.MustParseAddrPort(d.Address))
		}
	}
	return out
}

// DNSAddresses are every authoritative server's host:port.
func (s *Spec) DNSAddresses() []string {
	var out []string
	for _, d := range s.DNS.Servers {
		out = append(out, d.Address)
	}
	return out
}

func (s *Spec) SiteByName(name string) (*Site, bool) {
	for i := range s.Sites {
		if s.Sites[i].Name == name {
			return &s.Sites[i], true
		}
	}
	return nil, false
}

// SiteNames lists the sites in file order.
func (s *Spec) SiteNames() []string {
	names := make([]string, len(s.Sites))
	for i, site := range s.Sites {
		names[i] = site.Name
	}
	return names
}

// addrOf parses host of a host:port or bare address; ok false if invalid.
func addrOf(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}
