package healthcheck

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// ProbeTLS completes a handshake with the ACME name as SNI, verifies the
// chain against the roots and the name against the SAN, and reports the
// days until the certificate expires.
func ProbeTLS(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindTLS)
	addr := t.DialAddr
	if addr == "" {
		u, err := url.Parse(t.DirectoryURL)
		if err != nil {
			r.step("connect", err)
			return r.done()
		}
		addr = u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		}
	}
	cfg := t.tlsConfig()
	if cfg.ServerName == "" {
		u, _ := url.Parse(t.DirectoryURL)
		cfg.ServerName = u.Hostname()
	}
	d := &net.Dialer{Timeout: t.stepTimeout()}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if r.step("connect", err) != nil {
		return r.done()
	}
	defer raw.Close()
	conn := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, t.stepTimeout())
	defer cancel()
	err = conn.HandshakeContext(hctx)
	if r.step("handshake", err) != nil {
		return r.done()
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	if err := leaf.VerifyHostname(cfg.ServerName); r.step("name", err) != nil {
		return r.done()
	}
	left := time.Until(leaf.NotAfter)
	r.fact("notAfter", leaf.NotAfter.UTC().Format(time.RFC3339))
	r.fact("daysLeft", strconv.Itoa(int(left.Hours()/24)))
	if left < 7*24*time.Hour {
		r.step("expiry", probeError{ClassStale, fmt.Sprintf("certificate for %s expires in %s", cfg.ServerName, left.Round(time.Hour))})
	}
	return r.done()
}
