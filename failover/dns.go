package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ErrConflict means the ACME name or its epoch changed since it was read:
// another controller (or an operator) wrote first. Re-read and re-decide;
// never overwrite blindly.
var ErrConflict = errors.New("the ACME name changed since it was read (prerequisite failed)")

// TSIG is the controller's key.
type TSIG struct{ Name, Algorithm, Secret string }

// Applier writes the ACME name with RFC 2136 UPDATEs signed with TSIG,
// each guarded by value-dependent prerequisites on the current address
// RRset and epoch record (compare-and-swap), and checks propagation.
type Applier struct {
	Primary   string   // host:port taking updates
	Servers   []string // every authoritative server, for propagation
	Zone      string
	Name      string // the ACME name
	EpochName string // its TXT epoch record
	Key       TSIG
	Timeout   time.Duration // per DNS exchange; default 2 s
}

// Epoch is the controller's record of the last move, kept in DNS next to
// the name so every controller sees it.
type Epoch struct {
	N          int64
	Site       string
	Controller string
	Reason     string
	Time       time.Time
}

// String is the TXT value: "epoch=N; site=S; controller=C; time=T;
// reason=R", the reason last and free of quotes, backslashes and ';'.
func (e Epoch) String() string {
	reason := strings.NewReplacer(`"`, "'", `\`, "/", ";", ",").Replace(e.Reason)
	t := ""
	if !e.Time.IsZero() {
		t = e.Time.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("epoch=%d; site=%s; controller=%s; time=%s; reason=%s", e.N, e.Site, e.Controller, t, reason)
}

// ParseEpoch reads the TXT value written by Epoch.String (and the lab's seed).
func ParseEpoch(s string) Epoch {
	var e Epoch
	for _, f := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		switch k {
		case "epoch":
			e.N, _ = strconv.ParseInt(v, 10, 64)
		case "site":
			e.Site = v
		case "controller":
			e.Controller = v
		case "reason":
			e.Reason = v
		case "time":
			e.Time, _ = time.Parse(time.RFC3339, v)
		}
	}
	return e
}

// Current is the ACME name as the primary serves it.
type Current struct {
	Addrs    []string // sorted
	TTL      uint32
	EpochTXT string // raw TXT value ("" if none)
	Epoch    Epoch
	Serial   uint32
	rrs      []dns.RR // exactly what was read, for the prerequisites
	epochRR  dns.RR
}

func (a *Applier) client(network string) *dns.Client {
	t := a.Timeout
	if t == 0 {
		t = 2 * time.Second
	}
	return &dns.Client{Net: network, Timeout: t, TsigSecret: map[string]string{dns.Fqdn(a.Key.Name): a.Key.Secret}}
}

// exchange sends over UDP (one round trip, as nsupdate does) and retries
// over TCP when the answer is truncated.
func (a *Applier) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	r, _, err := a.client("udp").ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		r, _, err = a.client("tcp").ExchangeContext(ctx, m, server)
	}
	return r, err
}

func (a *Applier) query(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, err := a.exchange(ctx, m, server)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s %s at %s: %s", name, dns.TypeToString[qtype], server, dns.RcodeToString[r.Rcode])
	}
	return r, nil
}

// Read returns the current address RRset, epoch and SOA serial from the primary.
func (a *Applier) Read(ctx context.Context) (Current, error) {
	return a.readFrom(ctx, a.Primary)
}

func (a *Applier) readFrom(ctx context.Context, server string) (Current, error) {
	var cur Current
	r, err := a.query(ctx, server, a.Name, dns.TypeA)
	if err != nil {
		return cur, err
	}
	for _, rr := range r.Answer {
		if x, ok := rr.(*dns.A); ok {
			cur.Addrs = append(cur.Addrs, x.A.String())
			cur.TTL = x.Hdr.Ttl
			cur.rrs = append(cur.rrs, rr)
		}
	}
	sort.Strings(cur.Addrs)
	if r, err = a.query(ctx, server, a.EpochName, dns.TypeTXT); err != nil {
		return cur, err
	}
	for _, rr := range r.Answer {
		if x, ok := rr.(*dns.TXT); ok {
			cur.EpochTXT = strings.Join(x.Txt, "")
			cur.Epoch = ParseEpoch(cur.EpochTXT)
			cur.epochRR = rr
		}
	}
	if r, err = a.query(ctx, server, a.Zone, dns.TypeSOA); err != nil {
		return cur, err
	}
	for _, rr := range r.Answer {
		if x, ok := rr.(*dns.SOA); ok {
			cur.Serial = x.Serial
		}
	}
	return cur, nil
}

// Move replaces the ACME name's addresses with addrs and writes the new
// epoch, in one UPDATE whose prerequisites are the exact RRsets in cur.
// It returns ErrConflict when another writer got there first.
func (a *Applier) Move(ctx context.Context, cur Current, addrs []string, ttl uint32, e Epoch) error {
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(a.Zone))
	// Prerequisites (RFC 2136 §2.4.2): the RRsets exist with exactly these
	// values; or, if there were none, that the name has no such RRset.
	if len(cur.rrs) > 0 {
		m.Used(cur.rrs)
	} else {
		m.RRsetNotUsed([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(a.Name), Rrtype: dns.TypeA, Class: dns.ClassINET}}})
	}
	if cur.epochRR != nil {
		m.Used([]dns.RR{cur.epochRR})
	} else {
		m.RRsetNotUsed([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(a.EpochName), Rrtype: dns.TypeTXT, Class: dns.ClassINET}}})
	}
	var newRRs []dns.RR
	for _, addr := range addrs {
		ip := net.ParseIP(addr)
		if ip == nil || ip.To4() == nil {
			return fmt.Errorf("%q is not an IPv4 address", addr)
		}
		newRRs = append(newRRs, &dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(a.Name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip.To4()})
	}
	m.RemoveRRset([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(a.Name), Rrtype: dns.TypeA, Class: dns.ClassINET}}})
	m.Insert(newRRs)
	m.RemoveRRset([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(a.EpochName), Rrtype: dns.TypeTXT, Class: dns.ClassINET}}})
	m.Insert([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(a.EpochName), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: []string{e.String()}}})
	return a.send(ctx, m)
}

// SetTTL rewrites the same addresses with another TTL (pre-arming: a
// lower TTL while the active site is suspect shortens clients' caches
// before a move), under the same prerequisites.
func (a *Applier) SetTTL(ctx context.Context, cur Current, ttl uint32) error {
	if cur.TTL == ttl || len(cur.rrs) == 0 {
		return nil
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(a.Zone))
	m.Used(cur.rrs)
	var rrs []dns.RR
	for _, rr := range cur.rrs {
		c := dns.Copy(rr)
		c.Header().Ttl = ttl
		rrs = append(rrs, c)
	}
	m.RemoveRRset([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(a.Name), Rrtype: dns.TypeA, Class: dns.ClassINET}}})
	m.Insert(rrs)
	return a.send(ctx, m)
}

func (a *Applier) send(ctx context.Context, m *dns.Msg) error {
	m.SetTsig(dns.Fqdn(a.Key.Name), dns.Fqdn(a.Key.Algorithm), 300, time.Now().Unix())
	r, err := a.exchange(ctx, m, a.Primary)
	if err != nil {
		return fmt.Errorf("RFC 2136 update at %s: %w", a.Primary, err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
		return nil
	case dns.RcodeNXRrset, dns.RcodeYXRrset, dns.RcodeNameError, dns.RcodeYXDomain:
		return ErrConflict
	default:
		return fmt.Errorf("RFC 2136 update at %s: %s", a.Primary, dns.RcodeToString[r.Rcode])
	}
}

// Propagation is when one authoritative server served the new answer.
type Propagation struct {
	Server string        `json:"server"`
	Lag    time.Duration `json:"-"`
	LagMS  float64       `json:"lagMs"`
	Done   bool          `json:"done"`
	Error  string        `json:"error,omitempty"`
}

// WaitPropagated polls every server until it serves addrs and a serial at
// least serial, or ctx ends; it reports each server's lag from start.
func (a *Applier) WaitPropagated(ctx context.Context, addrs []string, serial uint32, start time.Time) []Propagation {
	want := append([]string(nil), addrs...)
	sort.Strings(want)
	out := make([]Propagation, len(a.Servers))
	done := make(chan int, len(a.Servers))
	for i, srv := range a.Servers {
		out[i].Server = srv
		go func() {
			for {
				cur, err := a.readFrom(ctx, srv)
				if err == nil && strings.Join(cur.Addrs, ",") == strings.Join(want, ",") && serialAtLeast(cur.Serial, serial) {
					out[i].Lag = time.Since(start)
					out[i].LagMS = float64(out[i].Lag.Microseconds()) / 1000
					out[i].Done = true
					done <- i
					return
				}
				select {
				case <-ctx.Done():
					if err != nil {
						out[i].Error = err.Error()
					} else {
						out[i].Error = fmt.Sprintf("still serving %v serial %d", cur.Addrs, cur.Serial)
					}
					done <- i
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	for range a.Servers {
		<-done
	}
	return out
}

// serialAtLeast compares SOA serials with RFC 1982 arithmetic.
func serialAtLeast(s, min uint32) bool { return s == min || int32(s-min) > 0 }
