// Package rfc2136 is cairn's one DNS UPDATE client: TSIG keys as
// tsig-keygen writes them, signed RFC 2136 updates with their answers
// mapped to errors, and plain queries. The failover controller's RFC 2136
// provider, the probes' and built-in clients' DNS-01 records and the lab
// all go through it.
package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"time"

	"github.com/miekg/dns"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Key is a TSIG key.
type Key struct {
	Name      string // key name, e.g. "lab-clients"
	Algorithm string // e.g. "hmac-sha256"
	Secret    string // base64
}

var keyRE = regexp.MustCompile(`key\s+"([^"]+)"\s*\{\s*algorithm\s+([\w-]+);\s*secret\s+"([^"]+)";`)

// ReadKey reads a tsig-keygen file, refusing it when others can read it.
func ReadKey(path string) (Key, error) {
	if err := fsutil.CheckSecretFile(path); err != nil {
		return Key{}, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, err
	}
	m := keyRE.FindSubmatch(b)
	if m == nil {
		return Key{}, fmt.Errorf("%s is not a TSIG key in tsig-keygen format (key \"name\" { algorithm hmac-sha256; secret \"…\"; };)", path)
	}
	return Key{Name: string(m[1]), Algorithm: string(m[2]), Secret: string(m[3])}, nil
}

// ErrPrerequisite means the server refused an update because one of its
// prerequisites did not hold (NXRRSET, YXRRSET, NXDOMAIN, YXDOMAIN): the
// data changed since it was read.
var ErrPrerequisite = errors.New("prerequisite failed")

// UpdateError is an update the server answered with another error.
type UpdateError struct {
	Zone, Server, Rcode string
}

func (e *UpdateError) Error() string {
	return fmt.Sprintf("RFC 2136 update of %s at %s: %s", e.Zone, e.Server, e.Rcode)
}

// Client talks to one server.
type Client struct {
	Server  string // host:port
	Key     Key    // signs updates; queries are not signed
	Timeout time.Duration
	// TCP sends over TCP only (else UDP, and TCP when truncated).
	TCP bool
}

func (c Client) dnsClient(network string) *dns.Client {
	t := c.Timeout
	if t == 0 {
		t = 2 * time.Second
	}
	cl := &dns.Client{Net: network, Timeout: t}
	if c.Key.Name != "" {
		cl.TsigSecret = map[string]string{dns.Fqdn(c.Key.Name): c.Key.Secret}
	}
	return cl
}

// exchange sends over UDP (one round trip, as nsupdate does) and retries
// over TCP when the answer is truncated.
func (c Client) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	if c.TCP {
		r, _, err := c.dnsClient("tcp").ExchangeContext(ctx, m, c.Server)
		return r, err
	}
	r, _, err := c.dnsClient("udp").ExchangeContext(ctx, m, c.Server)
	if err == nil && r.Truncated {
		r, _, err = c.dnsClient("tcp").ExchangeContext(ctx, m, c.Server)
	}
	return r, err
}

// Query asks for name/qtype; NOERROR and NXDOMAIN are answers, any other
// rcode is an error.
func (c Client) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, err := c.exchange(ctx, m)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s %s at %s: %s", name, dns.TypeToString[qtype], c.Server, dns.RcodeToString[r.Rcode])
	}
	return r, nil
}

// Update signs m (an UPDATE built with m.SetUpdate) and sends it. A failed
// prerequisite is ErrPrerequisite; a TSIG failure says to check the key.
func (c Client) Update(ctx context.Context, m *dns.Msg) error {
	zone := ""
	if len(m.Question) > 0 {
		zone = m.Question[0].Name
	}
	m.SetTsig(dns.Fqdn(c.Key.Name), dns.Fqdn(c.Key.Algorithm), 300, time.Now().Unix())
	r, err := c.exchange(ctx, m)
	if errors.Is(err, dns.ErrAuth) || errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrKey) || errors.Is(err, dns.ErrTime) {
		return &UpdateError{Zone: zone, Server: c.Server, Rcode: "TSIG verification failed (" + err.Error() + "): check the key name and secret"}
	}
	if err != nil {
		return fmt.Errorf("RFC 2136 update of %s at %s: %w", zone, c.Server, err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
		return nil
	case dns.RcodeNXRrset, dns.RcodeYXRrset, dns.RcodeNameError, dns.RcodeYXDomain:
		return fmt.Errorf("RFC 2136 update of %s at %s: %s: %w", zone, c.Server, dns.RcodeToString[r.Rcode], ErrPrerequisite)
	case dns.RcodeNotAuth:
		return &UpdateError{Zone: zone, Server: c.Server, Rcode: "NOTAUTH (the key is unknown to the server or the zone is not served there)"}
	default:
		return &UpdateError{Zone: zone, Server: c.Server, Rcode: dns.RcodeToString[r.Rcode]}
	}
}

// SetTXT adds (add) or removes one TXT record, as DNS-01 needs.
func (c Client) SetTXT(ctx context.Context, zone string, add bool, name, value string, ttl uint32) error {
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: []string{value}}
	if add {
		m.Insert([]dns.RR{rr})
	} else {
		m.Remove([]dns.RR{rr})
	}
	return c.Update(ctx, m)
}

// SetA replaces the A records of name with addr (an invalid addr removes
// them), as a client host's name needs.
func (c Client) SetA(ctx context.Context, zone, name string, addr netip.Addr, ttl uint32) error {
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	m.RemoveRRset([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET}}})
	if addr.IsValid() {
		m.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: addr.AsSlice()}})
	}
	return c.Update(ctx, m)
}

// Split cuts s into TXT character-strings of at most 255 bytes.
func Split(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
