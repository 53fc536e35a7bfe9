// Package acmedns is the seam between the failover controller and the DNS
// that serves the ACME name: one small Provider interface (read the name
// and its epoch, move it with compare-and-swap, set its TTL, wait until
// every authoritative server answers), an RFC 2136 provider (BIND, Knot,
// PowerDNS, any server taking TSIG-signed updates), a PowerDNS HTTP API
// provider fenced through etcd, and a fake for tests.
//
// Adding a provider: one file with a type that implements Provider, and
// one case in FromSpec; run the contract test (provider_test.go) against
// it.
package acmedns

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// ErrConflict means the ACME name or its epoch changed since it was read:
// another controller (or an operator) wrote first. Re-read and re-decide;
// never overwrite blindly.
var ErrConflict = errors.New("the ACME name changed since it was read (compare-and-swap failed)")

// Provider writes and reads the ACME name's records.
type Provider interface {
	// Read returns the name as the provider's source of truth has it.
	Read(ctx context.Context) (Current, error)
	// Move replaces the name's addresses with addrs and writes the epoch
	// e, in one change, only if the name is still cur; ErrConflict if not.
	Move(ctx context.Context, cur Current, addrs []string, ttl uint32, e Epoch) error
	// SetTTL rewrites the same addresses with ttl, only if still cur.
	SetTTL(ctx context.Context, cur Current, ttl uint32) error
	// WaitPropagated waits until every authoritative server answers addrs
	// with an epoch of at least epoch, or ctx ends; it reports each
	// server's lag from start.
	WaitPropagated(ctx context.Context, addrs []string, epoch int64, start time.Time) []Propagation
	// String names the provider and where it writes, for messages.
	String() string
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

// Current is the ACME name as read.
type Current struct {
	Addrs    []string // sorted
	TTL      uint32
	EpochTXT string // raw TXT value ("" if none)
	Epoch    Epoch
	Serial   uint32
	// What an RFC 2136 read saw exactly, for the prerequisites.
	rrs     []dns.RR
	epochRR dns.RR
}

// Same reports whether two reads show the same addresses, TTL and epoch.
func (c Current) Same(o Current) bool {
	return strings.Join(c.Addrs, ",") == strings.Join(o.Addrs, ",") && c.TTL == o.TTL && c.EpochTXT == o.EpochTXT
}

// Names are the records a provider manages.
type Names struct {
	Zone      string
	Name      string // the ACME name
	EpochName string // its TXT epoch record
}

// Servers reads the name from authoritative servers with plain queries.
type Servers struct {
	Names
	List    []string // every authoritative server (host:port)
	Timeout time.Duration
}

// ReadFrom returns the address RRset, epoch and SOA serial one server serves.
func (s Servers) ReadFrom(ctx context.Context, server string) (Current, error) {
	cl := rfc2136.Client{Server: server, Timeout: s.Timeout}
	var cur Current
	a, err := readA(ctx, cl, s.Name)
	if err != nil {
		return cur, err
	}
	cur.Addrs, cur.TTL, cur.rrs = a.Addrs, a.TTL, a.rrs
	r, err := cl.Query(ctx, s.EpochName, dns.TypeTXT)
	if err != nil {
		return cur, err
	}
	for _, rr := range r.Answer {
		if x, ok := rr.(*dns.TXT); ok {
			cur.EpochTXT = strings.Join(x.Txt, "")
			cur.Epoch = ParseEpoch(cur.EpochTXT)
			cur.epochRR = rr
		}
	}
	if r, err = cl.Query(ctx, s.Zone, dns.TypeSOA); err != nil {
		return cur, err
	}
	for _, rr := range r.Answer {
		if x, ok := rr.(*dns.SOA); ok {
			cur.Serial = x.Serial
		}
	}
	return cur, nil
}

// Propagation is when one authoritative server served the new answer.
type Propagation struct {
	Server string        `json:"server"`
	Lag    time.Duration `json:"-"`
	LagMS  float64       `json:"lagMs"`
	Done   bool          `json:"done"`
	Error  string        `json:"error,omitempty"`
}

// WaitPropagated polls every server until it serves addrs with an epoch
// of at least epoch, or ctx ends; it reports each server's lag from start.
func (s Servers) WaitPropagated(ctx context.Context, addrs []string, epoch int64, start time.Time) []Propagation {
	want := append([]string(nil), addrs...)
	sort.Strings(want)
	out := make([]Propagation, len(s.List))
	done := make(chan int, len(s.List))
	for i, srv := range s.List {
		out[i].Server = srv
		go func() {
			for {
				cur, err := s.ReadFrom(ctx, srv)
				if err == nil && strings.Join(cur.Addrs, ",") == strings.Join(want, ",") && cur.Epoch.N >= epoch {
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
						out[i].Error = fmt.Sprintf("still serving %v epoch %d", cur.Addrs, cur.Epoch.N)
					}
					done <- i
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	for range s.List {
		<-done
	}
	return out
}

// ipv4s checks that every address is IPv4 (the name is an A RRset).
func ipv4s(addrs []string) error {
	for _, a := range addrs {
		if ip := parseIPv4(a); ip == nil {
			return fmt.Errorf("%q is not an IPv4 address", excerpt(a))
		}
	}
	return nil
}

func excerpt(s string) string { return cluster.Excerpt(s) }
