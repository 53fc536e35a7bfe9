package cluster

import (
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/letsencrypt/boulder/policy"

	"github.com/cairn-pki/cairn/internal/boulderbin/addition"
	"github.com/cairn-pki/cairn/internal/namescope"
)

// Limits Boulder's ceremony tool and its lints enforce.
const (
	MaxRootValidityDays         = 3660
	MaxIntermediateValidityDays = 1098
	MaxCRLValidityDays          = 365
	maxTokenLabel               = 32 // PKCS#11 CK_TOKEN_INFO.label
)

// Key types cairn can create through PKCS#11.
var (
	ECDSAKeyTypes = []string{"ecdsa-p256", "ecdsa-p384"}
	RSAKeyTypes   = []string{"rsa-2048", "rsa-3072", "rsa-4096"}
)

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

type validator struct {
	spec *Spec
	errs Errors
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Path: excerpt(path, 80), Line: v.spec.lines[path], Msg: fieldMsg(format, args...)})
}

// Validate checks a spec with defaults applied and returns every problem.
func (s *Spec) Validate() Errors {
	v := &validator{spec: s}
	v.name()
	v.policy() // before every name check: names may end in a private suffix
	v.acme()
	v.profiles()
	v.dns()
	v.pki()
	v.sites()
	v.failover()
	v.backup()
	v.accounts()
	v.monitoring()
	v.validation()
	v.allowedNames()
	v.lab()
	return v.errs
}

// policy checks the private suffixes, and makes this process's Boulder
// name policy accept names under them, as every site's Boulder will (the
// name checks below, `cairn validate`).
func (v *validator) policy() {
	var ok []string
	for i, s := range v.spec.Policy.PrivateSuffixes {
		path := fmt.Sprintf("policy.privateSuffixes[%d]", i)
		switch err := addition.CheckSuffix(s); {
		case err != nil:
			v.add(path, "cannot be a private suffix: %v; list suffixes outside the public suffix list, e.g. internal", err)
		case slices.Contains(ok, s):
			v.add(path, "%q is listed twice", s)
		default:
			ok = append(ok, s)
		}
	}
	if err := addition.Register(ok); err != nil {
		v.add("policy.privateSuffixes", "%v", err)
	}
}

// neverAllowed are ranges validation must never connect to, whatever the
// spec lists, and why.
var neverAllowed = []struct {
	net netip.Prefix
	why string
}{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback: validation would connect to services on the VA's own host"},
	{netip.MustParsePrefix("::1/128"), "loopback: validation would connect to services on the VA's own host"},
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this host\" addresses (0.0.0.0 connects to the VA's own host)"},
	{netip.MustParsePrefix("::/128"), "the unspecified address (it connects to the VA's own host)"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped addresses (they reach IPv4 loopback and link-local too)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local: 169.254.169.254 is the cloud metadata service, which hands out the host's credentials"},
	{netip.MustParsePrefix("fe80::/10"), "link-local: validation would reach whatever shares the VA's link"},
	{netip.MustParsePrefix("224.0.0.0/3"), "multicast and reserved addresses, where no client serves a challenge"},
	{netip.MustParsePrefix("ff00::/8"), "multicast addresses, where no client serves a challenge"},
}

// validation checks the networks validation may reach and the challenge
// types offered.
func (v *validator) validation() {
	val := v.spec.Validation
	for i, n := range val.AllowedNetworks {
		path := fmt.Sprintf("validation.allowedNetworks[%d]", i)
		p, err := addition.ParseNetwork(n)
		if err != nil {
			v.add(path, "%v", err)
			continue
		}
		if p.Bits() == 0 {
			v.add(path, "%s is every address: list the networks your ACME clients are on (e.g. 10.0.0.0/8)", n)
			continue
		}
		for _, never := range neverAllowed {
			if never.net.Overlaps(p) {
				v.add(path, "%s includes %s: "+never.why+"; list only the networks your ACME clients are on", n, never.net)
				break
			}
		}
	}
	for i, r := range val.Resolvers {
		path := fmt.Sprintf("validation.resolvers[%d]", i)
		ap, err := parseResolver(r)
		switch {
		case err != nil:
			v.add(path, "%q is not an address: give the resolver as IP or IP:port, e.g. 10.0.0.53 or 10.0.0.53:53", excerpt(r, 40))
		case ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast():
			v.add(path, "%s cannot be a resolver: give the IP (and port) of one of your DNS resolvers", r)
		case slices.IndexFunc(val.Resolvers[:i], func(o string) bool { p, _ := parseResolver(o); return p == ap }) >= 0:
			v.add(path, "%s is listed twice", r)
		}
	}
	if len(val.Challenges) == 0 {
		v.add("validation.challenges", "needs at least one of %s", strings.Join(Challenges, ", "))
	}
	for i, c := range val.Challenges {
		path := fmt.Sprintf("validation.challenges[%d]", i)
		switch {
		case !slices.Contains(Challenges, c):
			v.add(path, "%q is not a challenge type; use %s", c, strings.Join(Challenges, ", "))
		case slices.Index(val.Challenges, c) != i:
			v.add(path, "%q is listed twice", c)
		}
	}
}

// lab checks the client hosts' block: IPv4, a network address, room for
// the bridge and hosts, and not an address range the sites use.
func (v *validator) lab() {
	raw := v.spec.Lab.ClientNetwork
	n, err := netip.ParsePrefix(raw)
	switch {
	case err != nil || !n.Addr().Is4():
		v.add("lab.clientNetwork", "%.40q is not an IPv4 CIDR block (e.g. 10.77.0.0/24)", raw)
	case n.Masked() != n:
		v.add("lab.clientNetwork", "%s is not a network address; use %s", n, n.Masked())
	case n.Bits() < 16 || n.Bits() > 29:
		v.add("lab.clientNetwork", "/%d is out of range; use a block from /16 to /29", n.Bits())
	case n.Addr().IsLoopback() || n.Addr().IsMulticast() || n.Addr().IsUnspecified() || n.Addr().IsLinkLocalUnicast():
		v.add("lab.clientNetwork", "%s is a loopback, link-local or multicast block; use a private one such as 10.77.0.0/24", n)
	default:
		for i, s := range v.spec.Sites {
			if sn, err := netip.ParsePrefix(s.ServiceNetwork); err == nil && sn.Overlaps(n) {
				v.add("lab.clientNetwork", "%s overlaps sites[%d].serviceNetwork %s; client hosts need a block of their own", n, i, sn)
			}
		}
	}
}

// MaxBinlogRetention is MariaDB's binlog_expire_logs_seconds maximum (99 days).
const MaxBinlogRetention = 99 * 24 * time.Hour

func (v *validator) monitoring() {
	m := v.spec.Monitoring
	if m.Prometheus != PrometheusOff {
		if _, err := netip.ParseAddrPort(m.Prometheus); err != nil {
			v.add("monitoring.prometheus", "%.30q is not IP:port (e.g. 127.0.30.1:9090) or off", m.Prometheus)
		} else if m.Prometheus == v.spec.Failover.Listen || m.Prometheus == v.spec.Failover.Etcd.Listen {
			v.add("monitoring.prometheus", "%s is also the controller's or etcd's address; use another port", m.Prometheus)
		}
	}
	if r := m.Retention.Duration; r < time.Hour || r > 90*24*time.Hour {
		v.add("monitoring.retention", "%s is out of range; use 1h to 2160h", m.Retention)
	}
}

// allowedNames checks policy.allowedNames: suffixes (or *.suffix), and
// that they cover the names the health probes order.
func (v *validator) allowedNames() {
	for i, n := range v.spec.Policy.AllowedNames {
		if _, err := namescope.Normalize(n); err != nil {
			v.add(fmt.Sprintf("policy.allowedNames[%d]", i), "%v", err)
			return
		}
	}
	// The health probes order names under the cluster zone: refused, every
	// site would look broken.
	allowed, _ := namescope.NormalizeAll(v.spec.Policy.AllowedNames)
	for _, s := range v.spec.Sites {
		if probe := "probe-" + s.Name + "." + v.spec.ACME.Zone; len(allowed) > 0 && !namescope.Covers(allowed, probe) {
			v.add("policy.allowedNames", "does not cover %s, where the health probes of site %s order; add %s (or that name)", probe, s.Name, v.spec.ACME.Zone)
			return
		}
	}
}

func (v *validator) accounts() {
	a := v.spec.Accounts
	if a.Replication != ReplicationMariaDB && a.Replication != ReplicationOff {
		v.add("accounts.replication", "%.20q is not a mode; use mariadb (accounts follow the ACME name) or off", a.Replication)
	}
	if r := a.BinlogRetention.Duration; r < time.Hour || r > MaxBinlogRetention {
		v.add("accounts.binlogRetention", "%s is out of range; use 1h to %s (MariaDB's limit)", a.BinlogRetention, MaxBinlogRetention)
	}
}

func (v *validator) name() {
	if !dnsLabelRE.MatchString(v.spec.Name) {
		v.add("name", "%q is not a DNS label (lower-case letters, digits and '-', at most 63)", v.spec.Name)
	}
}

func (v *validator) acme() {
	a := v.spec.ACME
	zone := strings.TrimSuffix(a.Zone, ".")
	if err := policy.ValidDomain(zone); err != nil {
		v.add("acme.zone", "%q is refused by Boulder's name policy: %v (use a zone under home.arpa or a domain you own, or list its suffix in policy.privateSuffixes)", a.Zone, err)
	}
	name := strings.TrimSuffix(a.Name, ".")
	if err := policy.ValidDomain(name); err != nil {
		v.add("acme.name", "%q is refused by Boulder's name policy: %v", a.Name, err)
	} else if !strings.HasSuffix(name, "."+zone) {
		v.add("acme.name", "%q must be a name inside acme.zone %q (the controller can only update that zone)", a.Name, a.Zone)
	}
	if a.TTL < 1 || a.TTL > 86400 {
		v.add("acme.ttl", "%d is out of range; use 1..86400 seconds (the lab uses 30)", a.TTL)
	}
	if a.HTTPSPort < 1 || a.HTTPSPort > 65535 {
		v.add("acme.httpsPort", "%d is not a TCP port (1..65535)", a.HTTPSPort)
	}
	if err := policy.ValidDomain(strings.TrimSuffix(a.CAAIdentity, ".")); err != nil {
		v.add("acme.caaIdentity", "%q is not a valid domain name: %v", a.CAAIdentity, err)
	}
}

// Boulder's limits on a certificate profile: its CA refuses a validity of
// 100 days or more (issuance.NewProfile) and a profile name that is not 1
// to 32 ASCII letters and digits (the CA's, RA's and WFE's config
// validation); it backdates notBefore by ProfileBackdate, which a validity
// must exceed or certificates would be expired when issued.
const (
	MaxProfileValidity = 100 * 24 * time.Hour // exclusive
	ProfileBackdate    = time.Hour + 5*time.Minute
	maxDescription     = 200
)

var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)

func (v *validator) profiles() {
	names := map[string]int{}
	for i, p := range v.spec.Profiles {
		path := fmt.Sprintf("profiles[%d]", i)
		switch {
		case p.Name == "":
			v.add(path+".name", "is required: 1..32 letters and digits, e.g. shortlived")
		case !profileNameRE.MatchString(p.Name):
			v.add(path+".name", "%q must be 1..32 ASCII letters and digits (Boulder's rule), e.g. shortlived", p.Name)
		default:
			if j, dup := names[p.Name]; dup {
				v.add(path+".name", "%q already used by profiles[%d]; each profile needs its own name", p.Name, j)
			} else {
				names[p.Name] = i
			}
		}
		switch d := p.Validity.Duration; {
		case d == 0:
			v.add(path+".validity", "is required: how long its certificates are valid, e.g. 7d or 90d")
		case d <= ProfileBackdate:
			v.add(path+".validity", "%s is too short: Boulder backdates certificates by %s; use more, e.g. 7d", p.Validity, ProfileBackdate)
		case d >= MaxProfileValidity:
			v.add(path+".validity", "%s is too long: Boulder's CA refuses 100 days or more; use at most 99d", p.Validity)
		case d%time.Second != 0:
			v.add(path+".validity", "%s is not a whole number of seconds", p.Validity)
		}
		if len([]rune(p.Description)) > maxDescription || strings.ContainsFunc(p.Description, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			v.add(path+".description", "must be one line of at most %d characters (the directory shows it to clients)", maxDescription)
		}
	}
	// A default naming a listed profile whose name is wrong is reported
	// there, once.
	d := v.spec.ACME.DefaultProfile
	if !slices.ContainsFunc(v.spec.Profiles, func(p Profile) bool { return p.Name == d }) {
		v.add("acme.defaultProfile", "%q is not one of profiles[].name (%s); name the profile a client that asks for none gets",
			d, strings.Join(slices.Sorted(maps.Keys(names)), ", "))
	}
}

func (v *validator) dns() {
	d := v.spec.DNS
	if len(d.Servers) == 0 {
		v.add("dns.servers", "needs at least one authoritative server")
	}
	primaries := 0
	names := map[string]int{}
	addrs := map[string]int{}
	for i, srv := range d.Servers {
		p := fmt.Sprintf("dns.servers[%d]", i)
		if srv.Name == "" {
			v.add(p+".name", "is required")
		} else if j, dup := names[srv.Name]; dup {
			v.add(p+".name", "%q already used by dns.servers[%d]", srv.Name, j)
		} else {
			names[srv.Name] = i
		}
		if _, err := netip.ParseAddrPort(srv.Address); err != nil {
			v.add(p+".address", "%q is not IP:port (e.g. 127.0.30.2:53)", srv.Address)
		} else if j, dup := addrs[srv.Address]; dup {
			v.add(p+".address", "%s already used by dns.servers[%d]", srv.Address, j)
		} else {
			addrs[srv.Address] = i
		}
		switch srv.Role {
		case "primary":
			primaries++
		case "secondary":
		default:
			v.add(p+".role", "%q is not a role; use primary or secondary", srv.Role)
		}
	}
	if len(d.Servers) > 0 && primaries != 1 {
		v.add("dns.servers", "has %d primaries; exactly one server must have role: primary (it takes the RFC 2136 updates)", primaries)
	}
	v.path("dns.tsig.controllerKeyFile", d.TSIG.ControllerKeyFile)
	v.path("dns.tsig.clientKeyFile", d.TSIG.ClientKeyFile)
	switch d.Provider {
	case DNSProviderRFC2136:
	case DNSProviderPowerDNS:
		if u, err := url.Parse(d.PowerDNS.API); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			v.add("dns.powerdns.api", "%q is not the API's base URL (e.g. http://10.0.0.2:8081)", d.PowerDNS.API)
		}
		v.path("dns.powerdns.apiKeyFile", d.PowerDNS.APIKeyFile)
		if d.PowerDNS.ServerID == "" || strings.ContainsAny(d.PowerDNS.ServerID, "/?# ") {
			v.add("dns.powerdns.serverID", "%q is not a server id (PowerDNS calls itself localhost)", d.PowerDNS.ServerID)
		}
	default:
		v.add("dns.provider", "%q is not a provider; use %s or %s", d.Provider, DNSProviderRFC2136, DNSProviderPowerDNS)
	}
	if d.TSIG.ControllerKeyFile != "" && d.TSIG.ControllerKeyFile == d.TSIG.ClientKeyFile {
		v.add("dns.tsig.clientKeyFile", "must differ from controllerKeyFile: clients may only touch _acme-challenge records, the controller only the ACME name")
	}
}

func (v *validator) path(field, p string) {
	if p == "" {
		v.add(field, "is required")
	} else if strings.ContainsRune(p, 0) {
		v.add(field, "contains a NUL byte")
	}
}

func (v *validator) pki() {
	p := v.spec.PKI
	v.path("pki.dir", p.Dir)
	if p.Organization == "" {
		v.add("pki.organization", "is required (it goes into every CA subject)")
	}
	if len(p.Country) != 2 || strings.ToUpper(p.Country) != p.Country {
		v.add("pki.country", "%q must be a two-letter upper-case country code (XX if none applies)", p.Country)
	}
	v.publicURL("pki.baseURL", p.BaseURL)
	if p.Root.CommonName == "" {
		v.add("pki.root.commonName", "is required")
	}
	v.keyType("pki.root.keyType", p.Root.KeyType, append(slices.Clone(ECDSAKeyTypes), RSAKeyTypes...))
	v.days("pki.root.validityDays", p.Root.ValidityDays, MaxRootValidityDays)
	v.keyType("pki.intermediates.ecdsaKeyType", p.Intermediates.ECDSAKeyType, ECDSAKeyTypes)
	v.keyType("pki.intermediates.rsaKeyType", p.Intermediates.RSAKeyType, RSAKeyTypes)
	v.days("pki.intermediates.validityDays", p.Intermediates.ValidityDays, MaxIntermediateValidityDays)
	if p.Infrastructure.CommonName == "" {
		v.add("pki.infrastructure.commonName", "is required")
	}
	v.keyType("pki.infrastructure.keyType", p.Infrastructure.KeyType, append(slices.Clone(ECDSAKeyTypes), RSAKeyTypes...))
	v.days("pki.infrastructure.validityDays", p.Infrastructure.ValidityDays, MaxIntermediateValidityDays)
	v.days("pki.crlValidityDays", p.CRLValidityDays, MaxCRLValidityDays)
	if p.Root.CommonName != "" && p.Root.CommonName == p.Infrastructure.CommonName {
		v.add("pki.infrastructure.commonName", "must differ from pki.root.commonName (subjects must be unique in the cluster)")
	}

	h := p.HSM
	switch h.Backend {
	case BackendSoftHSM, BackendPKCS11:
	default:
		v.add("pki.hsm.backend", "%q is not a backend; use softhsm (the lab) or pkcs11 (module, token labels and PIN files you provide)", h.Backend)
	}
	if !filepath.IsAbs(h.Module) {
		v.add("pki.hsm.module", "%q must be the absolute path of a PKCS#11 library (e.g. %s)", h.Module, DefaultSoftHSMLib)
	}
	labels := map[string]string{}
	v.token("pki.hsm.root", h.Root, labels)
	v.token("pki.hsm.infrastructure", h.Infrastructure, labels)
	for i, s := range v.spec.Sites {
		v.token(fmt.Sprintf("sites[%d].hsm", i), s.HSM, labels)
	}
}

// token checks one HSM token; labels maps label -> field path of its first
// use, because the root's token must be separate from every site's.
func (v *validator) token(path string, t Token, labels map[string]string) {
	switch {
	case t.Label == "":
		v.add(path+".label", "is required with pki.hsm.backend %s", v.spec.PKI.HSM.Backend)
	case len(t.Label) > maxTokenLabel:
		v.add(path+".label", "%q is longer than the %d bytes PKCS#11 allows", t.Label, maxTokenLabel)
	default:
		if first, dup := labels[t.Label]; dup {
			v.add(path+".label", "%q is already the token of %s; the root, the infrastructure CA and every site need their own token", t.Label, first)
		} else {
			labels[t.Label] = path
		}
	}
	v.path(path+".pinFile", t.PINFile)
}

func (v *validator) keyType(path, kt string, allowed []string) {
	if !slices.Contains(allowed, kt) {
		v.add(path, "%q is not supported here; use one of %s", kt, strings.Join(allowed, ", "))
	}
}

func (v *validator) days(path string, d, max int) {
	if d < 1 || d > max {
		v.add(path, "%d is out of range; use 1..%d days (Boulder's ceremony lints refuse longer)", d, max)
	}
}

// publicURL checks an http(s) URL whose host Boulder's lints accept in a
// certificate (a name under a public suffix).
func (v *validator) publicURL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(path, "%q is not an http:// or https:// URL", raw)
		return
	}
	if !strings.HasSuffix(u.Path, "/") {
		v.add(path, "%q must end with '/' (file names are appended to it)", raw)
	}
	if err := policy.ValidDomain(u.Hostname()); err != nil {
		v.add(path, "host %q is refused in certificates: %v", u.Hostname(), err)
	}
}

// sites checks each site, and that no two sites (or a site and a DNS
// server) share what each must have to itself.
func (v *validator) sites() {
	sites := v.spec.Sites
	if len(sites) == 0 {
		v.add("sites", "needs at least one site (failover needs two or more)")
	}
	c := &siteClaims{names: map[string]int{}, prefixes: map[uint8]int{}, addrs: map[netip.Addr]string{}, crls: map[string]int{}}
	for _, srv := range v.spec.DNS.Servers {
		if a, ok := addrOf(srv.Address); ok {
			c.addrs[a] = "a dns.servers address"
		}
	}
	for i, s := range sites {
		p := fmt.Sprintf("sites[%d]", i)
		v.siteIdentity(p, i, s, c)
		v.siteNetwork(p, i, s, c)
		v.siteCRLs(p, i, s, c)
	}
}

// siteClaims are what the sites so far use that no other site (or DNS
// server) may: names, serial prefixes, addresses, service networks and
// CRL URLs, each with its owner.
type siteClaims struct {
	names     map[string]int
	prefixes  map[uint8]int
	addrs     map[netip.Addr]string
	nets      []netip.Prefix
	netOwners []int
	crls      map[string]int
}

// siteIdentity checks site i's name, priority and serial prefix.
func (v *validator) siteIdentity(p string, i int, s Site, c *siteClaims) {
	if !dnsLabelRE.MatchString(s.Name) {
		v.add(p+".name", "%q is not a DNS label (lower-case letters, digits and '-')", s.Name)
	} else if j, dup := c.names[s.Name]; dup {
		v.add(p+".name", "%q already used by sites[%d]", s.Name, j)
	} else {
		c.names[s.Name] = i
	}
	if s.Priority < 1 {
		v.add(p+".priority", "%d must be 1 or more (lower is preferred)", s.Priority)
	}
	switch sp := s.SerialPrefix; {
	case !sp.IsSet():
		v.add(p+".serialPrefix", "is required: two hex digits 0x01..0x7f, unique per site")
	case sp.Value() < 0x01 || sp.Value() > 0x7f:
		v.add(p+".serialPrefix", "%s is out of range; Boulder accepts 0x01..0x7f", sp)
	default:
		if j, dup := c.prefixes[sp.Value()]; dup {
			v.add(p+".serialPrefix", "%s already used by sites[%d]", sp, j)
		} else {
			c.prefixes[sp.Value()] = i
		}
	}
}

// siteNetwork checks site i's address and service network.
func (v *validator) siteNetwork(p string, i int, s Site, c *siteClaims) {
	if a, err := netip.ParseAddr(s.Address); err != nil {
		v.add(p+".address", "%q is not an IP address", s.Address)
	} else if owner, dup := c.addrs[a]; dup {
		v.add(p+".address", "%s already used by %s", a, owner)
	} else {
		c.addrs[a] = p
	}
	if n, err := netip.ParsePrefix(s.ServiceNetwork); err != nil {
		v.add(p+".serviceNetwork", "%q is not a CIDR block (e.g. 127.0.31.0/24)", s.ServiceNetwork)
	} else {
		n = n.Masked()
		for k, other := range c.nets {
			if other.Overlaps(n) {
				v.add(p+".serviceNetwork", "%s overlaps sites[%d].serviceNetwork %s", n, c.netOwners[k], other)
			}
		}
		c.nets = append(c.nets, n)
		c.netOwners = append(c.netOwners, i)
	}
}

// siteCRLs checks site i's CRL URL and CRL store.
func (v *validator) siteCRLs(p string, i int, s Site, c *siteClaims) {
	v.publicURL(p+".crlBaseURL", s.CRLBaseURL)
	if !strings.HasPrefix(s.CRLBaseURL, "http://") {
		v.add(p+".crlBaseURL", "%q must be http:// (Boulder requires CRL URLs over plain HTTP)", s.CRLBaseURL)
	}
	if !bucketRE.MatchString(s.CRLStore.Bucket) {
		v.add(p+".crlStore.bucket", "%q is not an S3 bucket name (3-63 lower-case letters, digits, '.', '-')", s.CRLStore.Bucket)
	}
	if e := s.CRLStore.Endpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(p+".crlStore.endpoint", "%q is not an http(s) URL of an S3-compatible store", e)
		}
		if s.CRLStore.CredentialsFile == "" {
			v.add(p+".crlStore.credentialsFile", "is required with crlStore.endpoint (AWS shared-credentials format, mode 0600)")
		}
	} else if s.CRLStore.CredentialsFile != "" {
		v.add(p+".crlStore.credentialsFile", "is only used with crlStore.endpoint; remove it or set the endpoint")
	}
	// Sites may share one URL only by sharing one store outside every site
	// (objects are named by issuer, so they never collide there).
	if j, dup := c.crls[s.CRLBaseURL]; dup && s.CRLBaseURL != "" && !sharedStore(v.spec.Sites[j].CRLStore, s.CRLStore) {
		v.add(p+".crlBaseURL", "%q already used by sites[%d]; each site publishes its own CRLs (or both name the same crlStore endpoint and bucket)", s.CRLBaseURL, j)
	} else {
		c.crls[s.CRLBaseURL] = i
	}
}

// sharedStore reports whether two sites publish to the same external
// store (the cluster's bucket).
func sharedStore(a, b CRLStore) bool {
	return a.Endpoint != "" && a.Endpoint == b.Endpoint && a.Bucket == b.Bucket
}

func (v *validator) backup() {
	b := v.spec.Backup
	if b.Every.Duration < time.Minute {
		v.add("backup.every", "%s is too often: at least 1m (each backup reads a site's whole database)", b.Every)
	}
	if b.Keep < 1 {
		v.add("backup.keep", "%d must be 1 or more", b.Keep)
	}
}

func (v *validator) failover() {
	f := v.spec.Failover
	pos := func(path string, d Duration) {
		if d.Duration <= 0 {
			v.add(path, "%s must be positive", d)
		}
	}
	pos("failover.probes.nonce", f.Probes.Nonce)
	pos("failover.probes.account", f.Probes.Account)
	pos("failover.probes.issuance", f.Probes.Issuance)
	pos("failover.probes.crl", f.Probes.CRL)
	pos("failover.stablePeriod", f.StablePeriod)
	if f.HoldDown.Duration < 0 {
		v.add("failover.holdDown", "%s must not be negative", f.HoldDown)
	}
	if f.DownAfter < 1 {
		v.add("failover.downAfter", "%d must be 1 or more", f.DownAfter)
	}
	if f.UpAfter < 1 {
		v.add("failover.upAfter", "%d must be 1 or more", f.UpAfter)
	}
	switch f.Resume {
	case ResumeHistory, ResumeOff:
	default:
		v.add("failover.resume", "%q is not a mode; use history or off", f.Resume)
	}
	pos("failover.resumeWithin", f.ResumeWithin)
	if f.ResumeConfirm < 1 {
		v.add("failover.resumeConfirm", "%d must be 1 or more", f.ResumeConfirm)
	}
	switch f.Failback {
	case FailbackManual, FailbackAutomatic:
	default:
		v.add("failover.failback", "%q is not a mode; use manual or automatic", f.Failback)
	}
	if _, err := netip.ParseAddrPort(f.Listen); err != nil {
		v.add("failover.listen", "%q is not IP:port (e.g. 127.0.0.1:9180)", f.Listen)
	}
	v.path("failover.adminTokenFile", f.AdminTokenFile)
	v.etcd()
}

func (v *validator) etcd() {
	f := v.spec.Failover
	e := f.Etcd
	if f.Quorum < 1 {
		v.add("failover.quorum", "%d must be 1 or more", f.Quorum)
	} else if f.Quorum > 1 && e.Embedded() {
		v.add("failover.quorum", "%d needs as many controllers on a shared etcd: set failover.etcd.endpoints, or use 1", f.Quorum)
	}
	if least := 2 * max(f.Probes.Nonce.Duration, f.Probes.Account.Duration); f.ViewMaxAge.Duration < least {
		v.add("failover.viewMaxAge", "%s is shorter than two probe intervals; use %s or more", f.ViewMaxAge, least)
	}
	for i, ep := range e.Endpoints {
		if u, err := url.Parse(ep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			v.add(fmt.Sprintf("failover.etcd.endpoints[%d]", i), "%q is not an etcd client URL like https://10.0.0.5:2379", ep)
		}
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		v.add("failover.etcd.keyFile", "certFile and keyFile go together (the client certificate and its key)")
	}
	if !e.Embedded() && !e.InsecureNoMutualTLS {
		// The controllers' leadership, views and revocation journal live
		// there: only holders of a client certificate may write them.
		for i, ep := range e.Endpoints {
			if u, err := url.Parse(ep); err == nil && u.Scheme == "http" {
				v.add(fmt.Sprintf("failover.etcd.endpoints[%d]", i), "%q is plain http: use https:// with certFile and keyFile (or insecureNoMutualTLS: true, not for production)", ep)
			}
		}
		if e.CertFile == "" && e.KeyFile == "" {
			v.add("failover.etcd.certFile", "an external etcd needs a client certificate (certFile, keyFile; the etcd must require one: --client-cert-auth), or insecureNoMutualTLS: true (not for production)")
		}
	}
	if e.Embedded() {
		if e.CAFile != "" || e.CertFile != "" || e.InsecureNoMutualTLS {
			v.add("failover.etcd.caFile", "TLS files are for an external cluster; set failover.etcd.endpoints or remove them")
		}
		if _, err := netip.ParseAddrPort(e.Listen); err != nil {
			v.add("failover.etcd.listen", "%q is not IP:port (e.g. 127.0.0.1:2379)", e.Listen)
		} else if e.Listen == f.Listen {
			v.add("failover.etcd.listen", "%s is also failover.listen; use another port", e.Listen)
		}
		v.path("failover.etcd.dataDir", e.DataDir)
	} else if e.Listen != "" || e.DataDir != "" {
		v.add("failover.etcd.listen", "listen and dataDir are for the embedded etcd; remove them when endpoints are set")
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		v.add("failover.etcd.prefix", "%q must start and end with / (e.g. /cairn/lab/)", e.Prefix)
	}
	if e.SessionTTL.Duration < 2*time.Second {
		v.add("failover.etcd.sessionTTL", "%s is too short for an etcd lease; use 2s or more", e.SessionTTL)
	}
}
