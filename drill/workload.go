package drill

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// stubResolver resolves like a stub resolver with a cache: it asks the
// cluster's authoritative servers in order and keeps an answer for its TTL,
// so a client keeps the old site until the TTL runs out, as real ones do.
type stubResolver struct {
	servers []string
	mu      sync.Mutex
	cache   map[string]cached
}

type cached struct {
	addr    string
	expires time.Time
}

func (r *stubResolver) lookup(ctx context.Context, host string) (string, error) {
	r.mu.Lock()
	c, ok := r.cache[host]
	r.mu.Unlock()
	if ok && time.Now().Before(c.expires) {
		return c.addr, nil
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), dns.TypeA)
	cl := &dns.Client{Timeout: 2 * time.Second}
	var lastErr error
	for _, s := range r.servers {
		in, _, err := cl.ExchangeContext(ctx, m, s)
		if err != nil {
			lastErr = err
			continue
		}
		for _, rr := range in.Answer {
			if a, ok := rr.(*dns.A); ok {
				r.mu.Lock()
				r.cache[host] = cached{addr: a.A.String(), expires: time.Now().Add(time.Duration(a.Hdr.Ttl) * time.Second)}
				r.mu.Unlock()
				return a.A.String(), nil
			}
		}
		lastErr = fmt.Errorf("%s: no A record for %s (rcode %s)", s, host, dns.RcodeToString[in.Rcode])
	}
	return "", lastErr
}

func (r *stubResolver) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip, err := r.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, net.JoinHostPort(ip, port))
}

// Attempt is one try of one issuance.
type Attempt struct {
	Client  string    `json:"client"`
	Policy  string    `json:"policy"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	OK      bool      `json:"ok"`
	Site    string    `json:"site,omitempty"`    // where the ACME name led it
	Problem string    `json:"problem,omitempty"` // ACME problem type or error class
	Error   string    `json:"error,omitempty"`
}

// Issuance is what a user wanted: one certificate, retried within the window.
type Issuance struct {
	Client   string    `json:"client"`
	Policy   string    `json:"policy"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	OK       bool      `json:"ok"`
	Attempts int       `json:"attempts"`
}

// workload runs one client per retry policy through the ACME name.
type workload struct {
	spec  *cluster.Spec
	hosts ClientHosts // its client hosts run real clients (nil: none)
	roots *x509.CertPool
	dnsUp acmeclient.DNSUpdater
	every time.Duration
	key   *drillKey // eab.required: the run's EAB key, every client's

	mu        sync.Mutex
	attempts  []Attempt
	issuances []Issuance
	real      []RealRun
}

func (w *workload) servers() []string {
	var s []string
	for _, d := range w.spec.DNS.Servers {
		s = append(s, d.Address)
	}
	return s
}

// goClient is one built-in client with its cached DNS and account.
type goClient struct {
	name, policy string
	w            *workload
	res          *stubResolver
	key          crypto.Signer
	c            *acmeclient.Client
	acct         string
}

func (w *workload) newClient(name, policy string) (*goClient, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	g := &goClient{name: name, policy: policy, w: w, key: key, res: &stubResolver{servers: w.servers(), cache: map[string]cached{}}}
	return g, g.connect()
}

func (g *goClient) connect() error {
	dir := "https://" + net.JoinHostPort(g.w.spec.ACME.Name, strconv.Itoa(g.w.spec.ACME.HTTPSPort)) + "/directory"
	c, err := acmeclient.New(g.w.options(acmeclient.Options{DirectoryURL: dir, Roots: g.w.roots, Dial: g.res.dial, Key: g.key, DNS: g.w.dnsUp, Timeout: 10 * time.Second}))
	if err != nil {
		return err
	}
	if g.c != nil {
		g.c.Close()
	}
	g.c = c
	return nil
}

// options are o with what every client of the drill registers with: the
// run's EAB key, if any.
func (w *workload) options(o acmeclient.Options) acmeclient.Options {
	o.EAB = w.key.binding()
	return o
}

// site is where the client's cached DNS sends it now.
func (g *goClient) site(ctx context.Context) string {
	ip, err := g.res.lookup(ctx, g.w.spec.ACME.Name)
	if err != nil {
		return ""
	}
	return g.w.spec.SiteAt(ip)
}

// attempt registers once, the first time, and issues one certificate. Like
// certbot, lego, acme.sh and cert-manager, it keeps its account: a site
// that does not know it answers accountDoesNotExist, and that attempt
// fails (no silent re-registration, so a drill counts what real clients
// lose).
func (g *goClient) attempt(ctx context.Context) Attempt {
	a := Attempt{Client: g.name, Policy: g.policy, Start: time.Now()}
	a.Site = g.site(ctx)
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := g.ensureAccount(actx)
	if err == nil {
		name := fmt.Sprintf("drill-%s-%d.%s", g.name, time.Now().UnixNano(), g.w.spec.ACME.Zone)
		_, _, _, err = g.c.Issue(actx, []string{name})
	}
	a.End = time.Now()
	a.OK = err == nil
	if err != nil {
		a.Problem, a.Error = problemOf(err), firstLine(err.Error())
	}
	return a
}

func (g *goClient) ensureAccount(ctx context.Context) error {
	if g.acct != "" {
		return nil
	}
	acct, err := g.c.Register(ctx)
	if err != nil {
		return err
	}
	g.acct = acct.URI
	return nil
}

func problemOf(err error) string {
	var ae *acme.Error
	if errors.As(err, &ae) && ae.ProblemType != "" {
		return ae.ProblemType
	}
	var oe *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "connect"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		// The site's ACME front cuts connections while its WFE is down.
		return "connect"
	}
	var ue *rfc2136.UpdateError
	if errors.As(err, &ue) {
		return "dns-update"
	}
	return "error"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		return s[:300]
	}
	return s
}

func (w *workload) recordReal(r RealRun) {
	w.mu.Lock()
	w.real = append(w.real, r)
	w.mu.Unlock()
}

func (w *workload) record(a Attempt) {
	w.mu.Lock()
	w.attempts = append(w.attempts, a)
	w.mu.Unlock()
}

// runPolicy: one issuance every w.every; each retried every 3 s until it
// succeeds or its window (0 for none) has passed.
func (w *workload) runPolicy(ctx context.Context, policy string) error {
	window, err := RetryWindow(policy)
	if err != nil {
		return err
	}
	g, err := w.newClient("go-"+policy, policy)
	if err != nil {
		return err
	}
	defer g.c.Close()
	for ctx.Err() == nil {
		is := Issuance{Client: g.name, Policy: policy, Start: time.Now()}
		for {
			a := g.attempt(ctx)
			if ctx.Err() != nil && !a.OK {
				return nil // the drill ended in the middle: not counted
			}
			w.record(a)
			is.Attempts++
			if a.OK || time.Since(is.Start) >= window {
				is.OK = a.OK
				break
			}
			sleepCtx(ctx, 3*time.Second)
			if ctx.Err() != nil {
				return nil
			}
		}
		is.End = time.Now()
		w.mu.Lock()
		w.issuances = append(w.issuances, is)
		w.mu.Unlock()
		sleepCtx(ctx, time.Until(is.Start.Add(w.every)))
	}
	return nil
}

// firstNewClient: from the fault on, a brand-new client (empty DNS cache,
// new account) starts every second, each in parallel, so one hanging at
// the old site does not hold back the next; returns the end of the first
// successful issuance. The others are stopped then.
func (w *workload) firstNewClient(ctx context.Context) (time.Time, Attempt) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		at time.Time
		a  Attempt
	}
	won := make(chan result, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := w.newClient("new-"+strconv.Itoa(n), "new")
			if err != nil {
				return
			}
			defer g.c.Close()
			if a := g.attempt(ctx); a.OK {
				select {
				case won <- result{a.End, a}:
				default:
				}
			}
		}()
		select {
		case r := <-won:
			return r.at, r.a
		case <-ctx.Done():
			return time.Time{}, Attempt{}
		case <-tick.C:
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
