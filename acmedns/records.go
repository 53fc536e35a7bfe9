package acmedns

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/miekg/dns"

	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// RRset is one A RRset of the zone other than the ACME name (a CRL
// host's), as read.
type RRset struct {
	Name  string
	Addrs []string // sorted
	TTL   uint32
	rrs   []dns.RR // what an RFC 2136 read saw exactly, for the prerequisites
}

// Records is what a provider that also writes the zone's other A RRsets
// offers: the controller withdraws an unreachable CRL front from the CRL
// names with it, and puts it back.
type Records interface {
	// ReadA returns name's A RRset from the provider's source of truth.
	ReadA(ctx context.Context, name string) (RRset, error)
	// ReplaceA replaces the RRset with addrs (same TTL) only if it is
	// still cur; ErrConflict if not. It never empties a name.
	ReplaceA(ctx context.Context, cur RRset, addrs []string) error
}

func checkReplace(cur RRset, addrs []string) error {
	if len(addrs) == 0 {
		return fmt.Errorf("%s: refusing to remove every address of the name", cur.Name)
	}
	return ipv4s(addrs)
}

// ReadA reads name's A RRset from the primary.
func (p *RFC2136) ReadA(ctx context.Context, name string) (RRset, error) {
	return readA(ctx, rfc2136.Client{Server: p.Primary, Timeout: p.Timeout}, name)
}

// readA is name's A RRset as the server cl asks answers it.
func readA(ctx context.Context, cl rfc2136.Client, name string) (RRset, error) {
	r, err := cl.Query(ctx, name, dns.TypeA)
	if err != nil {
		return RRset{}, err
	}
	set := RRset{Name: name}
	for _, rr := range r.Answer {
		if x, ok := rr.(*dns.A); ok {
			set.Addrs = append(set.Addrs, x.A.String())
			set.TTL = x.Hdr.Ttl
			set.rrs = append(set.rrs, rr)
		}
	}
	sort.Strings(set.Addrs)
	return set, nil
}

// ReplaceA writes addrs in one UPDATE whose prerequisite is the RRset
// exactly as read.
func (p *RFC2136) ReplaceA(ctx context.Context, cur RRset, addrs []string) error {
	if err := checkReplace(cur, addrs); err != nil {
		return err
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(p.Zone))
	if len(cur.rrs) > 0 {
		m.Used(copies(cur.rrs...))
	} else {
		m.RRsetNotUsed([]dns.RR{&dns.A{Hdr: p.rr(cur.Name, dns.TypeA, 0)}})
	}
	ttl := cur.TTL
	if ttl == 0 {
		ttl = 60
	}
	m.RemoveRRset([]dns.RR{&dns.A{Hdr: p.rr(cur.Name, dns.TypeA, 0)}})
	for _, a := range addrs {
		m.Insert([]dns.RR{&dns.A{Hdr: p.rr(cur.Name, dns.TypeA, ttl), A: parseIPv4(a)}})
	}
	return p.send(ctx, m)
}

// ReadA reads name's A RRset through the API.
func (p *PowerDNS) ReadA(ctx context.Context, name string) (RRset, error) {
	var z pdnsZone
	if err := p.do(ctx, http.MethodGet, "", nil, &z); err != nil {
		return RRset{}, err
	}
	set := RRset{Name: name}
	for _, rs := range z.RRsets {
		if strings.EqualFold(rs.Name, dns.Fqdn(name)) && rs.Type == "A" {
			for _, r := range rs.Records {
				if !r.Disabled {
					set.Addrs = append(set.Addrs, r.Content)
				}
			}
			set.TTL = rs.TTL
		}
	}
	sort.Strings(set.Addrs)
	return set, nil
}

// ReplaceA reads the RRset again and PATCHes it if it is still cur. The
// API has no conditional write and the fence guards only the ACME name:
// a writer racing between the read and the PATCH can lose its change.
// Only the leading controller writes these names and recomputes them
// every second, so a lost change is made again at once.
func (p *PowerDNS) ReplaceA(ctx context.Context, cur RRset, addrs []string) error {
	if err := checkReplace(cur, addrs); err != nil {
		return err
	}
	if p.Fence == nil {
		return errors.New("the PowerDNS provider has no fence: it is read-only here")
	}
	now, err := p.ReadA(ctx, cur.Name)
	if err != nil {
		return err
	}
	if !sameStrings(now.Addrs, cur.Addrs) || now.TTL != cur.TTL {
		return ErrConflict
	}
	ttl := cur.TTL
	if ttl == 0 {
		ttl = 60
	}
	set := pdnsRRset{Name: dns.Fqdn(cur.Name), Type: "A", TTL: ttl, ChangeType: "REPLACE", Records: []pdnsRecord{}}
	for _, a := range addrs {
		set.Records = append(set.Records, pdnsRecord{Content: a})
	}
	if err := p.do(ctx, http.MethodPatch, "", map[string]any{"rrsets": []pdnsRRset{set}}, nil); err != nil {
		return err
	}
	p.do(ctx, http.MethodPut, "/notify", nil, nil)
	return nil
}

// SetA is another writer changing one of the zone's other A RRsets.
func (f *Fake) SetA(name string, addrs []string, ttl uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setA(name, addrs, ttl)
}

func (f *Fake) setA(name string, addrs []string, ttl uint32) {
	if f.other == nil {
		f.other = map[string]RRset{}
	}
	a := append([]string(nil), addrs...)
	sort.Strings(a)
	f.other[strings.ToLower(name)] = RRset{Name: name, Addrs: a, TTL: ttl}
	f.serial++
}

// ReadA returns what is served now.
func (f *Fake) ReadA(_ context.Context, name string) (RRset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail(); err != nil {
		return RRset{}, err
	}
	if set, ok := f.other[strings.ToLower(name)]; ok {
		return set, nil
	}
	return RRset{Name: name}, nil
}

// ReplaceA writes if cur is still served.
func (f *Fake) ReplaceA(_ context.Context, cur RRset, addrs []string) error {
	if err := checkReplace(cur, addrs); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail(); err != nil {
		return err
	}
	now := f.other[strings.ToLower(cur.Name)]
	if !sameStrings(now.Addrs, cur.Addrs) || now.TTL != cur.TTL {
		return ErrConflict
	}
	ttl := cur.TTL
	if ttl == 0 {
		ttl = 60
	}
	f.setA(cur.Name, addrs, ttl)
	f.recordsWritten++
	return nil
}

// RecordsWritten counts the ReplaceA writes that succeeded.
func (f *Fake) RecordsWritten() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recordsWritten
}

var (
	_ Records = (*RFC2136)(nil)
	_ Records = (*PowerDNS)(nil)
	_ Records = (*Fake)(nil)
)
