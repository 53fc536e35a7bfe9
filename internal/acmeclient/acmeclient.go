// Package acmeclient is a small RFC 8555 client that proves DNS-01 through
// RFC 2136 updates signed with TSIG, and times every step. cairn's tests and
// measurements use it against a site addressed directly (its IP, the ACME
// name as TLS server name), never through the failover name unless asked.
package acmeclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// DNSUpdater writes DNS-01 TXT records with RFC 2136.
type DNSUpdater struct {
	Server string // host:port of the primary
	Zone   string
	Key    rfc2136.Key
}

// Update adds (add) or removes the TXT record name=value.
func (u DNSUpdater) Update(ctx context.Context, add bool, name, value string) error {
	return rfc2136.Client{Server: u.Server, Key: u.Key, Timeout: 5 * time.Second, TCP: true}.SetTXT(ctx, u.Zone, add, name, value, 10)
}

// Step is one timed step of an issuance.
type Step struct {
	Name     string
	Duration time.Duration
}

// Client issues certificates from one ACME server.
type Client struct {
	DirectoryURL string
	DNS          DNSUpdater
	ac           *acme.Client
	// Account is the registered account (after Register).
	Account *acme.Account
	// Profile is the certificate profile orders ask for
	// (draft-ietf-acme-profiles); "": none, the server's default.
	Profile string
	eab     *acme.ExternalAccountBinding
}

// Options to reach a server.
type Options struct {
	DirectoryURL string
	// Roots trusted for the server's HTTPS certificate.
	Roots *x509.CertPool
	// ServerName overrides the TLS server name (the ACME name when the
	// directory URL uses a site's address).
	ServerName string
	// DialAddr sends every connection to this host:port (a site's address),
	// whatever the URL's host.
	DialAddr string
	// Dial replaces the dialer (e.g. resolving through a given DNS server).
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Key     crypto.Signer // account key; nil makes a new P-256 key
	DNS     DNSUpdater
	Timeout time.Duration // per HTTP request
	// Profile: see Client.Profile.
	Profile string
	// EAB binds the account Register makes to an External Account
	// Binding key (RFC 8555 §7.3.4); nil: none.
	EAB *acme.ExternalAccountBinding
	// FailFast: a server error (5xx) or a rate limit (429) ends the
	// request at once instead of being retried until the context ends
	// (x/crypto's default); a badNonce is still retried. Health probes
	// want the answer, not a client's patience.
	FailFast bool
}

// New prepares a client; nothing is sent yet.
func New(o Options) (*Client, error) {
	key := o.Key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		key = k
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: o.Roots, ServerName: o.ServerName},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	if o.Dial != nil {
		tr.DialContext = o.Dial
	} else if o.DialAddr != "" {
		d := &net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, o.DialAddr)
		}
	}
	ac := &acme.Client{Key: key, DirectoryURL: o.DirectoryURL,
		HTTPClient: &http.Client{Transport: tr, Timeout: o.Timeout}, UserAgent: "cairn"}
	if o.FailFast {
		ac.RetryBackoff = FailFastBackoff
	}
	return &Client{
		DirectoryURL: o.DirectoryURL,
		DNS:          o.DNS,
		Profile:      o.Profile,
		eab:          o.EAB,
		ac:           ac,
	}, nil
}

// FailFastBackoff is acme.Client.RetryBackoff for Options.FailFast: no
// retry after a server error (5xx) or a rate limit (429); anything else
// x/crypto retries (a badNonce, which any client retries at once) up to
// FailFastRetries times, 10 ms apart.
func FailFastBackoff(n int, _ *http.Request, res *http.Response) time.Duration {
	if res == nil || res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests || n > FailFastRetries {
		return 0
	}
	return 10 * time.Millisecond
}

// FailFastRetries bounds FailFastBackoff's retries of one request.
const FailFastRetries = 3

// ACME exposes the underlying client for single requests (probes).
func (c *Client) ACME() *acme.Client { return c.ac }

// Close releases idle connections.
func (c *Client) Close() {
	if tr, ok := c.ac.HTTPClient.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// Register creates (or finds) the account for the client's key, with the
// client's External Account Binding if it has one.
func (c *Client) Register(ctx context.Context) (*acme.Account, error) {
	acct, err := c.ac.Register(ctx, &acme.Account{ExternalAccountBinding: c.eab}, acme.AcceptTOS)
	if errors.Is(err, acme.ErrAccountAlreadyExists) {
		acct, err = c.ac.GetReg(ctx, "")
	}
	if err != nil {
		return nil, err
	}
	c.Account = acct
	return acct, nil
}

// StepFunc is told when each step of an issuance ends, and how.
type StepFunc func(name string, err error)

// Issue orders a certificate for names, proving each with DNS-01, and
// returns the chain (DER, leaf first), the leaf key and the step timings.
// Steps: new-order, authorization, dns-update, challenge, validation,
// finalize (includes the download), cleanup (removing the TXT records).
func (c *Client) Issue(ctx context.Context, names []string) ([][]byte, crypto.Signer, []Step, error) {
	var steps []Step
	mark := time.Now()
	der, key, err := c.IssueSteps(ctx, names, func(name string, _ error) {
		now := time.Now()
		steps = append(steps, Step{Name: name, Duration: now.Sub(mark)})
		mark = now
	})
	return der, key, steps, err
}

// IssueSteps is Issue reporting each step to onStep as it ends.
func (c *Client) IssueSteps(ctx context.Context, names []string, onStep StepFunc) (der [][]byte, key crypto.Signer, err error) {
	var cleanup []func() error
	defer func() {
		if cerr := onStep.cleanup(cleanup); cerr != nil && err == nil {
			err = cerr
		}
	}()
	var opts []acme.OrderOption
	if c.Profile != "" {
		opts = append(opts, acme.WithOrderIssuanceProfile(acme.ProfileName(c.Profile)))
	}
	order, err := c.ac.AuthorizeOrder(ctx, acme.DomainIDs(names...), opts...)
	if onStep.report("new-order", err) != nil {
		return nil, nil, fmt.Errorf("new-order: %w", err)
	}
	for _, authzURL := range order.AuthzURLs {
		authz, err := c.ac.GetAuthorization(ctx, authzURL)
		if onStep.report("authorization", err) != nil {
			return nil, nil, fmt.Errorf("authorization: %w", err)
		}
		if authz.Status == acme.StatusValid {
			continue
		}
		chal, undo, err := c.publishDNS01(ctx, authz, onStep)
		if err != nil {
			return nil, nil, err
		}
		cleanup = append(cleanup, undo)
		if err := c.validate(ctx, authzURL, chal, onStep); err != nil {
			return nil, nil, err
		}
	}
	return c.finalize(ctx, order, names, onStep)
}

// report tells f (if any) that a step ended, and returns its error.
func (f StepFunc) report(name string, err error) error {
	if f != nil {
		f(name, err)
	}
	return err
}

// cleanup runs every undo (all of them, whatever fails) as the "cleanup"
// step, when there is any.
func (f StepFunc) cleanup(undo []func() error) error {
	if len(undo) == 0 {
		return nil
	}
	var errs []error
	for _, fn := range undo {
		errs = append(errs, fn())
	}
	return f.report("cleanup", errors.Join(errs...))
}

// StepDNSUpdate is the step that writes the DNS-01 record to the cluster
// DNS: its failure is the cluster DNS's, not the ACME server's.
const StepDNSUpdate = "dns-update"

// publishDNS01 publishes the DNS-01 record of authz's dns-01 challenge and
// returns the challenge and what removes the record.
func (c *Client) publishDNS01(ctx context.Context, authz *acme.Authorization, onStep StepFunc) (*acme.Challenge, func() error, error) {
	var chal *acme.Challenge
	for _, ch := range authz.Challenges {
		if ch.Type == "dns-01" {
			chal = ch
		}
	}
	if chal == nil {
		err := fmt.Errorf("authorization for %s offers no dns-01 challenge", authz.Identifier.Value)
		return nil, nil, onStep.report("challenge", err)
	}
	value, err := c.ac.DNS01ChallengeRecord(chal.Token)
	if err != nil {
		return nil, nil, onStep.report(StepDNSUpdate, err)
	}
	name := "_acme-challenge." + strings.TrimPrefix(authz.Identifier.Value, "*.")
	err = c.DNS.Update(ctx, true, name, value)
	if onStep.report(StepDNSUpdate, err) != nil {
		return nil, nil, err
	}
	return chal, func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return c.DNS.Update(cctx, false, name, value)
	}, nil
}

// validate accepts the challenge and waits for its authorization to be
// valid.
func (c *Client) validate(ctx context.Context, authzURL string, chal *acme.Challenge, onStep StepFunc) error {
	_, err := c.ac.Accept(ctx, chal)
	if onStep.report("challenge", err) != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	err = c.waitAuthorization(ctx, authzURL)
	if onStep.report("validation", err) != nil {
		return fmt.Errorf("validation: %w", err)
	}
	return nil
}

// finalize waits for the order to be ready and finalizes it with a CSR of
// a new P-256 key; it returns the chain and the key.
func (c *Client) finalize(ctx context.Context, order *acme.Order, names []string, onStep StepFunc) ([][]byte, crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, k)
	if err != nil {
		return nil, nil, err
	}
	order, err = c.waitOrder(ctx, order.URI)
	if err != nil {
		return nil, nil, onStep.report("finalize", fmt.Errorf("order ready: %w", err))
	}
	// CreateCertFromOrder, not CreateOrderCert: the latter needs a Location
	// header on the finalize response.
	der, _, err := c.ac.CreateCertFromOrder(ctx, order, csr, true)
	if onStep.report("finalize", err) != nil {
		return nil, nil, fmt.Errorf("finalize: %w", err)
	}
	return der, k, nil
}

// PollInterval is how often pending objects are polled. x/crypto's own
// waits obey Retry-After (a whole second at Boulder), which would hide the
// server's real latency from measurements.
const PollInterval = 25 * time.Millisecond

func (c *Client) waitAuthorization(ctx context.Context, url string) error {
	for {
		a, err := c.ac.GetAuthorization(ctx, url)
		if err != nil {
			return err
		}
		switch a.Status {
		case acme.StatusValid:
			return nil
		case acme.StatusInvalid, acme.StatusDeactivated, acme.StatusExpired, acme.StatusRevoked:
			for _, ch := range a.Challenges {
				if ch.Error != nil {
					return fmt.Errorf("authorization %s: %w", a.Status, ch.Error)
				}
			}
			return fmt.Errorf("authorization %s", a.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(PollInterval):
		}
	}
}

func (c *Client) waitOrder(ctx context.Context, url string) (*acme.Order, error) {
	for {
		o, err := c.ac.GetOrder(ctx, url)
		if err != nil {
			return nil, err
		}
		switch o.Status {
		case acme.StatusReady, acme.StatusValid:
			return o, nil
		case acme.StatusInvalid:
			if o.Error != nil {
				return nil, fmt.Errorf("order invalid: %w", o.Error)
			}
			return nil, errors.New("order invalid")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(PollInterval):
		}
	}
}

// Revoke revokes a certificate with the account key.
func (c *Client) Revoke(ctx context.Context, der []byte, reason acme.CRLReasonCode) error {
	return c.ac.RevokeCert(ctx, nil, der, reason)
}
