package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Lab defaults. The lab runs every site on loopback: the cluster DNS on
// 127.0.30.0/24 and site i on 127.0.(31+i).0/24.
const (
	DefaultName = "lab"
	DefaultTTL  = 30
	// DefaultPowerDNSAPIPort is where the PowerDNS API listens, on the primary's address.
	DefaultPowerDNSAPIPort = 8081
	DefaultHTTPSPort       = 443
	DefaultSoftHSMLib      = "/usr/lib/softhsm/libsofthsm2.so"
	DefaultPKIDir          = "pki"
	DefaultSecretsDir      = "secrets"
	labDNSPrimary          = "127.0.30.2:53"
	labDNSSecondary        = "127.0.30.3:53"
	labSiteFirstOctet3     = 31
	// MaxLabSites bounds the default address plan (127.0.31-127.0.254).
	MaxLabSites = 254 - labSiteFirstOctet3
)

// DefaultSiteNames are the sites `cairn init` writes without --sites.
var DefaultSiteNames = []string{"a", "b", "c"}

// Default returns a lab spec for the named sites, with every default filled.
func Default(siteNames []string) *Spec {
	s := &Spec{Name: DefaultName}
	for _, n := range siteNames {
		s.Sites = append(s.Sites, Site{Name: n})
	}
	s.ApplyDefaults()
	return s
}

// ApplyDefaults fills every unset field with the lab default or with a value
// derived from other fields (zone from name, URLs from zone, and so on).
// Fields the operator set are never changed.
func (s *Spec) ApplyDefaults() {
	def(&s.Name, DefaultName)
	s.acmeDefaults()
	s.profileDefaults()
	s.dnsDefaults()
	s.pkiDefaults()
	s.siteDefaults()
	s.failoverDefaults()
	defDur(&s.Backup.Every, 6*time.Hour)
	defInt(&s.Backup.Keep, 14)
	def(&s.Backup.Dir, "backups")
	def(&s.Accounts.Replication, ReplicationMariaDB)
	defDur(&s.Accounts.BinlogRetention, 30*24*time.Hour)
	def(&s.Monitoring.Prometheus, portNext(s.Failover.Listen, 9090))
	defDur(&s.Monitoring.Retention, 48*time.Hour)
	if len(s.Validation.Challenges) == 0 {
		s.Validation.Challenges = []string{ChallengeDNS01}
		if len(s.Validation.AllowedNetworks) > 0 {
			s.Validation.Challenges = slices.Clone(Challenges)
		}
	}
	def(&s.Lab.ClientNetwork, defaultClientNetwork(s))
}

// defaultClientNetwork is 10.77.B.0/24 when the primary DNS server is on
// 127.0.B.x (each lab on a machine has a loopback block of its own, so its
// client hosts get a block of their own too), else 10.77.0.0/24.
func defaultClientNetwork(s *Spec) string {
	third := 0
	for _, srv := range s.DNS.Servers {
		if a, ok := addrOf(srv.Address); ok && srv.Role == "primary" && a.IsLoopback() && a.Is4() {
			third = int(a.As4()[2])
		}
	}
	return fmt.Sprintf("10.77.%d.0/24", third)
}

// def sets *p to v when it is empty.
func def(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// defInt sets *p to v when it is zero.
func defInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

// defDur sets *p to v when it is zero.
func defDur(p *Duration, v time.Duration) {
	if p.Duration == 0 {
		p.Duration = v
	}
}

// acmeDefaults fills the ACME name, derived from the cluster's name.
func (s *Spec) acmeDefaults() {
	a := &s.ACME
	def(&a.Zone, s.Name+".home.arpa")
	def(&a.Name, "acme."+a.Zone)
	defInt(&a.TTL, DefaultTTL)
	defInt(&a.HTTPSPort, DefaultHTTPSPort)
	def(&a.CAAIdentity, "ca."+a.Zone)
}

// Default certificate profiles. ClassicProfile is the 90-day profile every
// site served before profiles could be configured, under the same name, so
// a client that asks for it (or for none) keeps getting what it got.
const (
	ClassicProfile    = "classic"
	ShortLivedProfile = "shortlived"
)

// profileDefaults fills the profiles (classic 90 days, shortlived 7 days
// when none are listed), their descriptions from their validity, and the
// default profile (the first listed).
func (s *Spec) profileDefaults() {
	if len(s.Profiles) == 0 {
		s.Profiles = []Profile{
			{Name: ClassicProfile, Validity: Duration{90 * 24 * time.Hour}},
			{Name: ShortLivedProfile, Validity: Duration{7 * 24 * time.Hour}},
		}
	}
	for i := range s.Profiles {
		p := &s.Profiles[i]
		if p.Description == "" && p.Validity.Duration > 0 {
			p.Description = describeValidity(p.Validity.Duration)
		}
	}
	def(&s.ACME.DefaultProfile, s.Profiles[0].Name)
}

// describeValidity says how long a profile's certificates are valid:
// "90 days", "1 day", else the duration ("36h0m0s").
func describeValidity(d time.Duration) string {
	switch days := d / (24 * time.Hour); {
	case d%(24*time.Hour) != 0:
		return d.String()
	case days == 1:
		return "1 day"
	default:
		return fmt.Sprintf("%d days", days)
	}
}

// dnsDefaults fills the cluster DNS: the lab's two servers, the provider
// (and PowerDNS's API on the primary) and the TSIG key files.
func (s *Spec) dnsDefaults() {
	if len(s.DNS.Servers) == 0 {
		s.DNS.Servers = []DNSServer{
			{Name: "primary", Address: labDNSPrimary, Role: "primary"},
			{Name: "secondary", Address: labDNSSecondary, Role: "secondary"},
		}
	}
	def(&s.DNS.Provider, DNSProviderRFC2136)
	if s.DNS.Provider == DNSProviderPowerDNS {
		if s.DNS.PowerDNS.API == "" && len(s.DNS.Servers) > 0 {
			for _, d := range s.DNS.Servers {
				if ap, err := netip.ParseAddrPort(d.Address); err == nil && d.Role == "primary" {
					s.DNS.PowerDNS.API = "http://" + netip.AddrPortFrom(ap.Addr(), DefaultPowerDNSAPIPort).String()
				}
			}
		}
		def(&s.DNS.PowerDNS.APIKeyFile, DefaultSecretsDir+"/pdns-api.key")
		def(&s.DNS.PowerDNS.ServerID, "localhost")
	}
	def(&s.DNS.TSIG.ControllerKeyFile, DefaultSecretsDir+"/tsig-controller.key")
	def(&s.DNS.TSIG.ClientKeyFile, DefaultSecretsDir+"/tsig-clients.key")
}

// pkiDefaults fills the PKI: names, key types and validities, and the
// SoftHSM tokens of the root and the infrastructure CA.
func (s *Spec) pkiDefaults() {
	p := &s.PKI
	def(&p.Dir, DefaultPKIDir)
	def(&p.Organization, "cairn "+s.Name)
	def(&p.Country, "XX")
	def(&p.BaseURL, "http://pki."+s.ACME.Zone+"/")
	def(&p.Root.CommonName, p.Organization+" Root X1")
	def(&p.Root.KeyType, "ecdsa-p384")
	defInt(&p.Root.ValidityDays, 3650)
	def(&p.Intermediates.ECDSAKeyType, "ecdsa-p384")
	def(&p.Intermediates.RSAKeyType, "rsa-2048")
	defInt(&p.Intermediates.ValidityDays, 1095)
	def(&p.Infrastructure.CommonName, p.Organization+" Infrastructure I1")
	def(&p.Infrastructure.KeyType, "ecdsa-p256")
	defInt(&p.Infrastructure.ValidityDays, 1095)
	defInt(&p.CRLValidityDays, 365)
	def(&p.HSM.Backend, BackendSoftHSM)
	if p.HSM.Backend == BackendSoftHSM {
		def(&p.HSM.Module, DefaultSoftHSMLib)
		def(&p.HSM.Root.Label, s.Name+"-root")
		def(&p.HSM.Root.PINFile, DefaultSecretsDir+"/hsm-root.pin")
		def(&p.HSM.Infrastructure.Label, s.Name+"-infra")
		def(&p.HSM.Infrastructure.PINFile, DefaultSecretsDir+"/hsm-infra.pin")
	}
}

// siteDefaults fills each site: priority and serial prefix from its
// place, the lab's addresses, the CRL store and URL, and its SoftHSM token.
func (s *Spec) siteDefaults() {
	for i := range s.Sites {
		site := &s.Sites[i]
		defInt(&site.Priority, i+1)
		if !site.SerialPrefix.IsSet() && i+1 <= 0x7f {
			site.SerialPrefix = NewSerialPrefix(uint8(i + 1))
		}
		if octet := labSiteFirstOctet3 + i; octet <= 254 {
			def(&site.Address, fmt.Sprintf("127.0.%d.1", octet))
			def(&site.ServiceNetwork, fmt.Sprintf("127.0.%d.0/24", octet))
		}
		def(&site.CRLStore.Bucket, "crls")
		def(&site.CRLStore.Region, "us-east-1")
		if site.Name != "" {
			def(&site.CRLBaseURL, "http://crl."+site.Name+"."+s.ACME.Zone+"/")
			if s.PKI.HSM.Backend == BackendSoftHSM {
				def(&site.HSM.Label, s.Name+"-"+site.Name)
				def(&site.HSM.PINFile, DefaultSecretsDir+"/hsm-"+site.Name+".pin")
			}
		}
	}
}

// failoverDefaults fills the controller: probe intervals, thresholds,
// where it listens, resuming, and etcd.
func (s *Spec) failoverDefaults() {
	f := &s.Failover
	defDur(&f.Probes.Nonce, 2*time.Second)
	defDur(&f.Probes.Account, 2*time.Second)
	defDur(&f.Probes.Issuance, 5*time.Second)
	defDur(&f.Probes.CRL, 60*time.Second)
	defInt(&f.DownAfter, 3)
	defInt(&f.UpAfter, 20)
	defDur(&f.StablePeriod, 60*time.Second)
	defDur(&f.HoldDown, 60*time.Second)
	def(&f.Failback, FailbackManual)
	def(&f.Listen, defaultListen(s))
	def(&f.AdminTokenFile, DefaultSecretsDir+"/failover-admin.token")
	defInt(&f.Quorum, 1)
	defDur(&f.ViewMaxAge, 30*time.Second)
	def(&f.Resume, ResumeHistory)
	defDur(&f.ResumeWithin, 30*time.Second)
	defInt(&f.ResumeConfirm, 3)
	if f.Etcd.Embedded() {
		def(&f.Etcd.Listen, etcdListen(f.Listen))
		def(&f.Etcd.DataDir, "var/etcd")
	}
	def(&f.Etcd.Prefix, "/cairn/"+s.Name+"/")
	defDur(&f.Etcd.SessionTTL, 10*time.Second)
}

// etcdListen puts the embedded etcd on the controller's address, port 2379.
func etcdListen(listen string) string { return portNext(listen, 2379) }

// portNext is the controller's address with another port (127.0.0.1 if
// listen is not IP:port).
func portNext(listen string, port uint16) string {
	if ap, err := netip.ParseAddrPort(listen); err == nil {
		return netip.AddrPortFrom(ap.Addr(), port).String()
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()
}

// defaultListen puts the controller next to a loopback cluster DNS (the
// lab: 127.0.30.1:9180), else on 127.0.0.1:9180.
func defaultListen(s *Spec) string {
	for _, srv := range s.DNS.Servers {
		if a, ok := addrOf(srv.Address); ok && srv.Role == "primary" && a.IsLoopback() && a.Is4() {
			b := a.As4()
			b[3] = 1
			return netip.AddrPortFrom(netip.AddrFrom4(b), 9180).String()
		}
	}
	return "127.0.0.1:9180"
}
