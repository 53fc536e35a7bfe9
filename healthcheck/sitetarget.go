package healthcheck

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/site"
)

// ProbeAccountKeyFile is a site's probe account key, relative to the spec
// (site.ProbeAccountKeyFile).
func ProbeAccountKeyFile(siteName string) string { return site.ProbeAccountKeyFile(siteName) }

// SiteTargets builds a Target for every site of the spec, each addressed
// directly.
func SiteTargets(spec *cluster.Spec) ([]*Target, error) {
	c, err := newTargetCommon(spec)
	if err != nil {
		return nil, err
	}
	var out []*Target
	for i, s := range spec.Sites {
		t, err := c.siteTarget(i, s)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// targetCommon is what every site's Target shares: the cluster root, the
// clients' TSIG key, the cluster DNS and the account replication reader.
type targetCommon struct {
	spec    *cluster.Spec
	pki     *intermediates.PKI
	roots   *x509.CertPool
	tsig    rfc2136.Key
	primary netip.AddrPort
	servers []string
	byAddr  map[string]string // site address -> site name
	repl    accounts.Reader
}

func newTargetCommon(spec *cluster.Spec) (*targetCommon, error) {
	pki, err := intermediates.OpenReadOnly(spec)
	if err != nil {
		return nil, err
	}
	rootPEM, err := os.ReadFile(pki.RootCertFile())
	if err != nil {
		return nil, fmt.Errorf("root certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, fmt.Errorf("%s holds no certificate", pki.RootCertFile())
	}
	tsig, err := rfc2136.ReadKey(spec.Path(spec.DNS.TSIG.ClientKeyFile))
	if err != nil {
		return nil, fmt.Errorf("dns.tsig.clientKeyFile: %w", err)
	}
	c := &targetCommon{spec: spec, pki: pki, roots: roots, tsig: tsig, primary: spec.PrimaryDNS(), byAddr: map[string]string{}}
	for _, s := range spec.DNS.Servers {
		c.servers = append(c.servers, s.Address)
	}
	for _, s := range spec.Sites {
		c.byAddr[s.Address] = s.Name
	}
	// Account replication: read with the monitor user (its password and the
	// database CA are made when the sites are rendered).
	if spec.Accounts.Replication == cluster.ReplicationMariaDB && len(spec.Sites) > 1 {
		m, err := accounts.NewMariaDB(spec)
		if err != nil {
			return nil, fmt.Errorf("account replication probe: %w", err)
		}
		c.repl = m
	}
	return c, nil
}

// siteTarget is the Target of site i, s.
func (c *targetCommon) siteTarget(i int, s cluster.Site) (*Target, error) {
	spec := c.spec
	plan, err := site.NewPlan(spec, i)
	if err != nil {
		return nil, err
	}
	issuers, err := c.pki.SiteIssuers(s.Name)
	if err != nil {
		return nil, err
	}
	key, err := ProbeAccountKey(spec, s.Name)
	if err != nil {
		return nil, err
	}
	t := &Target{
		Site:         s.Name,
		DirectoryURL: "https://" + hostPort(spec.ACME.Name, spec.ACME.HTTPSPort) + "/directory",
		DialAddr:     net.JoinHostPort(s.Address, strconv.Itoa(spec.ACME.HTTPSPort)),
		ServerName:   spec.ACME.Name,
		Roots:        c.roots,
		ACMEName:     spec.ACME.Name, Zone: spec.ACME.Zone, DNSServers: c.servers, SiteByAddr: c.byAddr,
		AccountKey: key,
		DNS01: &acmeclient.DNSUpdater{Server: c.primary.String(), Zone: spec.ACME.Zone,
			Key: c.tsig},
		ProbeName:    "{rand}.probe-" + s.Name + "." + spec.ACME.Zone,
		SerialPrefix: int(s.SerialPrefix.Value()),
		Replication:  c.repl,
		Profiles:     spec.ProfileDescriptions(),
	}
	for _, peer := range spec.Sites {
		if peer.Name != s.Name && c.repl != nil {
			t.ReplicationPeers = append(t.ReplicationPeers, accounts.Peer{Name: peer.Name, Domain: int64(peer.SerialPrefix.Value())})
		}
	}
	for _, is := range issuers {
		cert, err := intermediates.ReadCert(is.CertFile)
		if err != nil {
			return nil, err
		}
		t.Issuers = append(t.Issuers, cert)
		src := crlSource(plan, s, is, cert)
		for i, peer := range spec.Sites {
			if pp, err := site.NewPlan(spec, i); err == nil && peer.Name != s.Name && !pp.ExternalCRLStore() && src.DialAddr != "" {
				src.Mirrors = append(src.Mirrors, site.Addr(pp.CRL, site.PortCRLHTTP))
			}
		}
		t.CRLs = append(t.CRLs, src)
	}
	return t, nil
}

// crlSource is where the CRLs of one of site s's issuers are published:
// every shard at the site's CRL URL, fetched from the site's own CRL front
// unless the operator's store publishes them.
func crlSource(plan *site.Plan, s cluster.Site, is intermediates.SiteIssuer, cert *x509.Certificate) CRLSource {
	src := CRLSource{Issuer: cert}
	for shard := 1; shard <= site.CRLShards; shard++ {
		src.URLs = append(src.URLs, fmt.Sprintf("%s%s/%d/%d.crl", s.CRLBaseURL, s.CRLStore.Bucket, is.NameID, shard))
	}
	if !plan.ExternalCRLStore() {
		src.DialAddr = site.Addr(plan.CRL, site.PortCRLHTTP)
	}
	return src
}

func hostPort(host string, port int) string {
	if port == 443 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// ProbeAccountKey is a site's probe account key, made at first use.
func ProbeAccountKey(spec *cluster.Spec, siteName string) (crypto.Signer, error) {
	return site.ProbeAccountKey(spec, siteName)
}

// RegisterProbeAccount makes sure the probe key has an account at the
// target's site and returns the account ID (the last path segment of its
// URL), for rate-limit overrides. It retries server errors as any client
// does (a site still starting answers some).
func RegisterProbeAccount(ctx context.Context, t *Target) (int64, error) {
	c, err := t.newACMEClient(false)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	acct, err := c.Register(ctx)
	if err != nil {
		return 0, fmt.Errorf("site %s: register the probe account: %w", t.Site, err)
	}
	id, err := strconv.ParseInt(acct.URI[strings.LastIndex(acct.URI, "/")+1:], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("site %s: account URL %q has no numeric ID", t.Site, acct.URI)
	}
	return id, nil
}
