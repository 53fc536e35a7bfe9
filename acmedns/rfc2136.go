package acmedns

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/miekg/dns"

	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// RFC2136 writes the name with TSIG-signed RFC 2136 UPDATEs to the
// primary, each guarded by value-dependent prerequisites on the address
// RRset and the epoch record exactly as read (compare-and-swap, evaluated
// by the server).
type RFC2136 struct {
	Servers        // reads for propagation
	Primary string // host:port taking updates
	Key     rfc2136.Key
}

func (p *RFC2136) String() string { return "RFC 2136 at " + p.Primary }

func (p *RFC2136) client() rfc2136.Client {
	return rfc2136.Client{Server: p.Primary, Key: p.Key, Timeout: p.Timeout}
}

// Read returns the current address RRset, epoch and SOA serial from the primary.
func (p *RFC2136) Read(ctx context.Context) (Current, error) {
	return p.ReadFrom(ctx, p.Primary)
}

func (p *RFC2136) rr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// prerequisites: the RRsets exist with exactly the values read; or, if
// there were none, the name has no such RRset (RFC 2136 §2.4).
func (p *RFC2136) prerequisites(m *dns.Msg, cur Current) {
	if len(cur.rrs) > 0 {
		m.Used(copies(cur.rrs...))
	} else {
		m.RRsetNotUsed([]dns.RR{&dns.A{Hdr: p.rr(p.Name, dns.TypeA, 0)}})
	}
	if cur.epochRR != nil {
		m.Used(copies(cur.epochRR))
	} else {
		m.RRsetNotUsed([]dns.RR{&dns.TXT{Hdr: p.rr(p.EpochName, dns.TypeTXT, 0)}})
	}
}

// Move replaces the addresses and writes the new epoch in one UPDATE
// whose prerequisites are the exact RRsets in cur.
func (p *RFC2136) Move(ctx context.Context, cur Current, addrs []string, ttl uint32, e Epoch) error {
	if err := ipv4s(addrs); err != nil {
		return err
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(p.Zone))
	p.prerequisites(m, cur)
	m.RemoveRRset([]dns.RR{&dns.A{Hdr: p.rr(p.Name, dns.TypeA, 0)}})
	for _, a := range addrs {
		m.Insert([]dns.RR{&dns.A{Hdr: p.rr(p.Name, dns.TypeA, ttl), A: net.ParseIP(a).To4()}})
	}
	m.RemoveRRset([]dns.RR{&dns.TXT{Hdr: p.rr(p.EpochName, dns.TypeTXT, 0)}})
	m.Insert([]dns.RR{&dns.TXT{Hdr: p.rr(p.EpochName, dns.TypeTXT, ttl), Txt: rfc2136.Split(e.String())}})
	return p.send(ctx, m)
}

// SetTTL rewrites the same addresses with another TTL (pre-arming: a
// lower TTL while the active site is suspect shortens clients' caches
// before a move), under the same prerequisites.
func (p *RFC2136) SetTTL(ctx context.Context, cur Current, ttl uint32) error {
	if cur.TTL == ttl || len(cur.rrs) == 0 {
		return nil
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(p.Zone))
	m.Used(copies(cur.rrs...))
	m.RemoveRRset([]dns.RR{&dns.A{Hdr: p.rr(p.Name, dns.TypeA, 0)}})
	for _, rr := range cur.rrs {
		c := dns.Copy(rr)
		c.Header().Ttl = ttl
		m.Insert([]dns.RR{c})
	}
	return p.send(ctx, m)
}

func (p *RFC2136) send(ctx context.Context, m *dns.Msg) error {
	err := p.client().Update(ctx, m)
	if errors.Is(err, rfc2136.ErrPrerequisite) {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

func parseIPv4(s string) net.IP {
	ip := net.ParseIP(s)
	if ip == nil {
		return nil
	}
	return ip.To4()
}

// copies: miekg/dns's prerequisite helpers rewrite the RRs they are given.
func copies(rrs ...dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}
