package failover

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// Etcd is the controller's connection to etcd, and the embedded server
// when it runs one.
type Etcd struct {
	Client   *clientv3.Client
	embedded *embed.Etcd
	level    zap.AtomicLevel // of the embedded server's log
}

// Close closes the client first (an embedded server waits for open
// client connections), then the embedded server.
func (e *Etcd) Close() {
	if e.Client != nil {
		e.Client.Close()
	}
	if e.embedded != nil {
		// Closing makes the server log its listeners' "use of closed
		// network connection" as errors: nothing to tell the operator.
		e.level.SetLevel(zap.FatalLevel)
		e.embedded.Close()
	}
}

// OpenEtcd connects to the spec's etcd: the external cluster in
// failover.etcd.endpoints, or a one-member etcd started in this process
// with its data in failover.etcd.dataDir, reachable only with the
// certificate it makes for itself (mutual TLS, key 0600).
func OpenEtcd(ctx context.Context, spec *cluster.Spec, name string, log *slog.Logger) (*Etcd, error) {
	e := spec.Failover.Etcd
	if !e.Embedded() {
		if e.InsecureNoMutualTLS {
			log.Warn("failover.etcd.insecureNoMutualTLS is set: whoever reaches the etcd endpoints can write the controllers' leadership, views and revocation journal", "endpoints", e.Endpoints)
		}
		tc, err := externalTLS(spec, e)
		if err != nil {
			return nil, err
		}
		c, err := dial(ctx, e.Endpoints, tc)
		if err != nil {
			return nil, fmt.Errorf("failover.etcd.endpoints %v: %w", e.Endpoints, err)
		}
		return &Etcd{Client: c}, nil
	}
	return startEmbedded(ctx, spec, name, log)
}

func externalTLS(spec *cluster.Spec, e cluster.Etcd) (*tls.Config, error) {
	secure := false
	for _, ep := range e.Endpoints {
		if u, err := url.Parse(ep); err == nil && u.Scheme == "https" {
			secure = true
		}
	}
	if !secure {
		return nil, nil
	}
	path := func(p string) string { // an unset file stays unset
		if p == "" {
			return ""
		}
		return spec.Path(p)
	}
	tc, err := clientTLS(path(e.CAFile), path(e.CertFile), path(e.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("failover.etcd TLS files: %w", err)
	}
	return tc, nil
}

// clientTLS trusts caFile (system roots if empty) and presents the
// certificate in certFile/keyFile (none if empty).
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in it", caFile)
		}
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

func dial(ctx context.Context, endpoints []string, tc *tls.Config) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tc, DialTimeout: 5 * time.Second,
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 3 * time.Second, Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Status(sctx, endpoints[0]); err != nil {
		c.Close()
		return nil, fmt.Errorf("no answer: %w", err)
	}
	return c, nil
}

// embeddedTLS makes (once) the embedded etcd's CA and its one certificate,
// used by the server and by every client.
func embeddedTLS(spec *cluster.Spec, ap netip.AddrPort) (site.MTLSFiles, error) {
	return site.EnsureMTLS(filepath.Join(spec.Path(spec.Failover.Etcd.DataDir), "pki"), "cairn-etcd", []net.IP{net.IP(ap.Addr().AsSlice())})
}

func startEmbedded(ctx context.Context, spec *cluster.Spec, name string, log *slog.Logger) (*Etcd, error) {
	e := spec.Failover.Etcd
	ap, err := netip.ParseAddrPort(e.Listen)
	if err != nil {
		return nil, fmt.Errorf("failover.etcd.listen %q: %w", e.Listen, err)
	}
	dir := spec.Path(e.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failover.etcd.dataDir: %w", err)
	}
	files, err := embeddedTLS(spec, ap)
	if err != nil {
		return nil, fmt.Errorf("failover.etcd: TLS material in %s: %w", dir, err)
	}
	client := url.URL{Scheme: "https", Host: ap.String()}
	peer := url.URL{Scheme: "https", Host: netip.AddrPortFrom(ap.Addr(), ap.Port()+1).String()}
	cfg := embed.NewConfig()
	cfg.Name = "cairn"
	cfg.Dir = filepath.Join(dir, "data")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile, cfg.ClientTLSInfo.TrustedCAFile = files.Cert, files.Key, files.CA
	cfg.ClientTLSInfo.ClientCertAuth = true
	cfg.PeerTLSInfo = cfg.ClientTLSInfo
	// Views are rewritten every second: keep an hour of history only.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "1h"
	level := zap.NewAtomicLevelAt(zap.ErrorLevel)
	zc := zap.NewProductionConfig()
	zc.Level, zc.OutputPaths, zc.ErrorOutputPaths = level, []string{"stderr"}, []string{"stderr"}
	zl, err := zc.Build()
	if err != nil {
		return nil, err
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl.Named("etcd"))
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("failover.etcd: embedded etcd on %s: %w", e.Listen, err)
	}
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		srv.Close()
		return nil, fmt.Errorf("failover.etcd: embedded etcd on %s not ready after 30 s (see its log above)", e.Listen)
	case <-ctx.Done():
		srv.Close()
		return nil, ctx.Err()
	}
	tc, err := clientTLS(files.CA, files.Cert, files.Key)
	if err != nil {
		srv.Close()
		return nil, err
	}
	c, err := dial(ctx, []string{client.String()}, tc)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("failover.etcd: embedded etcd on %s: %w", e.Listen, err)
	}
	log.Info("embedded etcd ready", "listen", client.String(), "dir", dir, "member", name)
	return &Etcd{Client: c, embedded: srv, level: level}, nil
}
