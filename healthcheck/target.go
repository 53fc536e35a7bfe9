package healthcheck

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/internal/acmeclient"
)

// Target is one ACME server as the probes see it. For a cairn site the
// probes dial the site's own address (DialAddr) and present the ACME name
// (ServerName): they never go through the failover name, so every site's
// health is known wherever DNS points.
type Target struct {
	Site         string // site name; for a plain URL, its host
	DirectoryURL string
	DialAddr     string         // host:port to connect to; empty: resolve the URL's host
	ServerName   string         // TLS server name; empty: the URL's host
	Roots        *x509.CertPool // nil: the system roots
	// IssuingRoots verify certificates the server issues; nil: Roots.
	IssuingRoots *x509.CertPool

	// dns probe: the ACME name, its zone and the authoritative servers;
	// SiteByAddr names the site each address belongs to.
	ACMEName   string
	Zone       string
	DNSServers []string
	SiteByAddr map[string]string

	// account and issuance probes.
	AccountKey crypto.Signer
	DNS01      *acmeclient.DNSUpdater
	ProbeName  string // the name the issuance probe certifies
	// What a certificate from this site must show.
	Issuers      []*x509.Certificate
	SerialPrefix int // first serial byte; <= 0: not checked

	// crl probe: the site's issuers' CRL shard URLs by issuer NameID.
	CRLs []CRLSource

	// replication probe: reads the site's database; the peers it must
	// pull accounts from.
	Replication      accounts.Reader
	ReplicationPeers []accounts.Peer

	// directory probe: the profiles the spec says the site advertises
	// (name -> description); nil: not compared (a plain URL).
	Profiles map[string]string

	// Timeout per network step when the context has no earlier deadline.
	StepTimeout time.Duration
}

// CRLSource is one issuer and the URLs of its CRL shards.
type CRLSource struct {
	Issuer *x509.Certificate
	URLs   []string
	// DialAddr, if set, is where the URLs' host is reached (the lab's CRL
	// front); else the host is resolved.
	DialAddr string
	// Mirrors are the other sites' CRL fronts, which serve copies of these
	// CRLs too (while this site is down, they are what relying parties get).
	Mirrors []string
}

func (t *Target) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: t.Roots, ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
}

// httpClient talks to the target over a fresh connection each probe, so a
// pooled connection never hides a dead listener.
func (t *Target) httpClient() *http.Client {
	d := &net.Dialer{Timeout: t.stepTimeout()}
	tr := &http.Transport{TLSClientConfig: t.tlsConfig(), DisableKeepAlives: true, TLSHandshakeTimeout: t.stepTimeout()}
	if t.DialAddr != "" {
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, t.DialAddr)
		}
	} else {
		tr.DialContext = d.DialContext
	}
	return &http.Client{Transport: tr, Timeout: 2 * t.stepTimeout()}
}

func (t *Target) stepTimeout() time.Duration {
	if t.StepTimeout > 0 {
		return t.StepTimeout
	}
	return 10 * time.Second
}

// acmeClient is an RFC 8555 client bound to the target, for probes: a
// server error fails the step at once (acmeclient.FailFastBackoff), so a
// site whose CA cannot sign fails its probe in milliseconds instead of at
// the probe's deadline.
func (t *Target) acmeClient() (*acmeclient.Client, error) { return t.newACMEClient(true) }

func (t *Target) newACMEClient(failFast bool) (*acmeclient.Client, error) {
	var dns acmeclient.DNSUpdater
	if t.DNS01 != nil {
		dns = *t.DNS01
	}
	return acmeclient.New(acmeclient.Options{DirectoryURL: t.DirectoryURL, Roots: t.Roots, ServerName: t.ServerName,
		DialAddr: t.DialAddr, Key: t.AccountKey, DNS: dns, Timeout: 2 * t.stepTimeout(), FailFast: failFast})
}

// Func is the one signature of every probe kind.
type Func func(ctx context.Context, t *Target) Result
