// Package site renders one complete Boulder site bundle from the cluster
// spec: every Boulder config (built from Boulder's own config structs and
// validated with Boulder's validator), the site's internal mTLS PKI, MariaDB,
// Redis, BIND, CT and CRL-store configuration, secrets, and the process
// list with its start order. It starts nothing.
package site

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/cairn-pki/cairn/cluster"
)

// Ports are the same at every site; sites differ by address.
const (
	PortDB        = 3306
	PortRedis     = 6379
	PortDNS       = 53
	PortDoH       = 443
	PortSA        = 9095
	PortCA        = 9093
	PortRA        = 9094
	PortVA        = 9092
	PortRVA1      = 9397
	PortPublisher = 9091
	PortNonce     = 9101
	PortCRLStorer = 9309
	PortWFEHTTP   = 4001
	PortCTA       = 4600
	PortCTB       = 4601
	PortS3        = 4501
	PortCRLHTTP   = 80
	debugPortBase = 8000
	// CRLShards is the number of CRL shards per issuer (URLs 1..CRLShards).
	CRLShards      = 4
	accountIDRange = 128 // auto_increment_increment: account (and every) ID mod 128 = serial prefix
)

// Plan is where one site's parts listen, derived from the spec alone. Any
// two sites of a valid spec get disjoint addresses.
type Plan struct {
	Spec  *cluster.Spec
	Site  cluster.Site
	Index int

	Public netip.Addr // ACME HTTPS (the ACME name points here)
	DB     netip.Addr // MariaDB and Redis
	DNS    netip.Addr // BIND: DoH resolver for the VA, nonce SRV
	Svc    netip.Addr // Boulder gRPC services, debug ports, WFE plain HTTP
	CT     netip.Addr // ct-test-srv (two logs)
	CRL    netip.Addr // S3 stand-in and the HTTP front at the CRL URL
}

// NewPlan lays out the site with index i of a validated spec.
func NewPlan(spec *cluster.Spec, i int) (*Plan, error) {
	s := spec.Sites[i]
	pub, err := netip.ParseAddr(s.Address)
	if err != nil {
		return nil, fmt.Errorf("sites[%d].address: %w", i, err)
	}
	n, err := netip.ParsePrefix(s.ServiceNetwork)
	if err != nil {
		return nil, fmt.Errorf("sites[%d].serviceNetwork: %w", i, err)
	}
	base := n.Masked().Addr()
	at := func(off int) (netip.Addr, error) {
		a := base
		for range off {
			a = a.Next()
		}
		if !n.Contains(a) {
			return a, fmt.Errorf("sites[%d].serviceNetwork %s is too small (need %d addresses)", i, n, off+1)
		}
		return a, nil
	}
	p := &Plan{Spec: spec, Site: s, Index: i, Public: pub}
	for _, x := range []struct {
		dst *netip.Addr
		off int
	}{{&p.DNS, 2}, {&p.Svc, 3}, {&p.CT, 4}, {&p.CRL, 5}, {&p.DB, 10}} {
		if *x.dst, err = at(x.off); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Addr joins an address and a port.
func Addr(a netip.Addr, port int) string { return netip.AddrPortFrom(a, uint16(port)).String() }

// ServiceZone is the site's private zone holding the nonce SRV record.
func (p *Plan) ServiceZone() string { return p.Site.Name + ".boulder.internal" }

// SiteName is the name that reaches this site's ACME server directly
// (e.g. acme-a.lab.home.arpa), next to the shared ACME name.
func (p *Plan) SiteName() string {
	return strings.Replace(p.Spec.ACME.Name, ".", "-"+p.Site.Name+".", 1)
}

// CRLHost is the host of the site's CRL base URL.
func (p *Plan) CRLHost() string {
	h := strings.TrimPrefix(strings.TrimPrefix(p.Site.CRLBaseURL, "http://"), "https://")
	h, _, _ = strings.Cut(h, "/")
	return h
}

// DirectoryURL is the ACME directory at the shared ACME name.
func (p *Plan) DirectoryURL() string {
	return acmeURL(p.Spec.ACME.Name, p.Spec.ACME.HTTPSPort) + "/directory"
}

func acmeURL(host string, port int) string {
	if port == 443 {
		return "https://" + host
	}
	return fmt.Sprintf("https://%s:%d", host, port)
}

// ExternalCRLStore reports whether the site uses an S3 store of its own
// instead of the lab's stand-in and HTTP front.
func (p *Plan) ExternalCRLStore() bool { return p.Site.CRLStore.Endpoint != "" }

func (p *Plan) crlEndpoint() string {
	if p.ExternalCRLStore() {
		return p.Site.CRLStore.Endpoint
	}
	return "http://" + Addr(p.CRL, PortS3)
}

// debugAddr gives each Boulder process its own debug (metrics) port.
func (p *Plan) debugAddr(offset int) string { return Addr(p.Svc, debugPortBase+offset) }

// debugOffsets: each Boulder process's debug port, and the ACME front's
// metrics port, above debugPortBase.
var debugOffsets = map[string]int{"ca": 1, "ra": 2, "sa": 3, "va": 4, "nonce": 5, "publisher": 9,
	"rva1": 11, "rva2": 12, "rva3": 13, "wfe": 14, "crl-storer": 21, "crl-updater": 22, ACMEFront: 30}

// debug is the debug (metrics) address of the bundle process name.
func (p *Plan) debug(name string) string { return p.debugAddr(debugOffsets[name]) }

// MetricsAddrs are the metrics listeners (/metrics on the Boulder
// processes' debug ports, and the ACME front's), by process name.
func (p *Plan) MetricsAddrs() map[string]string {
	m := map[string]string{}
	for name := range debugOffsets {
		m[name] = p.debug(name)
	}
	return m
}
