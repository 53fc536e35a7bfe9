package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rapb "github.com/letsencrypt/boulder/ra/proto"
	sapb "github.com/letsencrypt/boulder/sa/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/revocation"
	"github.com/cairn-pki/cairn/site"
)

// checkNothingIssuesThroughTheFront: the ACME port serves ACME alone (a
// connection naming ra.boulder or sa.boulder gets the front's certificate,
// not a gRPC server's), and the controller's credential for a site is good
// for its agent only: the site's RA and SA refuse it for creating an
// order, even where they are reachable (here, on loopback).
func checkNothingIssuesThroughTheFront(t *testing.T, l *Lab, spec *cluster.Spec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, s := range spec.Sites {
		dir := spec.Path(site.ControllerAgentDir(s.Name))
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
		internal := x509.NewCertPool()
		internal.AppendCertsFromPEM(caPEM)
		front := net.JoinHostPort(s.Address, strconv.Itoa(spec.ACME.HTTPSPort))
		for _, name := range []string{"ra.boulder", "sa.boulder"} {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", front,
				&tls.Config{ServerName: name, RootCAs: internal, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
			if err == nil {
				c.Close()
				t.Errorf("site %s: a TLS connection naming %s on the ACME port reached a server of the site's internal CA", s.Name, name)
			} else if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("site %s, %s on the ACME port: %v (want the front's certificate, unknown to the internal CA)", s.Name, name, err)
			}
		}
		plan, err := site.NewPlan(spec, i)
		if err != nil {
			t.Fatal(err)
		}
		// The site's own admin credential (what the agent holds) reaches
		// the services: the same calls get past their authentication.
		admin, err := tls.LoadX509KeyPair(filepath.Join(l.SiteDir(s.Name), "ipki", "admin.boulder", "cert.pem"), filepath.Join(l.SiteDir(s.Name), "ipki", "admin.boulder", "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range []struct {
			name string
			port int
			call func(*grpc.ClientConn) error
		}{
			{"ra", site.PortRA, func(cc *grpc.ClientConn) error {
				_, err := rapb.NewRegistrationAuthorityClient(cc).NewOrder(ctx, &rapb.NewOrderRequest{})
				return err
			}},
			{"sa", site.PortSA, func(cc *grpc.ClientConn) error {
				_, err := sapb.NewStorageAuthorityClient(cc).NewOrderAndAuthzs(ctx, &sapb.NewOrderAndAuthzsRequest{})
				return err
			}},
		} {
			call := func(cert tls.Certificate) error {
				tc := &tls.Config{ServerName: svc.name + ".boulder", RootCAs: internal, Certificates: []tls.Certificate{cert}}
				cc, err := grpc.NewClient(site.Addr(plan.Svc, svc.port), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
				if err != nil {
					t.Fatal(err)
				}
				defer cc.Close()
				return svc.call(cc)
			}
			// Boulder refuses a client certificate whose names the service
			// does not list in the TLS handshake (Unavailable: reset) or
			// in its interceptor ("not authorized").
			if err := call(cert); err == nil || (status.Code(err) != codes.Unavailable && !strings.Contains(err.Error(), "not authorized")) {
				t.Errorf("site %s: the controller's credential asking the %s for an order: %v, want refused", s.Name, svc.name, err)
			}
			if err := call(admin); status.Code(err) == codes.Unavailable || (err != nil && strings.Contains(err.Error(), "not authorized")) {
				t.Errorf("site %s: the site's admin credential asking the %s: %v, want past authentication (the control case)", s.Name, svc.name, err)
			}
		}
	}
	// The credential's one use: the agent answers it.
	if err := (revocation.Agents{Spec: spec}).PublishCRLs(ctx, spec.Sites[0].Name); err != nil {
		t.Errorf("site %s's agent with the controller's credential: %v", spec.Sites[0].Name, err)
	}
}
