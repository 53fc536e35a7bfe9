package healthcheck

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// ProbeDNS asks every authoritative server for the zone's SOA and the ACME
// name's addresses, and reports which site the name points to. Servers
// that disagree (a secondary behind the primary) fail the probe.
func ProbeDNS(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindDNS)
	if len(t.DNSServers) == 0 || t.ACMEName == "" {
		r.step("config", probeError{ClassProtocol, "no DNS servers or ACME name to check"})
		return r.done()
	}
	c := &dns.Client{Timeout: t.stepTimeout()}
	answers := map[string]string{}
	for _, server := range t.DNSServers {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(t.Zone), dns.TypeSOA)
		resp, _, err := c.ExchangeContext(ctx, m, server)
		if err == nil && (resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 || !resp.Authoritative) {
			err = probeError{ClassMismatch, fmt.Sprintf("%s: SOA of %s: %s, %d answers, authoritative=%v", server, t.Zone, dns.RcodeToString[resp.Rcode], len(resp.Answer), resp.Authoritative)}
		}
		if r.step("soa "+server, err) != nil {
			continue
		}
		m = new(dns.Msg)
		m.SetQuestion(dns.Fqdn(t.ACMEName), dns.TypeA)
		resp, _, err = c.ExchangeContext(ctx, m, server)
		var addrs []string
		if err == nil {
			for _, rr := range resp.Answer {
				if a, ok := rr.(*dns.A); ok {
					addrs = append(addrs, a.A.String())
				}
			}
			if len(addrs) == 0 {
				err = probeError{ClassMismatch, fmt.Sprintf("%s: no A record for %s (%s)", server, t.ACMEName, dns.RcodeToString[resp.Rcode])}
			}
		}
		if r.step("name "+server, err) != nil {
			continue
		}
		sort.Strings(addrs)
		answers[server] = strings.Join(addrs, ",")
	}
	var distinct []string
	for _, a := range answers {
		if len(distinct) == 0 || distinct[len(distinct)-1] != a {
			distinct = append(distinct, a)
		}
	}
	sort.Strings(distinct)
	if len(distinct) > 1 {
		r.step("agreement", probeError{ClassMismatch, fmt.Sprintf("authoritative servers disagree on %s: %v", t.ACMEName, answers)})
	}
	if len(distinct) >= 1 {
		r.fact("answer", distinct[0])
		var sites []string
		for _, a := range strings.Split(distinct[0], ",") {
			if s, ok := t.SiteByAddr[a]; ok {
				sites = append(sites, s)
			}
		}
		r.fact("activeSite", strings.Join(sites, ","))
	}
	return r.done()
}
